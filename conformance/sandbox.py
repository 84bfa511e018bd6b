"""The throwaway host: every graded run gets a fresh one, set up in the
order RunSetup.setup_run() reads top to bottom:

- the run's setup is forked from the launcher (launcher.py) before the run
  is due, and joins the run's cgroup (cgroups.py) while it waits for it;
- it opens the program and stages the folders the run must reach, while it
  may still enter every folder of the machine (rootfs.py);
- it enters the run's quota namespace: a user namespace owned by the
  unprivileged id the run's root is outside (ids.py), with low limits;
- in a mount namespace of its own there, it builds the run's root: read-only
  binds of what a run needs, a minimal /dev, empty tmpfs of the run's own,
  the program copied in (rootfs.py);
- it clones the run's PID 1 into new user, PID, UTS, IPC and network
  namespaces, and writes its id maps from outside (ids.py);
- it mounts a proc of the run's PID namespace into the new root while the
  machine's is still visible, pivots into the new root and detaches the old;
- PID 1 takes a mount namespace of its own, a second proc, a hostname, a
  message queue and links (netlink.py), runs the program and ends everything
  it left (runinit.py), and sends the evidence on a pipe only it holds.

The grader follows its runs from one event loop (scheduler.py). This module
holds the public API and that order.
"""
import atexit
import os
import pickle
import platform
import signal
import struct
import time
from dataclasses import dataclass, field

from . import ids, rootfs, scheduler, witness
from .catalog import (CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID,
                      CLONE_NEWUSER, CLONE_NEWUTS)
from .cgroups import Cgroups
from .launcher import Launcher, take_early
from .rootfs import hidden_ancestor  # noqa: F401 - tools/frame.py imports it from here
from .runinit import RunInit
from .syscalls import (SYS_PIVOT_ROOT, clone, close_fds_except, die_with_parent,
                       set_dumpable, unshare)


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
    program: int = 16 << 20    # the largest program a run copies in
    propagation: str = "shared"  # the run's host's mounts: "shared" as systemd's, or "private"


@dataclass
class Request:
    """One program run: argv inside the host, plus what it must be able to reach."""
    argv: list
    reach: list = field(default_factory=list)   # folders to bind read-only at the same path
    # path inside (under /nskit) -> bytes, or the path of a file on the machine
    # read when the run starts (never through a link); copied in, mode 0755
    files: dict = field(default_factory=dict)
    tag: object = None
    # The program is a parent in charge of its command (steps beyond Part 1):
    # the grader also follows its clones and kills it once its command is seen.
    parent_in_charge: bool = False


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
    refused: bool = False      # error is the machine's refusal of user namespaces
    witness: dict = None       # what the grader observed of the command (witness.py)
    seconds: float = 0.0


