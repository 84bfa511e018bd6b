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

from . import procfs
from .catalog import NAMESPACES
from .journal import Facts, ProcView, Start
from .procfs import BOUND
from .syscalls import libc

CLONE_NEW = {"ipc": 0x08000000, "net": 0x40000000, "uts": 0x04000000}
PR_SET_DUMPABLE = 4
NS_GET_USERNS = 0xB701


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
                       "queues": seen["queues"]}).encode()


def _from_wire(data):
    out = json.loads(data)
    if "error" in out:
        raise OSError(errno.EPERM, str(out["error"]))
    return {"hostname": str(out["hostname"]).encode("latin-1"),
            "links": {str(name).encode("latin-1"): str(state) for name, state in out["links"]},
            "queues": [int(key) for key in out["queues"]]}


class Namespaces:
    """Enters a process's UTS, network and IPC namespaces to read them. As the
    machine's root, the grader itself enters them and comes back; otherwise
    (an ordinary user, or root of a user namespace that does not own the
    machine's namespaces) a short-lived fork enters the run's user namespace
    first: only its owner's descendants have a say over the namespaces it owns."""

    def __init__(self):
        self.in_place = os.geteuid() == 0 and owns_its_namespaces()
        self.own = {}

    def read(self, pid, user_fd):
        if self.in_place:
            return self._in_place(pid)
        return self._forked(pid, user_fd)

    @staticmethod
    def _setns(fd, kind):
        if libc.setns(fd, CLONE_NEW.get(kind, 0)) != 0:
            raise OSError(ctypes.get_errno(), f"setns {kind}: {os.strerror(ctypes.get_errno())}")

    def _in_place(self, pid):
        if not self.own:
            self.own = {k: os.open(f"/proc/self/ns/{k}", os.O_RDONLY) for k in CLONE_NEW}
        entered = []
        try:
            for kind in CLONE_NEW:
                fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY)
                try:
                    self._setns(fd, kind)
                finally:
                    os.close(fd)
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

    def _forked(self, pid, user_fd):
        fds = [os.open(f"/proc/{pid}/ns/{k}", os.O_RDONLY) for k in CLONE_NEW]
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.close(r)
                libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # not the run's to read
                if user_fd is not None:
                    self._setns(user_fd, "user")
                for fd, kind in zip(fds, CLONE_NEW):
                    self._setns(fd, kind)
                os.write(w, _to_wire(inside()))
            except BaseException as error:  # noqa: BLE001 - reported on the pipe
                os.write(w, json.dumps({"error": str(error)}).encode())
            os._exit(0)
        os.close(w)
        for fd in fds:
            os.close(fd)
        data = b""
        while chunk := os.read(r, 1 << 16):
            data += chunk
        os.close(r)
        os.waitpid(child, 0)
        try:
            return _from_wire(data or b'{"error": "the reader died"}')
        except (ValueError, KeyError, TypeError) as error:
            raise OSError(errno.EPERM, f"the reader's answer was garbled: {error}") from None


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


NAMESPACE_READER = None


def observe(pid, shell_id, user_fd, helper=None):
    """The kernel's facts about a witness process; helper: its child held in
    /nskit/ready, not counted among its processes."""
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
    seen = NAMESPACE_READER.read(pid, user_fd)
    return Facts(ns=ns, nspid=nspid, uid=status["Uid"][0], gid=status["Gid"][0],
                 uid_map=procfs.id_map(pid, "uid_map"), gid_map=procfs.id_map(pid, "gid_map"),
                 mounts=mounts, shared=[m.point for m in mounts if m.shared],
                 root=(st.st_dev, st.st_ino), root_entries=sorted(owners),
                 proc=proc_view(root, nspid[-1], mounts, shell_id, hidden),
                 hostname=seen["hostname"], links=seen["links"], queues=seen["queues"])


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
