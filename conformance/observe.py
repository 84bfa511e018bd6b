"""Observing a witness: the kernel's facts about the process, read from
outside the run (its /proc files, its root, its /proc), and from inside
its UTS, network and IPC namespaces by a reader that enters them
(Namespaces). Nothing the run prints is read."""
import ctypes
import errno
import fcntl
import json
import os
import signal

from . import netlink, procfs
from .catalog import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUSER, NAMESPACES
from .journal import Facts, Network, ProcView, Start
from .procfs import BOUND
from .syscalls import libc

CLONE_NEW = {"ipc": 0x08000000, "net": 0x40000000, "uts": 0x04000000}
CLONE_NEWNS = 0x00020000
PR_SET_DUMPABLE = 4
NS_GET_USERNS = 0xB701
PING_WITHIN = 2.0  # seconds a veth end may take to answer: a bound, not a verdict


def inside():
    """Hostname, links and SysV queues as the caller sees them, once it has
    entered a process's UTS, network and IPC namespaces (see Namespaces)."""
    with open("/proc/sysvipc/msg", "rb") as fh:
        queues = procfs.queues(fh.read(256 << 10))[:BOUND]
    return {"hostname": procfs.hostname(), "links": procfs.links(), "queues": sorted(queues)}


def _to_wire(seen):
    """inside()'s answer as JSON, its bytes kept whole (latin-1 maps every byte to one character)."""
    return json.dumps({"hostname": seen["hostname"].decode("latin-1"),
                       "links": [[name.decode("latin-1"), state] for name, state in seen["links"].items()],
                       "queues": seen["queues"],
                       **({"mounts": seen["mounts"].decode("latin-1")} if "mounts" in seen else {}),
                       }).encode()


def _from_wire(data):
    """The answers of a reader: a list of what inside() said, or its error."""
    out = json.loads(data)
    if isinstance(out, dict):
        raise OSError(errno.EPERM, str(out.get("error")))
    return [_seen(one) for one in out]


def _seen(out):
    seen = {"hostname": str(out["hostname"]).encode("latin-1"),
            "links": {str(name).encode("latin-1"): str(state) for name, state in out["links"]},
            "queues": [int(key) for key in out["queues"]]}
    if "mounts" in out:
        seen["mounts"] = str(out["mounts"]).encode("latin-1")
    return seen


class Namespaces:
    """Enters a process's UTS, network and IPC namespaces to read them. As the
    machine's root, the grader itself enters them and comes back; otherwise
    (an ordinary user, or root of a user namespace that does not own the
    machine's namespaces) a short-lived fork enters the run's user namespace
    first: only its owner's descendants have a say over the namespaces it owns."""

    def __init__(self):
        self.in_place = os.geteuid() == 0 and owns_its_namespaces()
        self.own = {}

    def read(self, targets, user_fd, host_mounts=None):
        """What inside() says in each of targets ({kind: an fd of its
        namespace}, as namespace_fds opens them), in order; where a target
        has a "mnt" fd, its mount table too (as root, read from host_mounts:
        the pid of a process in that mount namespace)."""
        if self.in_place:
            out = [self._in_place(fds) for fds in targets]
            if "mnt" in targets[-1]:
                out[-1]["mounts"] = procfs.mountinfo(host_mounts)
            return out
        return self._forked(targets, user_fd)

    @staticmethod
    def _setns(fd, kind):
        if libc.setns(fd, CLONE_NEW.get(kind, CLONE_NEWNS if kind == "mnt" else 0)) != 0:
            raise OSError(ctypes.get_errno(), f"setns {kind}: {os.strerror(ctypes.get_errno())}")

    def _in_place(self, fds):
        if not self.own:
            self.own = {k: os.open(f"/proc/self/ns/{k}", os.O_RDONLY) for k in CLONE_NEW}
        entered = []
        try:
            for kind in CLONE_NEW:
                self._setns(fds[kind], kind)
                entered.append(kind)
            return inside()
        finally:
            for kind in entered:
                try:
                    self._setns(self.own[kind], kind)
                except OSError as error:
                    # The grader must never go on in a run's namespace.
                    raise SystemExit(f"nskit: cannot return to the grader's {kind} namespace: "
                                     f"{error.strerror}") from None

    def _forked(self, targets, user_fd):
        """The same, read by a fork that enters the run's user namespace; a
        mount table from inside its mount namespace, through the reader's
        own /proc/self."""
        def read():
            if user_fd is not None:
                self._setns(user_fd, "user")
            seen = []
            own = os.open("/proc/self", os.O_DIRECTORY)
            for fds in targets:
                for kind in CLONE_NEW:
                    self._setns(fds[kind], kind)
                found = inside()
                if "mnt" in fds:
                    self._setns(fds["mnt"], "mnt")
                    found["mounts"] = procfs.mountinfo(dir_fd=own)
                seen.append(_to_wire(found))
            return b"[" + b",".join(seen) + b"]"
        data = in_fork(read)
        try:
            return _from_wire(data)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise OSError(errno.EPERM, f"the reader's answer was garbled: {error}") from None


