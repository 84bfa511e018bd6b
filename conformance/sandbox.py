"""The throwaway host: every graded run gets a fresh one.

A run's host is a user namespace whose root is nobody outside (uid 0 maps to
an unused range when the grader is root, to the grader's own uid otherwise),
owning new mount, UTS, IPC, network and PID namespaces. Its root filesystem is
a small tmpfs holding read-only binds of the machine's folders, a fresh /proc,
and its own empty /tmp, /var/tmp, /dev/shm and /mytmp. It has a known
hostname, a SysV message queue and a placeholder veth link, so a program can
be judged by how its view differs from the host's.

The host's PID 1 is a process forked from the grader, never exec'd: the
program it runs cannot ptrace it or open its pipes (its memory belongs to the
machine's user namespace), and when it exits the kernel kills every process
the program left. The grader keeps nothing inside: results come back on a
pipe that only PID 1 holds.

Processes, not threads, all the way down: cloning from a multi-threaded
Python can hang the child, so the grader is one single-threaded event loop.
"""
import ctypes
import fcntl
import json
import os
import platform
import grp
import pwd
import resource
import select
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import (CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID,
                      CLONE_NEWUSER, CLONE_NEWUTS)
from .cgroups import Cgroups

libc = ctypes.CDLL(None, use_errno=True)

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
SYS_MOUNT_SETATTR = 442
IPC_CREAT = 0o1000
SIOCGIFFLAGS, IFF_UP = 0x8913, 0x1

RANGE = 65536  # uid 0 .. 65535 inside, so nobody (65534) maps too
HOSTNAME_PREFIX = "nskit-host-"
SNAPSHOT_TEXT, SNAPSHOT_ITEMS = 256 << 10, 256
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FRESH = ("tmp", "var/tmp", "dev/shm", "run")  # the run's own, empty, size-limited
# What the first stage of a run tells the grader on its pipe.
ASK_MAPS, MAPS_WRITTEN, REFUSED, FAILED = b"U", b"G", b"X", b"E"


class Unavailable(Exception):
    """This machine will not let the grader build a throwaway host; refused
    when it is user namespaces that the machine refuses."""

    def __init__(self, message, refused=False):
        super().__init__(message)
        self.refused = refused


@dataclass
class Limits:
    timeout: float = 10.0
    processes: int = 256
    memory: int = 1 << 30
    output: int = 1 << 20
    tmpfs: str = "64m"
    file_size: int = 64 << 20


@dataclass
class Request:
    """One program run: argv inside the host, plus what it must be able to reach."""
    argv: list
    reach: list = field(default_factory=list)   # folders to bind read-only at the same path
    files: dict = field(default_factory=dict)   # path -> bytes, copied in at that path (mode 0755)
    tag: object = None


@dataclass
class Result:
    request: Request
    output: bytes = b""
    cut: int = 0               # bytes of output dropped from the middle
    status: int = None         # the program's wait status
    before: dict = None        # the host as PID 1 saw it before the program ran
    after: dict = None         # ... and after it, and everything it left, had ended
    leftover: list = None      # processes still running when the program exited
    error: str = None          # why there is no verdict from inside: timed out, crashed
    seconds: float = 0.0


# -- who is root inside ----------------------------------------------------

def _used_ids():
    """Every uid/gid the machine knows of: accounts, groups, subordinate ranges."""
    spans = [(e.pw_uid, 1) for e in pwd.getpwall()] + [(e.gr_gid, 1) for e in grp.getgrall()]
    for name in ("/etc/subuid", "/etc/subgid"):
        try:
            for line in Path(name).read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    spans.append((int(parts[1]), int(parts[2])))
        except OSError:
            pass
    return spans


def unused_range(size=RANGE):
    """The first range above 2**30 that no account or /etc/sub[ug]id entry touches."""
    spans = _used_ids()
    base = 1 << 30
    while any(start < base + size and base < start + count for start, count in spans):
        base += size
    return base


