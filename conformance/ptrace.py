"""ptrace, beyond Part 1: the grader follows the parent that clones, so
that the order of its child's start and its own calls is forced, not raced
(see Trace)."""
import ctypes
import enum
import os
import signal
import struct
import time

from . import procfs
from .journal import Blocked, Clone, Follow, Write
from .observe import start_facts
from .syscalls import ARCH, NAME_OF, NATIVE, SIGCHLD, libc, native
from .witness import WITNESS

WAITS, EXITS = native("wait4", "waitid"), native("exit_group")
READS = native("read", "readv", "pread64", "recvfrom", "recvmsg")
WRITES = native("write", "writev", "sendto", "sendmsg")
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
R10, R9, R8, RAX, RDX, RSI, RDI = 7, 8, 9, 10, 12, 13, 14
O_TRACESYSGOOD, O_TRACEFORK, O_TRACEVFORK, O_TRACECLONE, O_EXITKILL = 1, 2, 4, 8, 0x100000
EVENT_FORK, EVENT_VFORK, EVENT_CLONE, EVENT_STOP = 1, 2, 3, 128
WALL = 0x40000000
SYSCALL_STOP = signal.SIGTRAP | 0x80
PTRACE_GET_SYSCALL_INFO, ENTRY = 0x420E, 1
# struct ptrace_syscall_info, its entry: op, arch, ip, sp, nr, args[6].
SYSCALL_INFO = struct.Struct("B3xIQQQ6Q")


def _ptrace(request, pid, data=0):
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(request, pid, None, ctypes.c_void_p(data)) == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


class Trace:
    """Beyond Part 1: a parent is to hold its child until it has set it up.
    The order is forced, never raced. The grader follows (ptrace) the first
    process that clones, from outside the run, and keeps it stopped from the
    moment a child of it exists: its children (with whatever they run first,
    sh -c say, and whatever that starts) run alone until they exec, end, or
    sleep outside a held call (they wait for something). Only then does the
    parent go on, one system call at a time, and after each its children
    again run until they exec, end or sleep: what the parent's call woke, it
    woke within that call. Every child of the parent is followed so from
    its clone, and each time the parent is let go one call, what each of
    them sleeps in goes into the journal (Blocked), as does every write the
    parent is about to make (Write): the journal then says whether the
    command's execve came after the parent wrote to a pipe its child was
    reading. A child that spins instead of sleeping holds its parent until
    the run times out."""

    def __init__(self, parent, journal):
        self.parent, self.journal = parent, journal
        self.children = []         # its children, in the order it made them
        self.unseen = set()        # children whose first stop is still to come
        self.cloned_at = {}        # child -> the parent's calls when it was made
        self.child_exec = {}       # child -> (notification id, path): its execve, held
        self.child = None          # the child whose execve Step.EXEC lets go
        self.stopped, self.inject = False, 0
        self.calls = 0             # system call stops of the parent so far
        self.blocked = {}          # pid -> what journal.Blocked last said of it
        self.start = None          # the witness's start_facts, when a child is it
        _ptrace(PTRACE_SEIZE, parent, O_TRACECLONE | O_TRACEFORK | O_TRACEVFORK
                | O_TRACESYSGOOD | O_EXITKILL)
        journal.add(Follow(parent))

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
                    time.sleep(min(left, 0.0001))  # the children run: let them
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
            if event in (EVENT_FORK, EVENT_VFORK, EVENT_CLONE):
                message = ctypes.c_ulong()
                _ptrace(PTRACE_GETEVENTMSG, self.parent, ctypes.addressof(message))
                self._made(message.value)
            elif sig == SYSCALL_STOP:
                self.calls += 1
                if self._call() is Step.DONE:
                    return self._let_go()
            elif not event and sig != signal.SIGTRAP:
                self.inject = sig  # a signal for the parent: delivered when it goes on
        for child in list(self.unseen):
            try:
                pid, status = os.waitpid(child, os.WNOHANG | WALL)
            except ChildProcessError:
                self.unseen.discard(child)
                continue
            if pid == 0:
                return Step.FOLLOWING
            if os.WIFSTOPPED(status):
                _ptrace(PTRACE_DETACH, child)
            self.unseen.discard(child)
        for child, (_, path) in list(self.child_exec.items()):
            if path == WITNESS:
                # Before the parent goes on: the maps it wrote so far.
                self.start = start_facts(child, self.calls == self.cloned_at.get(child))
                self.child = child
                return self._let_go()
            if (procfs.stat_fields(child) or (0, 0, 0))[2] == SIGCHLD:
                # It runs something else first (sh -c, say): still followed, for
                # that may exec the command next. (A child without SIGCHLD would
                # have that exec held until its parent waits: let the parent go.)
                self.child = child
                return Step.EXEC
            self.child = child
            return self._let_go()
        live = [child for child in self.children if not procfs.ended(child)]
        if all(quiet(child) for child in live):
            self._write_down(live)
            return self._go_on()  # they wait: the parent may go on, one call
        return Step.FOLLOWING

    def _made(self, child):
        """The parent made a child: followed from now on."""
        self.children.append(child)
        self.unseen.add(child)
        self.cloned_at[child] = self.calls
        for event in reversed(self.journal.events):
            if isinstance(event, Clone) and event.parent == self.parent and event.child is None:
                event.child = child
                break
        else:
            self.journal.add(Clone(self.parent, None, child))

    def _call(self):
        """The parent stopped at a system call: a write goes into the
        journal before it is made; a wait or an exit ends the following."""
        info = syscall_info(self.parent)
        if info is None or info[0] != ENTRY:
            return None
        nr, args = info[1], info[2]
        if nr in WAITS | EXITS:
            return Step.DONE
        if nr in WRITES:
            fd = args[0] & 0xFFFFFFFF
            self.journal.add(Write(self.parent, fd, procfs.fd_target(self.parent, fd),
                                   args[2] if nr in (NATIVE.get("write"), NATIVE.get("sendto"))
                                   else None))
        return None

    def _write_down(self, live):
        """What each process of the children's trees sleeps in, where it changed."""
        holds = None
        for pid in [p for child in live for p in tree(child)]:
            calls = procfs.syscalls(pid)
            nr, args = calls[0] if calls else (None, [])
            fd = args[0] & 0xFFFFFFFF if nr in READS and args else None
            target = procfs.fd_target(pid, fd) if fd is not None else None
            if not calls and (reading := procfs.reading_by_stack(pid)):
                nr, (fd, target) = NATIVE.get("read"), reading
            said = (nr, target)
            if self.blocked.get(pid) == said:
                continue
            self.blocked[pid] = said
            if holds is None:
                holds = writers(self.parent)
            name = NAME_OF.get(nr, f"system call {nr}") if nr is not None else "running"
            self.journal.add(Blocked(pid, name, fd, target, _held(target, holds)))

    @property
    def held_at_clone(self):
        """Whether the parent is stopped and has made no call since its last child."""
        return bool(self.children) and self.stopped and \
            self.calls == self.cloned_at.get(self.children[-1])

    def _go_on(self):
        _ptrace(PTRACE_SYSCALL, self.parent, self.inject)
        self.stopped = False
        return Step.FOLLOWING

    def end(self):
        """The run is being ended: its traced processes are killed and
        waited for here, or its PID 1 would wait for the grader to reap them."""
        for pid in (self.parent, *self.unseen):
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