def in_fork(work):
    """What work() returns (bytes), worked out by a short-lived fork that is
    not the run's to read: the fork may enter a run's namespaces, the grader
    never leaves its own. A failure comes back as {"error": why}."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
            os.write(w, work())
        except BaseException as error:  # noqa: BLE001 - reported on the pipe
            os.write(w, json.dumps({"error": str(error)}).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    os.waitpid(child, 0)
    return data or b'{"error": "the reader died"}'


def owns_its_namespaces():
    """Whether the grader's user namespace owns its UTS, network and IPC
    namespaces: only then may its root enter a run's and come back. Root of
    a nested user namespace, even one whose maps are the machine's whole
    range, does not own the machine's."""
    try:
        mine = os.stat("/proc/self/ns/user").st_ino
        for kind in CLONE_NEW:
            fd = os.open(f"/proc/self/ns/{kind}", os.O_RDONLY)
            try:
                owner = fcntl.ioctl(fd, NS_GET_USERNS)
            finally:
                os.close(fd)
            try:
                if os.fstat(owner).st_ino != mine:
                    return False
            finally:
                os.close(owner)
    except OSError:
        return False
    return True


def namespace_fds(pid, kinds=tuple(CLONE_NEW)):
    """{kind: an fd of pid's namespace of that kind}."""
    out = {}
    try:
        for kind in kinds:
            out[kind] = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
    except OSError:
        close_all(out)
        raise
    return out


def close_all(fds):
    for fd in fds.values():
        os.close(fd)


NAMESPACE_READER = None


def observe(pid, shell_id, user_fd, helper=None, host=None):
    """The kernel's facts about a witness process, and what inside() says of
    the run's host at the same moment (host: (fds of its namespaces, as
    namespace_fds opens them with "mnt", and the pid of a process in them));
    helper: the witness's child held in /nskit/ready, not counted among its
    processes."""
    global NAMESPACE_READER
    NAMESPACE_READER = NAMESPACE_READER or Namespaces()
    ns = {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NAMESPACES}
    status = procfs.status(pid)
    mounts = procfs.mounts(procfs.mountinfo(pid))[:BOUND * 4]
    root = f"/proc/{pid}/root"
    st = os.stat(root)
    owners = []
    with os.scandir(os.fsencode(root)) as entries:
        for entry in entries:
            if len(owners) >= BOUND:
                break
            try:
                est = entry.stat(follow_symlinks=False)
                owners.append((entry.name, est.st_uid, est.st_gid))
            except OSError:
                pass
    try:
        hidden = {procfs.status(helper)["NSpid"][-1]} if helper else set()
    except (OSError, KeyError, IndexError):
        hidden = set()
    nspid = status["NSpid"]
    fds = namespace_fds(pid)
    try:
        seen, *at_host = NAMESPACE_READER.read([fds] + ([host[0]] if host else []), user_fd,
                                               host and host[1])
    finally:
        close_all(fds)
    return Facts(ns=ns, nspid=nspid, uid=status["Uid"][0], gid=status["Gid"][0],
                 uid_map=procfs.id_map(pid, "uid_map"), gid_map=procfs.id_map(pid, "gid_map"),
                 mounts=mounts, shared=[m.point for m in mounts if m.shared],
                 root=(st.st_dev, st.st_ino), root_entries=sorted(owners),
                 proc=proc_view(root, nspid[-1], mounts, shell_id, hidden),
                 hostname=seen["hostname"], links=seen["links"], queues=seen["queues"]), \
        (at_host[0] if at_host else None)


def proc_view(root, inner_pid, mounts, shell_id, hidden=()):
    """What is on the witness's /proc: a proc of its own PID namespace (its
    own PID there leads back to the witness), another proc, or nothing; and
    the processes ps would list from it."""
    try:
        st = os.stat(f"{root}/proc")
    except OSError as error:
        return ProcView("unreadable", why=error.strerror)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    fstype = next((m.fstype for m in reversed(mounts) if m.point == b"/proc" and m.device == dev),
                  None)
    if fstype != b"proc":
        return ProcView("none", fstype=fstype)
    try:
        pids = sorted(int(n) for n in os.listdir(f"{root}/proc")
                      if n.isdigit() and int(n) not in hidden)
    except OSError:
        pids = []
    own = False
    try:
        mine = os.stat(f"{root}/proc/{inner_pid}")
        exe = os.stat(f"{root}/proc/{inner_pid}/exe")
        own = mine.st_dev == st.st_dev and (exe.st_dev, exe.st_ino) == tuple(shell_id)
    except OSError:
        pass
    return ProcView("own" if own else "other", pids=pids[:BOUND], count=len(pids))