@dataclass
class Mapping:
    """Who the run's root is outside: an unused range when the grader is the
    machine's root, the grader's own uid otherwise."""
    privileged: bool
    base: int

    @classmethod
    def for_this_user(cls):
        if os.geteuid() == 0 and _in_the_machines_user_namespace():
            return cls(True, unused_range())
        # Root of a user namespace (a rootless container) maps only itself too.
        return cls(False, os.geteuid())

    def write(self, pid):
        if self.privileged:
            uid_map = gid_map = f"0 {self.base} {RANGE}"
        else:
            # An ordinary user may map only itself, and only without setgroups.
            Path(f"/proc/{pid}/setgroups").write_text("deny")
            uid_map, gid_map = f"0 {os.geteuid()} 1", f"0 {os.getegid()} 1"
        Path(f"/proc/{pid}/uid_map").write_text(uid_map)
        Path(f"/proc/{pid}/gid_map").write_text(gid_map)


def _in_the_machines_user_namespace():
    try:
        return Path("/proc/self/uid_map").read_text().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


# -- small syscall helpers -------------------------------------------------

def _check(ret, what):
    """A libc call's result, or OSError naming the call where it failed (-1)."""
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _mount(source, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if isinstance(s, str) else s
    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
           f"mount {target}")


def _readonly_tree(path):
    """Read-only and nosuid for a bind and every mount below it, in one call."""
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    _check(libc.syscall(SYS_MOUNT_SETATTR, -100, path.encode(), AT_RECURSIVE,
                        attr, len(attr)), f"mount_setattr {path}")


def _close_fds_except(keep):
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def hidden_ancestor(path):
    """The outermost folder on the way to path (itself included) that other
    users cannot enter: the run's root is 'other' to the machine's files."""
    for folder in [*reversed(Path(path).parents), Path(path)]:
        try:
            if not folder.stat().st_mode & 0o001:
                return folder
        except OSError:
            return None
    return None


# -- rtnetlink, for the host's links ----------------------------------------------

RTM_NEWLINK, NLMSG_ERROR = 16, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_LINKINFO, IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 3, 18, 1, 2, 1
LO_INDEX = 1  # the first link of every new network namespace


def _rtattr(kind, payload):
    size = 4 + len(payload)
    return struct.pack("HH", size, kind) + payload + bytes(-size % 4)


def _ifinfo(index=0, up=False):
    return struct.pack("BxHiII", socket.AF_UNSPEC, 0, index, IFF_UP if up else 0,
                       IFF_UP if up else 0)


def _netlink(body, create=False):
    """One RTM_NEWLINK request, answered by the kernel's ack or its error."""
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_EXCL if create else 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.send(struct.pack("IHHII", 16 + len(body), RTM_NEWLINK, flags, 1, 0) + body)
        reply = nl.recv(65536)
    kind, = struct.unpack_from("H", reply, 4)
    error, = struct.unpack_from("i", reply, 16) if kind == NLMSG_ERROR else (0,)
    if error:
        raise OSError(-error, f"rtnetlink: {os.strerror(-error)}")


# -- the host's own view, for before/after -------------------------------------

def _links():
    links = {}
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex()[:SNAPSHOT_ITEMS]:
            raw = fcntl.ioctl(probe, SIOCGIFFLAGS, struct.pack("16sH", name.encode(), 0) + bytes(22))
            links[name] = "UP" if struct.unpack("16sH", raw[:18])[1] & IFF_UP else "DOWN"
    finally:
        probe.close()
    return links