def syscall_info(pid):
    """(op, number, args) of a process stopped at a system call, or None.
    Where PTRACE_GET_SYSCALL_INFO is missing (User-mode Linux, x86_64 only),
    its registers say: at an entry, rax holds -ENOSYS."""
    buf = ctypes.create_string_buffer(SYSCALL_INFO.size)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(PTRACE_GET_SYSCALL_INFO, pid, ctypes.c_void_p(SYSCALL_INFO.size),
                   ctypes.addressof(buf)) > 0:
        op, _, _, _, nr, *args = SYSCALL_INFO.unpack(buf.raw)
        return op, nr, args
    if ARCH != "x86_64":
        return None
    regs = (ctypes.c_ulong * USER_REGS)()
    try:
        _ptrace(PTRACE_GETREGS, pid, ctypes.addressof(regs))
    except OSError:
        return None
    op = ENTRY if regs[RAX] == (-38) & 0xFFFFFFFFFFFFFFFF else 2
    return op, regs[ORIG_RAX], [regs[i] for i in (RDI, RSI, RDX, R10, R8, R9)]


def tree(pid, depth=0):
    """pid and its descendants (bounded)."""
    out = [pid]
    if depth < 8:
        for child in procfs.children(pid)[:procfs.BOUND]:
            out += tree(child, depth + 1)
    return out[:procfs.BOUND]


def writers(pid):
    """What the fds of pid name that it may write to: {target}."""
    out = set()
    for fd, target in procfs.fds(pid).items():
        if target.startswith(b"socket:") or procfs.writable(pid, fd):
            out.add(target)
    return out


def _held(target, holds):
    """Whether the parent holds the other end of what a child reads: a
    pipe's write end (the same pipe), or a socket (its peer cannot be named
    from /proc: any socket of the parent's)."""
    if target is None:
        return False
    if target.startswith(b"pipe:"):
        return target in holds
    if target.startswith(b"socket:"):
        return any(t.startswith(b"socket:") and t != target for t in holds)
    return False


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