def pivot_view(facts, pid, user_fd, parent=None):
    """10 and 11: the witness's mount namespace as seen from that namespace's
    own root, where a chroot cannot hide what is mounted outside it; with
    parent (11), the links of the witness's network namespace and of its
    parent's, and whether the witness's addresses answer a ping sent from
    the parent's. Read by a short-lived fork that enters the run's user
    namespace, then those namespaces: the grader never leaves its own root."""
    paths = {"mnt": f"/proc/{pid}/ns/mnt"}
    if parent:
        paths.update(net=f"/proc/{pid}/ns/net", parent_net=f"/proc/{parent}/ns/net")
    fds = {kind: os.open(path, os.O_RDONLY) for kind, path in paths.items()}
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)

    def read():
        if user_fd is not None:
            _enter(user_fd, CLONE_NEWUSER)
        _enter(fds["mnt"], CLONE_NEWNS)  # and its root: the namespace's own
        # Our own /proc/self, in the grader's proc: this namespace's mounts.
        mine = os.open("self", os.O_RDONLY | os.O_DIRECTORY, dir_fd=proc)
        out = {"mountinfo": procfs.mountinfo(dir_fd=mine).decode("latin-1")}
        if parent:
            _enter(fds["net"], CLONE_NEWNET)
            links = list(netlink.links().values())
            out["parent_nsid"] = netlink.netnsid_of(parent)
            _enter(fds["parent_net"], CLONE_NEWNET)
            out["parent_links"] = list(netlink.links().values())
            ends = [a.split("/")[0] for link in links if link["name"] != b"lo"
                    for a in link["ipv4"]][:4]
            out["answered"] = [a for a in ends if netlink.answers_ping(a, PING_WITHIN)]
            out["links"] = links
            for link in out["links"] + out["parent_links"]:
                link["name"] = link["name"].decode("latin-1")
        return json.dumps(out).encode()
    try:
        data = in_fork(read)
    finally:
        for fd in (*fds.values(), proc):
            os.close(fd)
    try:
        out = json.loads(data)
        if "error" in out:
            raise OSError(errno.EPERM, f"reading its mount namespace: {out['error']}")
        facts.namespace_mounts = procfs.mounts(out["mountinfo"].encode("latin-1"))[:BOUND * 4]
        if parent:
            for link in out["links"] + out["parent_links"]:
                link["name"] = link["name"].encode("latin-1")
            facts.network = Network(out["links"], out["parent_links"], out["parent_nsid"],
                                    out["answered"])
    except (ValueError, KeyError, TypeError) as error:
        raise OSError(errno.EPERM, f"the reader's answer was garbled: {error}") from None


def _enter(fd, flag):
    if libc.setns(fd, flag) != 0:
        raise OSError(ctypes.get_errno(), f"setns: {os.strerror(ctypes.get_errno())}")


def start_facts(pid, early):
    """The witness at its execve (see journal.Start)."""
    maps = {}
    for name in ("uid_map", "gid_map"):
        try:
            maps[name] = procfs.id_map(pid, name)
        except OSError:
            maps[name] = []
    return Start(early, **maps)


def in_charge_facts(facts, witness, parent):
    """Beyond Part 1: who the witness's parent is on the machine, and
    whether the witness's user namespace may drop groups."""
    try:
        status = procfs.status(parent)
        facts.parent = {"uid": status["Uid"][0], "gid": status["Gid"][0]}
    except (OSError, KeyError):
        pass
    with open(f"/proc/{witness}/setgroups", "rb") as fh:
        facts.setgroups = fh.read(16).strip().decode(errors="replace")


def sigkill_pending(pid):
    try:
        masks = procfs.status(pid)
    except OSError:
        return False
    bit = 1 << (signal.SIGKILL - 1)
    return bool((masks.get("SigPnd", 0) | masks.get("ShdPnd", 0)) & bit)


def death_signal_hint(pid):
    try:
        masks = procfs.status(pid)
    except OSError:
        return ""
    if masks.get("SigIgn", 0) & (1 << (signal.SIGTERM - 1)):
        return " (it ignores SIGTERM, as any command may)"
    return ""