def snapshot(proc_self, proc_root):
    """What the checks compare: read through fds opened on the host's own
    /proc, so a program that replaces /proc cannot hide a change."""
    def read(dirfd, name):
        try:
            with open(name, opener=lambda p, f: os.open(p, f, dir_fd=dirfd)) as fh:
                return fh.read(SNAPSHOT_TEXT)
        except OSError as error:
            return f"unreadable: {error.strerror}"
    try:
        proc_ok = os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        proc_ok = False
    queues = [int(line.split()[0]) for line in read(proc_root, "sysvipc/msg").splitlines()[1:]]
    # A program may fill the host with mounts, links or queues: the snapshot
    # stays small, and a change in what it keeps is a change all the same.
    return {
        "hostname": os.uname().nodename,
        "mounts": read(proc_self, "mountinfo"),
        "queues": sorted(queues)[:SNAPSHOT_ITEMS],
        "links": _links(),
        "proc": proc_ok,
        "ns": {n: os.readlink(f"/proc/self/ns/{n}")
               for n in ("ipc", "mnt", "net", "pid", "user", "uts")} if proc_ok else {},
        "root": sorted(os.listdir("/")),
    }


# -- the run's root filesystem ----------------------------------------------------

class RootBuilder:
    """Builds a run's root filesystem one user namespace above the run's own:
    as the machine's root, or for an ordinary user as root of a user namespace
    of its own. Every mount then reaches the run locked by the kernel, so its
    root can neither unmount a tmpfs to uncover the folder below, nor make a
    read-only bind writable again."""

    def __init__(self, request, limits, owner, anchors):
        self.request, self.limits, self.owner, self.anchors = request, limits, owner, anchors
        self.covers = []

    def tmpfs(self, path, options):
        _mount("nskit", path, "tmpfs", MS_NOSUID | MS_NODEV,
               f"{options},uid={self.owner},gid={self.owner}")

    def made(self, path):
        """Whatever the builder makes belongs to the run's root."""
        os.lchown(path, self.owner, self.owner)
        return path

    def build(self):
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        new = "/tmp"  # any folder serves as the new root's mount point
        self.tmpfs(new, "mode=755,size=1m")
        for entry in os.scandir("/"):
            target = f"{new}/{entry.name}"
            if entry.name in ("tmp", "run", "mytmp"):
                os.mkdir(target)
                self.made(target)
            elif entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
                self.made(target)
            elif entry.is_dir():
                os.mkdir(target)
                _mount(entry.path, target, None, MS_BIND | MS_REC)
                if entry.name != "proc":  # the run mounts its own proc over it
                    _readonly_tree(target)
            elif entry.is_file():
                open(target, "w").close()
                _mount(entry.path, target, None, MS_BIND)
                _readonly_tree(target)
        if not os.path.exists(f"{new}/mytmp"):
            os.mkdir(f"{new}/mytmp")
            self.made(f"{new}/mytmp")
        for name in FRESH:
            if os.path.isdir(f"{new}/{name}"):
                self.tmpfs(f"{new}/{name}", f"mode=1777,size={self.limits.tmpfs}")
        for path, anchor, fd in self.anchors:
            self.cover(new, anchor)
            os.makedirs(f"{new}{path}", exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", f"{new}{path}", None, MS_BIND | MS_REC)
            _readonly_tree(f"{new}{path}")
        for path, data in self.request.files.items():
            self.cover(new, hidden_ancestor(Path(path).parent) or Path(path).parent)
            os.makedirs(f"{new}{Path(path).parent}", exist_ok=True)
            with open(f"{new}{path}", "wb") as fh:
                fh.write(data)
            os.chmod(self.made(f"{new}{path}"), 0o755)
        for anchor in self.covers:
            _readonly_tree(f"{new}{anchor}")
        os.mkdir(f"{new}/.old")
        _check(libc.syscall(SYS_PIVOT_ROOT, new.encode(), f"{new}/.old".encode()), "pivot_root")
        os.chdir("/")
        _check(libc.umount2(b"/.old", MNT_DETACH), "umount old root")
        os.rmdir("/.old")
        _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)

    def cover(self, new, anchor):
        """A tmpfs over a folder the run could not enter, holding just what
        the run must reach below it."""
        anchor = Path(anchor)
        if any(anchor.is_relative_to(c) for c in self.covers):
            return
        if any(anchor.is_relative_to(f"/{d}") for d in FRESH):
            return  # already the run's own tmpfs
        os.makedirs(f"{new}{anchor}", exist_ok=True)
        self.tmpfs(f"{new}{anchor}", "mode=755,size=64m")
        self.covers.append(anchor)


