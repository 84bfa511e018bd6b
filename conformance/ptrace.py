"""ptrace, beyond Part 1: the grader follows the parent that clones, so
that the order of its child's start and its own calls is forced, not raced
(see Trace)."""
import ctypes
import enum
import os
import signal
import time

from . import procfs
from .observe import start_facts
from .syscalls import ARCH, SIGCHLD, libc, native
from .witness import WITNESS

WAITS, EXITS = native("wait4", "waitid"), native("exit_group")
# A process held at a seccomp notification is not asleep: the grader answers it.
NOTIFIED = native("execve", "execveat", "exit_group", "clone", "fork", "vfork", "clone3")


class Step(enum.Enum):
    """What Trace.step says: the parent is still followed; the child's held
    execve (of something else than the witness) may go now; or the parent
    is let go, and nothing is followed any more."""
    FOLLOWING = "following"
    EXEC = "exec"
    DONE = "done"


PTRACE_SYSCALL, PTRACE_DETACH, PTRACE_SETOPTIONS = 24, 17, 0x4200
PTRACE_GETEVENTMSG, PTRACE_SEIZE, PTRACE_GETREGS = 0x4201, 0x4206, 12
ORIG_RAX, USER_REGS = 15, 27  # x86_64's struct user_regs_struct, in longs
O_TRACESYSGOOD, O_TRACEFORK, O_TRACEVFORK, O_TRACECLONE, O_EXITKILL = 1, 2, 4, 8, 0x100000
EVENT_FORK, EVENT_VFORK, EVENT_CLONE, EVENT_STOP = 1, 2, 3, 128
WALL = 0x40000000
SYSCALL_STOP = signal.SIGTRAP | 0x80


def _ptrace(request, pid, data=0):
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(request, pid, None, ctypes.c_void_p(data)) == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


def _stopped_in(pid, calls):
    """Whether a tracee at a syscall stop is in one of these calls. Where
    /proc/PID/syscall is missing (User-mode Linux, x86_64 only), its orig_rax
    says: PTRACE_GET_SYSCALL_INFO is missing there too."""
    if os.path.exists(f"/proc/{pid}/syscall") or ARCH != "x86_64":
        return procfs.in_calls(pid, calls)
    regs = (ctypes.c_ulong * USER_REGS)()
    _ptrace(PTRACE_GETREGS, pid, ctypes.addressof(regs))
    return regs[ORIG_RAX] in calls


