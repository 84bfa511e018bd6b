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
import errno
import json
import os
import platform
import pwd
import grp
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
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
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROBE_DIRS = ("tmp", "var/tmp", "dev/shm")


class Unavailable(Exception):
    """This machine will not let the grader build a throwaway host."""


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
    uid_map: str
    gid_map: str
    deny_setgroups: bool

    @classmethod
    def for_this_user(cls):
        if os.geteuid() == 0:
            base = unused_range()
            line = f"0 {base} {RANGE}"
            return cls(line, line, False)
        # An ordinary user may map only itself: the run's root is that user.
        return cls(f"0 {os.geteuid()} 1", f"0 {os.getegid()} 1", True)

    def write(self, pid):
        if self.deny_setgroups:
            Path(f"/proc/{pid}/setgroups").write_text("deny")
        Path(f"/proc/{pid}/uid_map").write_text(self.uid_map)
        Path(f"/proc/{pid}/gid_map").write_text(self.gid_map)


# -- small syscall helpers -------------------------------------------------

def _check(ret, what):
    if ret == -1 or (ret != 0 and what.startswith("!")):
        err = ctypes.get_errno()
        raise OSError(err, f"{what.lstrip('!')}: {os.strerror(err)}")
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


def _hidden_ancestor(path):
    """The outermost folder on the way to path (itself included) that other
    users cannot enter: the run's root is 'other' to the machine's files."""
    for folder in [*reversed(Path(path).parents), Path(path)]:
        try:
            if not folder.stat().st_mode & 0o001:
                return folder
        except OSError:
            return None
    return None


# -- the host's own view, for before/after -------------------------------------

def _links():
    links = {}
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        import fcntl
        for _, name in socket.if_nameindex():
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
                return fh.read()
        except OSError as error:
            return f"unreadable: {error.strerror}"
    try:
        proc_ok = os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        proc_ok = False
    queues = [int(line.split()[0]) for line in read(proc_root, "sysvipc/msg").splitlines()[1:]]
    return {
        "hostname": os.uname().nodename,
        "mounts": read(proc_self, "mountinfo"),
        "queues": sorted(queues),
        "links": _links(),
        "proc": proc_ok,
        "ns": {n: os.readlink(f"/proc/self/ns/{n}")
               for n in ("ipc", "mnt", "net", "pid", "user", "uts")} if proc_ok else {},
        "root": sorted(os.listdir("/")),
    }


# -- inside the run --------------------------------------------------------------

