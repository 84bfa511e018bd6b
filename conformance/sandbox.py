"""The throwaway host: every graded run gets a fresh one.

A run's host is a user namespace whose root is nobody outside (ids.py),
owning new mount, UTS, IPC, network and PID namespaces. Its root filesystem
(rootfs.py) holds read-only binds of the machine's folders and its own empty
/tmp, /var/tmp, /dev/shm and /mytmp. Its PID 1 (runinit.py) furnishes it with
a known hostname, a SysV message queue and a placeholder link (netlink.py),
runs the program, and tears everything down. The grader follows its runs
from one event loop (scheduler.py).

This module holds the public API and the order in which a run's host is set
up, read top to bottom in setup_run().
"""
import gc
import os
import platform
import resource
import signal
import time
from dataclasses import dataclass, field

from . import ids, rootfs, scheduler, witness
from .catalog import (CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID,
                      CLONE_NEWUSER, CLONE_NEWUTS)
from .cgroups import Cgroups
from .rootfs import hidden_ancestor  # noqa: F401 - tools/frame.py imports it from here
from .runinit import RunInit
from .syscalls import SYS_PIVOT_ROOT, close_fds_except, die_with_parent, unshare


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
    # "shared": the run's host mounts / shared, as systemd does; "private":
    # as the article's 2014 hosts did.
    propagation: str = "shared"


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
    witness: dict = None       # what the grader observed of the command (witness.py)
    seconds: float = 0.0


class RunSetup:
    """The process between the grader and the run's PID 1, and the order in
    which it sets a run up. It stays in the machine's PID namespace so that
    the run can have a PID 1 of its own."""

    def __init__(self, request, limits, id_maps, token, ctl_r, rep_w, cgroup, watch_fd=None):
        self.request, self.limits, self.id_maps, self.token = request, limits, id_maps, token
        self.ctl_r, self.rep_w, self.cgroup, self.watch_fd = ctl_r, rep_w, cgroup, watch_fd
        self.parent = os.getppid()

    def main(self):
        try:
            self.setup_run()
        except BaseException as error:  # noqa: BLE001 - reported, not raised
            self.fail(scheduler.FAILED, f"setting up the throwaway host failed: {error}")
        os._exit(0)

    def setup_run(self):
        limits, privileged = self.limits, self.id_maps.privileged
        self.detach_from_grader()
        Cgroups.join(self.cgroup)  # first, so that all the run will start is in it
        if not privileged:  # mounts need root of a user namespace one level up
            self.enter_user_namespace()
            ids.become_root(False)
        self.unshare(CLONE_NEWNS, "CLONE_NEWNS")
        root = rootfs.RunRoot(self.request, limits, self.id_maps.base if privileged else 0,
                              rootfs.open_anchors(rootfs.reach_for(self.request.reach)))
        root.build()
        root.enter()
        if privileged:
            self.enter_user_namespace()
        else:
            self.map_self()
        ids.become_root(privileged)
        self.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID,
                     "the run's namespaces")
        # After the uid change, which clears it: die with the grader.
        die_with_parent(signal.SIGKILL)
        if os.getppid() != self.parent:
            os._exit(1)
        self.set_limits()
        self.start_init()

    # -- the steps --------------------------------------------------------------

    def fail(self, kind, message):
        os.write(self.rep_w, kind + message.encode())
        os._exit(1)

    def unshare(self, flags, what):
        try:
            unshare(flags, what)
        except OSError as error:
            self.fail(scheduler.REFUSED if flags == CLONE_NEWUSER else scheduler.FAILED,
                      f"unshare({what}) failed: {os.strerror(error.errno)}")

    def detach_from_grader(self):
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        close_fds_except({self.ctl_r, self.rep_w, self.watch_fd})

    def enter_user_namespace(self):
        """A new user namespace, its maps written by the grader from outside."""
        self.unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
        os.write(self.rep_w, scheduler.ASK_MAPS)
        if os.read(self.ctl_r, 1) != scheduler.MAPS_WRITTEN:
            os._exit(1)

    def map_self(self):
        """An ordinary user's run: root inside is the one id outside."""
        self.unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write("0 0 1")

    def set_limits(self):
        # Set inside the run's user namespace, so that runs do not share one
        # count of processes.
        limits = self.limits
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    def start_init(self):
        pid = os.fork()
        if pid == 0:
            die_with_parent(signal.SIGKILL)
            os.close(self.ctl_r)
            try:
                RunInit(self.request, self.limits, self.token, self.watch_fd).main(self.rep_w)
                os._exit(0)
            except BaseException as error:  # noqa: BLE001 - reported, not raised
                self.fail(scheduler.FAILED, f"the throwaway host failed: {error}")
        os.waitpid(pid, 0)


class Sandbox:
    """Runs requests in throwaway hosts, up to `jobs` at a time."""

    def __init__(self, limits=None, jobs=None):
        self.limits = limits or Limits()
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.id_maps = ids.IdMaps.for_this_user()
        if SYS_PIVOT_ROOT is None:
            raise Unavailable(f"nskit's sandbox does not know pivot_root on {platform.machine()}")
        self.cgroups = (Cgroups.available(self.limits.memory, self.limits.processes)
                        if self.id_maps.privileged else None)

    def launch(self, request):
        """Fork the first stage of a run's host."""
        ctl_r, ctl_w = os.pipe()
        rep_r, rep_w = os.pipe()
        token = os.urandom(8).hex()
        cgroup = self.cgroups.create() if self.cgroups else []
        watch = witness.Watch() if witness.wanted(request) else None
        started = time.monotonic()
        gc.freeze()  # a collection in the run's processes would copy every page it scans
        pid = os.fork()
        if pid == 0:
            try:
                gc.disable()
                RunSetup(request, self.limits, self.id_maps, token, ctl_r, rep_w, cgroup,
                         watch and watch.run_end.fileno()).main()
            finally:
                os._exit(1)
        os.close(ctl_r)
        os.close(rep_w)
        if watch:
            watch.after_fork()
        return scheduler.Running(request, pid, ctl_w, rep_r, started, self.limits.timeout, cgroup,
                                 watch)

    def run(self, requests):
        """Yield a Result for every request, in the order they finish."""
        yield from scheduler.Scheduler(self).run(requests)

    def probe_available(self):
        """Raise Unavailable, with the reason, where no throwaway host can be built."""
        for result in self.run([Request(["/bin/true"])]):
            if result.error:
                raise Unavailable(result.error)