class Trace:
    """Beyond Part 1: a parent is to hold its child until it has set it up.
    The order is forced, never raced. The grader follows (ptrace) the first
    process that clones, from outside the run, and keeps it stopped from the
    moment its child exists: the child (with whatever it runs first, sh -c
    say, and whatever that starts) runs alone until it execs the witness,
    ends, or sleeps outside a held call (it waits for something). Only then
    does the parent go on, one system call at a time, and after each the
    child again runs until it execs, ends or sleeps: what the parent's call
    woke, it woke within that call. So the witness's execve is seen either
    while the parent was still held at its clone (early: nothing told the
    child to go), or after one call of the parent, with the maps the parent
    had written by then. A child that spins instead of sleeping holds its
    parent until the run times out."""

    def __init__(self, parent):
        self.parent, self.child = parent, None
        self.child_free = False    # the child's first stop seen, and the child let go
        self.child_exec = None     # (notification id, path): its execve, held
        self.stopped, self.inject = False, 0
        self.early = True          # the parent has made no call since the clone
        self.start = None          # the witness's start_facts, when the child is it
        _ptrace(PTRACE_SEIZE, parent, O_TRACECLONE | O_TRACEFORK | O_TRACEVFORK
                | O_TRACESYSGOOD | O_EXITKILL)

    def step(self, budget=0.005):
        """Move on what can move, for up to budget seconds of the grader's
        time (a parent stops at every call: a tick each would be slow)."""
        deadline = time.monotonic() + budget
        # A stop of the parent is told to its tracer with SIGCHLD: blocked
        # here, it stays pending for sigtimedwait, which sleeps until it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            while True:
                done = self._step()
                left = deadline - time.monotonic()
                if done is not Step.FOLLOWING or left <= 0:
                    return done
                if self.stopped:
                    time.sleep(min(left, 0.0001))  # the child runs: let it
                else:
                    signal.sigtimedwait({signal.SIGCHLD}, left)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _step(self):
        while not self.stopped:
            try:
                pid, status = os.waitpid(self.parent, os.WNOHANG | WALL)
            except ChildProcessError:
                return Step.DONE
            if pid == 0:
                return Step.FOLLOWING
            if not os.WIFSTOPPED(status):
                return Step.DONE  # it ended
            self.stopped, sig, event = True, os.WSTOPSIG(status), status >> 16
            self.inject = 0
            if event in (EVENT_FORK, EVENT_VFORK, EVENT_CLONE) and self.child is None:
                message = ctypes.c_ulong()
                _ptrace(PTRACE_GETEVENTMSG, self.parent, ctypes.addressof(message))
                self.child = message.value
                # Its later children are none of the grader's business.
                _ptrace(PTRACE_SETOPTIONS, self.parent, O_TRACESYSGOOD | O_EXITKILL)
            elif sig == SYSCALL_STOP:
                self.early = False
                if _stopped_in(self.parent, WAITS | EXITS):
                    return self._let_go()
            elif not event and sig != signal.SIGTRAP:
                self.inject = sig  # a signal for the parent: delivered when it goes on
        if self.child is None:
            return self._go_on()  # a stop before the clone: not held there
        if not self.child_free:
            try:
                pid, status = os.waitpid(self.child, os.WNOHANG | WALL)
            except ChildProcessError:
                return self._let_go()
            if pid == 0:
                return Step.FOLLOWING
            if os.WIFSTOPPED(status):
                _ptrace(PTRACE_DETACH, self.child)
            self.child_free = True
        if self.child_exec is not None and self.child_exec[1] == WITNESS:
            self.start = start_facts(self.child, self.early)  # before the parent goes on
        elif self.child_exec is not None and (procfs.stat_fields(self.child) or (0, 0, 0))[2] == SIGCHLD:
            # It runs something else first (sh -c, say): still followed, for
            # that may exec the command next. (A child without SIGCHLD would
            # have that exec held until its parent waits: let the parent go.)
            return Step.EXEC
        if self.child_exec is not None or procfs.ended(self.child):
            return self._let_go()
        if quiet(self.child):
            return self._go_on()  # it waits: the parent may go on, one call
        return Step.FOLLOWING

    @property
    def held_at_clone(self):
        return self.child is not None and self.stopped and self.early

    def _go_on(self):
        _ptrace(PTRACE_SYSCALL, self.parent, self.inject)
        self.stopped = False
        return Step.FOLLOWING

    def end(self):
        """The run is being ended: its traced processes are killed and
        waited for here, or its PID 1 would wait for the grader to reap them."""
        for pid in (self.parent, None if self.child_free else self.child):
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, WALL)
            except (ProcessLookupError, ChildProcessError):
                pass

    def _let_go(self):
        try:
            _ptrace(PTRACE_DETACH, self.parent, self.inject)
        except OSError:
            pass  # it has ended
        return Step.DONE


def quiet(pid, depth=0):
    """Whether a process and all its descendants sleep (outside an execve)
    or have ended: nothing of it moves until something wakes it. Its
    children are read first: one that ends, ends before its parent wakes
    for it; an ended one that its parent waits for wakes it."""
    children = procfs.children(pid)
    if len(children) > procfs.BOUND or depth > 8:
        return False
    zombies = False
    for child in children:
        fields = procfs.stat_fields(child)
        if fields is not None and fields[0] in ("Z", "X"):
            zombies = True
        elif not quiet(child, depth + 1):
            return False
    fields = procfs.stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return True
    # One held at a seccomp notification is not asleep: the grader answers it.
    return (fields[0] == "S" and not procfs.in_calls(pid, NOTIFIED)
            and not (zombies and procfs.in_calls(pid, WAITS)))