# -- inside the run ----------------------------------------------------------------

class Host:
    """PID 1 of a run's throwaway host. Everything here runs in the forked child."""

    def __init__(self, request, limits, token):
        self.request, self.limits, self.token = request, limits, token

    def furnish(self):
        name = HOSTNAME_PREFIX + self.token[:8]
        _check(libc.sethostname(name.encode(), len(name)), "sethostname")
        _check(libc.msgget(int(self.token[:7], 16), IPC_CREAT | 0o644), "msgget")
        # lo up, as on a machine, and a placeholder link: no dummy module on
        # every kernel, so a veth pair. Asked of the kernel directly: an `ip`
        # run would cost every graded run a few milliseconds more.
        _netlink(_ifinfo(index=LO_INDEX, up=True))
        peer = _ifinfo() + _rtattr(IFLA_IFNAME, b"nskit1\0")
        veth = _rtattr(IFLA_INFO_KIND, b"veth") + _rtattr(IFLA_INFO_DATA, _rtattr(VETH_INFO_PEER, peer))
        _netlink(_ifinfo() + _rtattr(IFLA_IFNAME, b"nskit0\0") + _rtattr(IFLA_LINKINFO, veth),
                 create=True)

    def run_program(self):
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out_w, 1)
                os.dup2(out_w, 2)
                _close_fds_except(set())
                # Where the run's memory runs out, the kernel takes the
                # program's processes first, not the host's PID 1. (Only a
                # dumpable process owns its /proc files; exec sets it anew.)
                libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
                Path("/proc/self/oom_score_adj").write_text("1000")
                os.chdir("/tmp")
                env = {"PATH": SAFE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
                os.execve(self.request.argv[0], self.request.argv, env)
            except OSError as error:
                os.write(2, f"nskit: cannot start {self.request.argv[0]}: {error.strerror}\n".encode())
            os._exit(127)
        os.close(out_w)
        head, tail, total = bytearray(), bytearray(), 0
        keep_head = self.limits.output * 3 // 4
        keep_tail = self.limits.output - keep_head
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(out_r, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        exited = False
        while True:
            events = dict(poller.poll())
            if pidfd in events:
                exited = True
                os.set_blocking(out_r, False)
            try:
                chunk = os.read(out_r, 1 << 16) if (out_r in events or exited) else b""
            except BlockingIOError:
                chunk = b""
            total += len(chunk)
            room = keep_head - len(head)
            head += chunk[:room]
            if len(chunk) > room:
                tail = (tail + chunk[room:])[-keep_tail:]
            if exited and not chunk:
                break
            if not chunk and out_r in events and not exited:
                poller.unregister(out_r)  # EOF: only the exit is left to wait for
        _, status = os.waitpid(pid, 0)
        os.close(out_r)
        return bytes(head + tail), total - len(head) - len(tail), status

    @staticmethod
    def end_everything():
        """Kill what the program left (daemons included) and say what it was."""
        left = []
        for name in os.listdir("/proc"):
            if name.isdigit() and name != "1":
                try:
                    cmdline = Path(f"/proc/{name}/cmdline").read_bytes()[:200]
                    left.append(cmdline.replace(b"\0", b" ").decode(errors="replace").strip())
                except OSError:
                    pass
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass  # nothing was left
        while True:
            try:
                os.wait()
            except ChildProcessError:
                return left[:20] + ([f"... and {len(left) - 20} more"] if len(left) > 20 else [])

    def main(self, report):
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)  # init ignores what it does not handle
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)
        proc_self = os.open("/proc/self", os.O_DIRECTORY)
        proc_root = os.open("/proc", os.O_DIRECTORY)
        # A second proc over the one held open: a program may unmount it (the
        # article's step 05 does), and the one below stays whole, which the
        # kernel asks for before it lets the program mount a proc of its own.
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV)
        self.furnish()
        before = snapshot(proc_self, proc_root)
        output, cut, status = self.run_program()
        leftover = self.end_everything()
        after = snapshot(proc_self, proc_root)
        payload = json.dumps({
            "output": output.decode("latin-1"), "cut": cut, "status": status,
            "before": before, "after": after, "leftover": leftover,
        }).encode()
        view = memoryview(payload)
        while view:
            view = view[os.write(report, view):]