class Host:
    """PID 1 of a run's throwaway host. Everything here runs in the forked child."""

    def __init__(self, request, limits, token, anchors):
        self.request, self.limits, self.token, self.anchors = request, limits, token, anchors

    def build_root(self):
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        new = "/tmp"  # any folder serves as the mount point of the new root
        _mount("nskit-root", new, "tmpfs", MS_NOSUID, "mode=755,size=1m")
        for entry in os.scandir("/"):
            if entry.name in ("proc", "tmp", "mytmp"):
                continue
            target = f"{new}/{entry.name}"
            if entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif entry.is_dir():
                os.mkdir(target)
                _mount(entry.path, target, None, MS_BIND | MS_REC)
                _readonly_tree(target)
            elif entry.is_file():
                open(target, "w").close()
                _mount(entry.path, target, None, MS_BIND)
                _readonly_tree(target)
        for name in ("proc", "tmp", "mytmp"):
            os.mkdir(f"{new}/{name}", 0o1777 if name == "tmp" else 0o755)
        # Twice: a program that unmounts /proc (the article's step 05) may
        # mount a new one only while a whole proc stays visible below it.
        for _ in range(2):
            _mount("proc", f"{new}/proc", "proc", MS_NOSUID | MS_NODEV)
        for name in PROBE_DIRS:
            if os.path.isdir(f"{new}/{name}"):
                _mount("nskit-tmp", f"{new}/{name}", "tmpfs", MS_NOSUID | MS_NODEV,
                       f"mode=1777,size={self.limits.tmpfs}")
        covered = set()
        for path, anchor, fd in self.anchors:
            self._cover(new, anchor, covered)
            os.makedirs(f"{new}{path}", exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", f"{new}{path}", None, MS_BIND | MS_REC)
            _readonly_tree(f"{new}{path}")
        for path, data in self.request.files.items():
            anchor = _hidden_ancestor(Path(path).parent) or Path(path).parent
            self._cover(new, anchor, covered)
            os.makedirs(f"{new}{Path(path).parent}", exist_ok=True)
            with open(f"{new}{path}", "wb") as fh:
                fh.write(data)
            os.chmod(f"{new}{path}", 0o755)
        os.mkdir(f"{new}/.old")
        _check(libc.syscall(SYS_PIVOT_ROOT, new.encode(), f"{new}/.old".encode()), "pivot_root")
        os.chdir("/")
        _check(libc.umount2(b"/.old", MNT_DETACH), "umount old root")
        os.rmdir("/.old")
        _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_BIND)

    @staticmethod
    def _cover(new, anchor, covered):
        """A private tmpfs over a folder the run could not enter, to hold just
        what the run must reach below it."""
        anchor = str(anchor)
        if anchor in covered or any(anchor.startswith(c + "/") for c in covered):
            return
        if anchor.startswith(("/tmp/", "/var/tmp/")) or anchor in ("/tmp", "/var/tmp"):
            return  # already the run's own tmpfs
        os.makedirs(f"{new}{anchor}", exist_ok=True)
        _mount("nskit-reach", f"{new}{anchor}", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64m")
        covered.add(anchor)

    def furnish(self):
        name = HOSTNAME_PREFIX + self.token[:8]
        _check(libc.sethostname(name.encode(), len(name)), "!sethostname")
        if libc.msgget(int(self.token[:7], 16), IPC_CREAT | 0o644) == -1:
            raise OSError(ctypes.get_errno(), "msgget")
        # A placeholder link (no dummy module on every kernel: a veth pair).
        subprocess.run(["ip", "-batch", "-"], input=b"link set lo up\n"
                       b"link add nskit0 type veth peer name nskit1\n",
                       env={"PATH": SAFE_PATH}, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)

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
                tail = (tail + chunk[max(room, 0):])[-keep_tail:]
            if exited and not chunk:
                break
            if not chunk and out_r in events and not exited:
                poller.unregister(out_r)  # EOF: only the exit is left to wait for
        _, status = os.waitpid(pid, 0)
        os.close(out_r)
        return bytes(head + tail), total - len(head) - len(tail), status

    @staticmethod
    def end_everything():
        """Kill what the program left (daemons included) and report it."""
        left = []
        for name in os.listdir("/proc"):
            if name.isdigit() and name != "1":
                try:
                    left.append(Path(f"/proc/{name}/cmdline").read_bytes()
                                .replace(b"\0", b" ").decode(errors="replace").strip())
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
                return left

    def main(self, report):
        started = time.monotonic()
        prctl = libc.prctl
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)  # init ignores what it does not handle
        self.build_root()
        self.furnish()
        proc_self = os.open("/proc/self", os.O_DIRECTORY)
        proc_root = os.open("/proc", os.O_DIRECTORY)
        before = snapshot(proc_self, proc_root)
        output, cut, status = self.run_program()
        leftover = self.end_everything()
        after = snapshot(proc_self, proc_root)
        payload = json.dumps({
            "output": output.decode("latin-1"), "cut": cut, "status": status,
            "before": before, "after": after, "leftover": leftover,
            "seconds": time.monotonic() - started,
        }).encode()
        view = memoryview(payload)
        while view:
            view = view[os.write(report, view):]


