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
holds the public API; runsetup.py holds that order, protocol.py what the
grader and its runs say to each other.
"""
import atexit
import os
import platform
import time
from dataclasses import dataclass

from . import ids, scheduler, witness
from .cgroups import Cgroups
from .launcher import Launcher, take_early
from .protocol import Limits, Request, Result, send_message  # noqa: F401 - the public API
from .rootfs import hidden_ancestor  # noqa: F401 - tools/frame.py imports it from here
from .syscalls import SYS_PIVOT_ROOT
from .watch import Watch


class Unavailable(Exception):
    """This machine will not let the grader build a throwaway host; refused
    when it is user namespaces that the machine refuses."""

    def __init__(self, message, refused=False):
        super().__init__(message)
        self.refused = refused


@dataclass
class _Spare:
    """A run's setup as the grader holds it until it hands it a run."""
    pid: int
    pidfd: int
    ctl_w: int
    rep_r: int
    cgroup: list
    watch: Watch


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
        # However the grader ends: the spares first, then the launcher, which
        # waits for every setup it forked, a spare too, and a spare waits
        # for its request on a pipe only this process can close.
        atexit.register(self.close)

    @property
    def launcher(self):
        """Started at the first run, before the grader reads anything of a learner."""
        if self._launcher is None:
            try:
                self._launcher = take_early() or Launcher()
            except OSError as error:
                raise Unavailable(f"starting the launcher failed: {error.strerror}")
            atexit.unregister(self._launcher.close)  # closed by self.close, in order
        return self._launcher

    def prepare(self, count):
        """Have up to count setups forked and in their cgroups, waiting for
        runs: what they know is the grader's, nothing of any learner's."""
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
        watch = Watch()  # not every run needs it: the setup drops it then
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
            send_message(ctl_w, cgroup)
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
            watch.pivot_root = request.pivot_root
        run = scheduler.Running(request, spare.pid, spare.pidfd, spare.ctl_w, spare.rep_r,
                                time.monotonic(), self.limits.timeout, spare.cgroup, watch)
        try:
            send_message(spare.ctl_w, (Request(request.argv, request.reach, request.files,
                                                parent_in_charge=request.parent_in_charge,
                                                pivot_root=request.pivot_root),
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