def _stage(request, reach, limits, mapping, token, ctl_r, rep_w, parent, cgroup):
    """The process between the grader and the run's PID 1. It builds the
    run's root, enters the run's user namespace, and stays in the machine's
    PID namespace so that the run can have a PID 1 of its own."""
    def fail(kind, message):
        os.write(rep_w, kind + message.encode())
        os._exit(1)

    def unshare(flags, what):
        if libc.unshare(flags) != 0:
            fail(REFUSED if flags == CLONE_NEWUSER else FAILED,
                 f"unshare({what}) failed: {os.strerror(ctypes.get_errno())}")

    def ask_for_id_maps():
        os.write(rep_w, ASK_MAPS)
        if os.read(ctl_r, 1) != MAPS_WRITTEN:
            os._exit(1)

    def become_root(drop_groups):
        os.setresgid(0, 0, 0)
        if drop_groups:
            os.setgroups([])  # the machine's root's groups must not come along
        os.setresuid(0, 0, 0)

    try:
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _close_fds_except({ctl_r, rep_w})
        Cgroups.join(cgroup)  # first, so that all the run will start is in it
        if mapping.privileged:
            owner = mapping.base
        else:
            unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
            ask_for_id_maps()
            become_root(False)
            owner = 0
        unshare(CLONE_NEWNS, "CLONE_NEWNS")
        # Held open now, while folders only the machine's root may enter can
        # still be entered; bound into the run's root from these.
        anchors = [(str(p), a, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p, a in reach]
        RootBuilder(request, limits, owner, anchors).build()
        unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
        if mapping.privileged:
            ask_for_id_maps()
            become_root(True)
        else:
            for name in ("uid_map", "gid_map"):
                Path(f"/proc/self/{name}").write_text("0 0 1")
            become_root(False)
        unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID,
                "the run's namespaces")
        # After the uid change, which clears it: die with the grader.
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
        # Set inside the run's user namespace, so that runs do not share one
        # count of processes.
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        pid = os.fork()
        if pid == 0:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            os.close(ctl_r)
            try:
                Host(request, limits, token).main(rep_w)
                os._exit(0)
            except BaseException as error:  # noqa: BLE001 - reported, not raised
                fail(FAILED, f"the throwaway host failed: {error}")
        os.waitpid(pid, 0)
        os._exit(0)
    except BaseException as error:  # noqa: BLE001
        try:
            fail(FAILED, f"setting up the throwaway host failed: {error}")
        finally:
            os._exit(1)


# -- the grader's side --------------------------------------------------------------

class _Running:
    """A run as the grader follows it: its first stage's pid and pipes."""

    def __init__(self, request, pid, ctl_w, rep_r, started, timeout, cgroup):
        self.request, self.pid, self.ctl_w, self.rep_r = request, pid, ctl_w, rep_r
        self.started, self.deadline = started, started + timeout
        self.cgroup = cgroup
        self.data = bytearray()


def _reach_for(paths):
    """(folder, anchor) pairs for the folders a run could not otherwise see:
    those in the places the host replaces with its own tmpfs, and, when the
    run's root is nobody outside, those behind a folder only root may enter."""
    out = []
    for path in map(Path, paths):
        fresh = any(path.is_relative_to(f"/{d}") for d in FRESH)
        anchor = hidden_ancestor(path) if os.geteuid() == 0 else None
        if fresh or anchor is not None:
            out.append((path, anchor or path))
    return out