def _first_run_stage(request, reach, limits, mapping, token, ctl_r, rep_w, parent):
    """The process between the grader and the host's PID 1 (it stays in the
    machine's PID namespace, so the host can have a PID 1 of its own)."""
    def fail(message):
        os.write(rep_w, b"E" + message.encode())
        os._exit(1)
    try:
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _close_fds_except({ctl_r, rep_w})
        if libc.unshare(CLONE_NEWUSER) != 0:
            fail(f"unshare(CLONE_NEWUSER) failed: {os.strerror(ctypes.get_errno())}")
        os.write(rep_w, b"U")
        if os.read(ctl_r, 1) != b"G":
            os._exit(1)
        if libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID) != 0:
            fail(f"unshare failed: {os.strerror(ctypes.get_errno())}")
        # Still the machine's uid here, so folders only root may enter can be
        # held open now and bound into the host later.
        anchors = [(str(p), a, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p, a in reach]
        os.setresgid(0, 0, 0)
        if not mapping.deny_setgroups:
            os.setgroups([])
        os.setresuid(0, 0, 0)
        # After the uid change, which clears it: die with the grader.
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
        # Per user namespace, so runs do not share one count of processes.
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        pid = os.fork()
        if pid == 0:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            os.close(ctl_r)
            try:
                Host(request, limits, token, anchors).main(rep_w)
                os._exit(0)
            except BaseException as error:  # noqa: BLE001 - reported, not raised
                os.write(rep_w, b"E" + f"the throwaway host failed: {error}".encode())
                os._exit(1)
        os.waitpid(pid, 0)
        os._exit(0)
    except BaseException as error:  # noqa: BLE001
        try:
            fail(f"setting up the throwaway host failed: {error}")
        finally:
            os._exit(1)


# -- the grader's side --------------------------------------------------------------

class _Running:
    def __init__(self, request, pid, rep_r, deadline, started):
        self.request, self.pid, self.rep_r = request, pid, rep_r
        self.deadline, self.started = deadline, started
        self.data = bytearray()


def _reach_for(paths):
    """(folder, anchor) pairs for the folders a run could not otherwise see:
    those in the places the host replaces with its own tmpfs, and, when the
    run's root is nobody outside, those behind a folder only root may enter."""
    out = []
    for path in map(Path, paths):
        fresh = any(path.is_relative_to(f"/{d}") for d in PROBE_DIRS)
        anchor = _hidden_ancestor(path) if os.geteuid() == 0 else None
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

    def _start(self, request):
        ctl_r, ctl_w = os.pipe()
        rep_r, rep_w = os.pipe()
        token = os.urandom(8).hex()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _first_run_stage(request, _reach_for(request.reach), self.limits, self.mapping,
                             token, ctl_r, rep_w, os.getppid())
        os.close(ctl_r)
        os.close(rep_w)
        first = os.read(rep_r, 4096)
        if first != b"U":
            os.close(ctl_w)
            os.close(rep_r)
            os.waitpid(pid, 0)
            raise Unavailable(first[1:].decode(errors="replace") or "the run ended before it began")
        try:
            self.mapping.write(pid)
        except OSError as error:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise Unavailable(f"writing the user namespace's id map failed: {error.strerror}")
        os.write(ctl_w, b"G")
        os.close(ctl_w)
        return _Running(request, pid, rep_r, started + self.limits.timeout, started)

    def _finish(self, run, error=None):
        os.close(run.rep_r)
        try:
            os.kill(run.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(run.pid, 0)
        result = Result(run.request, seconds=time.monotonic() - run.started)
        data = bytes(run.data)
        if error or data.startswith(b"E"):
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
        pending = list(requests)
        pending.reverse()
        running = {}
        while pending or running:
            while pending and len(running) < self.jobs:
                run = self._start(pending.pop())
                running[run.rep_r] = run
            now = time.monotonic()
            wait = max(0.0, min(r.deadline for r in running.values()) - now)
            ready, _, _ = select.select(list(running), [], [], wait)
            for fd in ready:
                run = running[fd]
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    run.data += chunk
                else:
                    del running[fd]
                    yield self._finish(run)
            now = time.monotonic()
            for fd, run in list(running.items()):
                if now >= run.deadline:
                    del running[fd]
                    yield self._finish(run, f"timed out after {self.limits.timeout:g} s")

    def probe_available(self):
        """Raise Unavailable, with the reason, where user namespaces are refused."""
        for _ in self.run([Request(["/bin/true"])]):
            pass
