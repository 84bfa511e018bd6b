"""A run's setup: the process between the grader and the run's PID 1, forked
by the launcher (launcher.py), and the order in which it sets a run up
(RunSetup.setup_run, read top to bottom; sandbox.py says it in words)."""
import os
import pickle
import signal
import struct
from dataclasses import dataclass

from . import ids, rootfs, witness
from .catalog import (CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID,
                      CLONE_NEWUSER, CLONE_NEWUTS)
from .cgroups import Cgroups
from .protocol import ASK_MAPS, FAILED, MAPS_WRITTEN, REFUSED, read_message
from .runinit import RunInit
from .syscalls import clone, close_fds_except, die_with_parent, set_dumpable, unshare


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

    def __init__(self, request, limits, id_maps, token, ctl_r, rep_w, watch_fd=None):
        self.request, self.limits, self.id_maps, self.token = request, limits, id_maps, token
        self.ctl_r, self.rep_w, self.watch_fd = ctl_r, rep_w, watch_fd
        self.parent = os.getppid()

    def main(self):
        try:
            self.setup_run()
        except rootfs.RunProblem as problem:
            self.fail(FAILED, str(problem))
        except BaseException as error:  # noqa: BLE001 - reported, not raised
            self.fail(FAILED, f"setting up the throwaway host failed: {error}")
        os._exit(0)

    def setup_run(self):
        self.detach_from_grader()  # already in the run's cgroup (run_setup)
        # Opened while this process may still enter every folder of the machine.
        programs = rootfs.open_programs(self.request.files, self.limits.program)
        privileged = self.id_maps.privileged
        reach = rootfs.stage(rootfs.reach_for(self.request.reach), privileged)
        self.enter_quota_namespace()
        self.unshare(CLONE_NEWNS, "CLONE_NEWNS")
        root = rootfs.RunRoot(self.limits, reach, programs, staged=privileged,
                              pivot_root=self.request.pivot_root)
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
            self.fail(REFUSED if flags == CLONE_NEWUSER else FAILED,
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
        os.write(self.rep_w, ASK_MAPS)
        if os.read(self.ctl_r, 1) != MAPS_WRITTEN:
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
                self.fail(FAILED, f"the throwaway host failed: {error}")
        os.close(go_r)
        return _Init(pid, go_w)


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
        cgroup = read_message(ctl_r)
    except (OSError, ValueError, struct.error, pickle.UnpicklingError):
        os._exit(1)
    try:
        Cgroups.join(cgroup)  # first, so that all the run will start is in it
    except OSError as error:
        os.write(rep_w, FAILED + f"setting up the throwaway host failed: {error}".encode())
        os._exit(1)
    try:
        request, limits, id_maps, token = read_message(ctl_r)
    except (OSError, ValueError, struct.error, pickle.UnpicklingError):
        os._exit(1)
    if not witness.wanted(request.files):
        os.close(watch_fd)
        watch_fd = None
    RunSetup(request, limits, id_maps, token, ctl_r, rep_w, watch_fd).main()