class Sandbox:
    """Runs requests in throwaway hosts, up to `jobs` at a time."""

    def __init__(self, limits=None, jobs=None):
        self.limits = limits or Limits()
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.mapping = Mapping.for_this_user()
        if SYS_PIVOT_ROOT is None:
            raise Unavailable(f"nskit's sandbox does not know pivot_root on {platform.machine()}")
        self.cgroups = (Cgroups.available(self.limits.memory, self.limits.processes)
                        if self.mapping.privileged else None)

    def _start(self, request):
        ctl_r, ctl_w = os.pipe()
        rep_r, rep_w = os.pipe()
        token = os.urandom(8).hex()
        cgroup = self.cgroups.create() if self.cgroups else []
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _stage(request, _reach_for(request.reach), self.limits, self.mapping,
                   token, ctl_r, rep_w, os.getppid(), cgroup)
        os.close(ctl_r)
        os.close(rep_w)
        return _Running(request, pid, ctl_w, rep_r, started, self.limits.timeout, cgroup)

    def _write_maps(self, run):
        """The run asked for its user namespace's id maps: only a process
        outside it may write them."""
        try:
            self.mapping.write(run.pid)
        except OSError as error:
            raise Unavailable(f"writing the user namespace's id map failed: {error.strerror}")
        os.write(run.ctl_w, MAPS_WRITTEN)
        os.close(run.ctl_w)
        run.ctl_w = None

    def _finish(self, run, error=None):
        for fd in (run.rep_r, run.ctl_w):
            if fd is not None:
                os.close(fd)
        try:
            os.kill(run.pid, signal.SIGKILL)  # its PID 1 dies with it, and the run with that
        except ProcessLookupError:
            pass
        os.waitpid(run.pid, 0)
        if not error and Cgroups.ran_out_of_memory(run.cgroup):
            error = f"went over its memory limit ({self.limits.memory >> 20} MiB) and was killed"
        Cgroups.remove(run.cgroup)
        result = Result(run.request, seconds=time.monotonic() - run.started)
        data = bytes(run.data)
        if data.startswith(REFUSED):
            raise Unavailable(data[1:].decode(errors="replace"), refused=True)
        if error or data.startswith(FAILED):
            result.error = error or data[1:].decode(errors="replace")
            return result
        try:
            payload = json.loads(data)
        except ValueError:
            result.error = "the run ended without a result (its host crashed)"
            return result
        result.output = payload["output"].encode("latin-1")
        result.cut, result.status = payload["cut"], payload["status"]
        result.before, result.after = payload["before"], payload["after"]
        result.leftover = payload["leftover"]
        return result

    def run(self, requests):
        """Yield a Result for every request, in the order they finish."""
        pending = list(reversed(requests))
        running = {}
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    run = self._start(pending.pop())
                    running[run.rep_r] = run
                wait = max(0.0, min(r.deadline for r in running.values()) - time.monotonic())
                ready, _, _ = select.select(list(running), [], [], wait)
                for fd in ready:
                    run = running[fd]
                    chunk = os.read(fd, 1 << 16)
                    if run.ctl_w is not None and chunk == ASK_MAPS:
                        self._write_maps(run)
                    elif chunk:
                        run.data += chunk
                    else:
                        yield self._finish(running.pop(fd))
                now = time.monotonic()
                for fd, run in list(running.items()):
                    if now >= run.deadline:
                        yield self._finish(running.pop(fd),
                                           f"timed out after {self.limits.timeout:g} s")
        finally:
            for run in running.values():  # the grader is stopping: so do the runs
                os.kill(run.pid, signal.SIGKILL)
                os.waitpid(run.pid, 0)
                Cgroups.remove(run.cgroup)

    def probe_available(self):
        """Raise Unavailable, with the reason, where no throwaway host can be built."""
        for result in self.run([Request(["/bin/true"])]):
            if result.error:
                raise Unavailable(result.error)