QUOTAS = {  # per run, in its quota user namespace: the run cannot raise them
    **{f"max_{kind}_namespaces": 64
       for kind in ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")},
    "max_inotify_instances": 16, "max_inotify_watches": 1024,
    "max_fanotify_groups": 16, "max_fanotify_marks": 1024,
}


class RunSetup:
    """The process between the grader and the run's PID 1, and the order in
    which it sets a run up. It never enters the run's own user namespace: it
    stays one above it, in the run's quota namespace, and in the machine's
    PID namespace, so that the run has a PID 1 of its own."""

    def __init__(self, request, limits, id_maps, token, ctl_r, rep_w, cgroup, watch_fd=None):
        self.request, self.limits, self.id_maps, self.token = request, limits, id_maps, token
        self.ctl_r, self.rep_w, self.cgroup, self.watch_fd = ctl_r, rep_w, cgroup, watch_fd
        self.parent = os.getppid()

    def main(self):
        try:
            self.setup_run()
        except rootfs.RunProblem as problem:
            self.fail(scheduler.FAILED, str(problem))
        except BaseException as error:  # noqa: BLE001 - reported, not raised
            self.fail(scheduler.FAILED, f"setting up the throwaway host failed: {error}")
        os._exit(0)

    def setup_run(self):
        self.detach_from_grader()  # already in the run's cgroup (run_setup)
        # Opened while this process may still enter every folder of the machine.
        programs = rootfs.open_programs(self.request.files, self.limits.program)
        privileged = self.id_maps.privileged
        reach = rootfs.stage(rootfs.reach_for(self.request.reach), privileged)
        self.enter_quota_namespace()
        self.unshare(CLONE_NEWNS, "CLONE_NEWNS")
        root = rootfs.RunRoot(self.limits, reach, programs, staged=privileged)
        root.build()
        init = self.start_init()
        ids.write_run_maps(init.pid, privileged)
        root.mount_proc(init.pid)
        root.enter()
        init.go()
        os.waitpid(init.pid, 0)

    # -- the steps --------------------------------------------------------------

    def fail(self, kind, message):
        os.write(self.rep_w, kind + message.encode(errors="replace"))
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

    def enter_quota_namespace(self):
        """A user namespace of the run's own, owned by an unprivileged id, its
        maps written by the grader from outside, with low limits on what the
        run may make: the kernel checks them at every level above the run,
        and the run has no capability here to raise them."""
        if self.id_maps.privileged:
            os.setresgid(self.id_maps.base, self.id_maps.base, self.id_maps.base)
            os.setgroups([])
            os.setresuid(self.id_maps.base, self.id_maps.base, self.id_maps.base)
        self.unshare(CLONE_NEWUSER, "CLONE_NEWUSER")
        # Only a dumpable process's maps may be written by its own uid; no
        # process but the grader's can name this one (see start_init).
        set_dumpable(not self.id_maps.privileged)
        os.write(self.rep_w, scheduler.ASK_MAPS)
        if os.read(self.ctl_r, 1) != scheduler.MAPS_WRITTEN:
            os._exit(1)
        ids.become_root(self.id_maps.privileged)
        set_dumpable(False)  # a uid change may have set it anew
        die_with_parent(signal.SIGKILL)  # after the uid change, which clears it
        if os.getppid() != self.parent:
            os._exit(1)
        for name, value in QUOTAS.items():
            try:
                with open(f"/proc/sys/user/{name}", "w") as fh:
                    fh.write(str(value))
            except FileNotFoundError:
                pass  # an older kernel without this kind of namespace

    def start_init(self):
        """The run's PID 1, in new user, PID, UTS, IPC and network namespaces;
        it shares this mount namespace until its root is ready. It stays
        dumpable (so that this process, of the same uid, may write its maps)
        only until then: until it is told to go, no other process exists in
        its namespaces, and none outside them can name it."""
        go_r, go_w = os.pipe()
        set_dumpable(True)  # inherited
        pid = clone(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET)
        if pid != 0:
            set_dumpable(False)
        else:
            try:
                die_with_parent(signal.SIGKILL)
                os.close(go_w)
                os.close(self.ctl_r)
                go = os.read(go_r, 1)
                set_dumpable(False)
                if go != b"g":
                    os._exit(1)
                os.close(go_r)
                RunInit(self.request, self.limits, self.token, self.watch_fd).main(self.rep_w)
                os._exit(0)
            except BaseException as error:  # noqa: BLE001 - reported, not raised
                self.fail(scheduler.FAILED, f"the throwaway host failed: {error}")
        os.close(go_r)
        return _Init(pid, go_w)


@dataclass
class _Spare:
    """A run's setup as the grader holds it until it hands it a run."""
    pid: int
    pidfd: int
    ctl_w: int
    rep_r: int
    cgroup: list
    watch: witness.Watch


@dataclass
class _Init:
    pid: int
    go_w: int

    def go(self):
        os.write(self.go_w, b"g")
        os.close(self.go_w)


def run_setup(ctl_r, rep_w, watch_fd):
    """In a process forked by the launcher: join the cgroup the grader names
    on the control pipe, wait there for a run's request, and set the run up.
    Joining is the slow part of a cgroup (the kernel waits for a grace
    period), so the grader forks a setup before its run is due. watch_fd: the
    run's end of its witness's socket (witness.py), used when its command is
    the witness."""
    set_dumpable(False)
    try:
        cgroup = _read_message(ctl_r)
    except (OSError, ValueError, struct.error, pickle.UnpicklingError):
        os._exit(1)
    try:
        Cgroups.join(cgroup)  # first, so that all the run will start is in it
    except OSError as error:
        os.write(rep_w, scheduler.FAILED + f"setting up the throwaway host failed: {error}".encode())
        os._exit(1)
    try:
        request, limits, id_maps, token = _read_message(ctl_r)
    except (OSError, ValueError, struct.error, pickle.UnpicklingError):
        os._exit(1)
    if not witness.wanted(request.files):
        os.close(watch_fd)
        watch_fd = None
    RunSetup(request, limits, id_maps, token, ctl_r, rep_w, cgroup, watch_fd).main()


def _read_message(fd):
    size, = struct.unpack("I", _read_exactly(fd, 4))
    return pickle.loads(_read_exactly(fd, size))


def _send_message(fd, value):
    data = pickle.dumps(value)
    scheduler.send(fd, struct.pack("I", len(data)) + data)


def _read_exactly(fd, size):
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise ValueError("the grader closed the pipe")
        data += chunk
    return bytes(data)


class Sandbox:
    """Runs requests in throwaway hosts, up to `jobs` at a time."""

    def __init__(self, limits=None, jobs=None):
        self.limits = limits or Limits()
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.id_maps = ids.IdMaps.for_this_user()
        if SYS_PIVOT_ROOT is None:
            raise Unavailable(f"nskit's sandbox does not know pivot_root on {platform.machine()}")
        self.cgroups = Cgroups.available(self.limits.memory, self.limits.processes)
        self._launcher = None
        self.spares = []  # setups waiting for runs (see prepare)
        self._spares_atexit = False

    @property
    def launcher(self):
        """Started at the first run, before the grader reads anything of a learner."""
        if self._launcher is None:
            try:
                self._launcher = take_early() or Launcher()
            except OSError as error:
                raise Unavailable(f"starting the launcher failed: {error.strerror}")
        return self._launcher

    def prepare(self, count):
        """Have up to count setups forked and in their cgroups, waiting for
        runs: what they know is the grader's, nothing of any learner's."""
        if not self._spares_atexit:
            atexit.register(self.drop_spares)
            self._spares_atexit = True
        while len(self.spares) < count:
            try:
                self.spares.append(self._fork_setup())
            except OSError:
                return  # the run that needs one will fork it, and fail if it cannot

    def _fork_setup(self):
        """Have the launcher fork a run's setup, and name it its cgroup."""
        launcher = self.launcher
        ctl_r, ctl_w = os.pipe()
        rep_r, rep_w = os.pipe()
        watch = witness.Watch()  # not every run needs it: the setup drops it then
        cgroup = []
        try:
            cgroup = self.cgroups.create() if self.cgroups else []
            pid, pidfd = launcher.fork_setup(ctl_r, rep_w, watch.run_end.fileno())
        except OSError:
            for fd in (ctl_r, ctl_w, rep_r, rep_w):
                os.close(fd)
            watch.close()
            Cgroups.remove(cgroup)
            raise
        os.close(ctl_r)
        os.close(rep_w)
        watch.after_fork()
        spare = _Spare(pid, pidfd, ctl_w, rep_r, cgroup, watch)
        try:
            _send_message(ctl_w, cgroup)
        except OSError:
            pass  # the setup is gone: its pipe says so
        return spare

    def launch(self, request):
        """Hand a run's request to a setup forked for it (see prepare)."""
        spare = self.spares.pop(0) if self.spares else self._fork_setup()
        watch = spare.watch
        if not witness.wanted(request.files):
            watch.close()
            watch = None
        else:
            watch.in_charge = request.parent_in_charge
        run = scheduler.Running(request, spare.pid, spare.pidfd, spare.ctl_w, spare.rep_r,
                                time.monotonic(), self.limits.timeout, spare.cgroup, watch)
        try:
            _send_message(spare.ctl_w, (Request(request.argv, request.reach, request.files,
                                                parent_in_charge=request.parent_in_charge),
                                        self.limits, self.id_maps, os.urandom(8).hex()))
        except OSError:
            pass  # the setup is gone: its pipe says so
        return run

    def drop_spares(self):
        """End the setups no run will need, and remove their cgroups."""
        spares, self.spares = self.spares, []
        for spare in spares:
            for fd in (spare.ctl_w, spare.rep_r):
                os.close(fd)
            scheduler.end(spare)
            spare.watch.close()
        Cgroups.remove([folder for spare in spares for folder in spare.cgroup], patience=30.0)

    def run(self, requests):
        """Yield a Result for every request, in the order they finish."""
        yield from scheduler.Scheduler(self).run(requests)

    def close(self):
        self.drop_spares()
        if self._launcher is not None:
            self._launcher.close()
            self._launcher = None

    def probe_available(self):
        """Raise Unavailable, with the reason, where no throwaway host can be built."""
        # Setups for the first runs join their cgroups meanwhile.
        self.prepare(self.jobs + 1)
        for result in self.run([Request(["/bin/true"])]):
            if result.error:
                raise Unavailable(result.error, refused=result.refused)
