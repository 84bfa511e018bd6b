"""The witness: the command every graded program is given, and how the
grader watches it from outside the run.

A program is given one command, /nskit/witness: a script run by /nskit/sh,
a copy of the machine's dash made for the run, on a read-only mount the run
cannot change. The kernel knows a witness by its executable: (device, inode)
of that copy, which no other file has. The script first runs /nskit/ready:
that execve stops at a seccomp user notification (below) that the grader
holds, so the witness sits in wait4 for it, unchanged, until the grader has
read it; then it runs the article's commands for the learner to read.

The grader, outside the run's user namespace, reads only the kernel's facts
about the witness process: /proc/W/ns/*, /proc/W/mountinfo, NSpid, its ids
and its user namespace's maps, what its root and its /proc are, and its
hostname, links and SysV queues from inside its UTS, network and IPC
namespaces. Nothing the program prints is graded.

The order that decides "waits for its command" is forced, never raced:
every execve in the run stops at a seccomp user notification that the
grader answers. A child cloned without SIGCHLD only becomes waitable once it
has exec'd; its execve is held until its parent waits (with __WALL) or has
ended, so a parent whose waitpid would fail always fails. The witness is
observed, and released, only when its parent waits for it or has ended. The
program's own exit_group is held while a child of it may still become the
witness, and the run's PID 1 tears the run down only when the grader says
so, after every witness that was started has been observed.

Beyond Part 1 (08, 09), the program is a parent in charge of its child:
clones are held too, and the first process that clones is followed (Trace)
so that whether the command waited for its parent, and which maps it had
when it started, are forced, not raced; at its end the witness runs DONE,
held while the grader kills its parent (Watch._death_test).

Nothing here runs threads: the grader's side is part of its event loop.
"""
import ctypes
import errno
import fcntl
import os
import platform
import select
import shutil
import signal
import socket
import struct
import time

from .catalog import NAMESPACES, SIGCHLD
from .syscalls import libc

DIR = "/nskit"
SHELL = f"{DIR}/sh"
WITNESS = f"{DIR}/witness"
READY = f"{DIR}/ready"   # what the witness runs first: its exec is held until it is seen
DONE = f"{DIR}/done"     # beyond Part 1, what it runs last: held while its parent is killed
MACHINE_SHELL = "/bin/dash" if os.path.exists("/bin/dash") else "/bin/sh"
OVERFLOW_ID = 65534  # what an id without a mapping shows as (kernel.overflowuid)
BOUND = 256          # processes, mounts, links, queues, entries kept per observation
MOUNTINFO_TEXT = 64 << 10
KILLED_WITHIN = 2.0   # seconds a process killed with SIGKILL may take to end: a bound, not a verdict

ARCH = platform.machine()
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}.get(ARCH)
# (audit arch, its execve, execveat and exit_group numbers), the machine's own ABIs.
EXEC_CALLS = {
    "x86_64": [(0xC000003E, (59, 322, 0x40000208, 0x40000221, 231, 0x400000E7)),
               (0x40000003, (11, 358, 252))],
    "aarch64": [(0xC00000B7, (221, 281, 94))],
}.get(ARCH, [])
# Beyond Part 1, clone, fork, vfork and clone3 too, by ABI: the grader holds
# the parent from the moment it makes a child (see Trace).
CLONE_CALLS = {
    "x86_64": {0xC000003E: (56, 57, 58, 435), 0x40000003: (120, 2, 190, 435)},
    "aarch64": {0xC00000B7: (220, 435)},
}.get(ARCH, {})
CLONES = {nr for calls in CLONE_CALLS.values() for nr in calls}
EXECVEAT = {322, 0x40000221, 358, 281}
EXITS = {231, 0x400000E7, 252, 94}
EXECS = {nr for _, calls in EXEC_CALLS for nr in calls} - EXITS
NOTIFIED = {nr for _, calls in EXEC_CALLS for nr in calls} | CLONES
WAITS = {"x86_64": {61, 247}, "aarch64": {260, 95}}.get(ARCH, set())

SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER = 1, 8
SECCOMP_RET_ALLOW, SECCOMP_RET_USER_NOTIF = 0x7FFF0000, 0x7FC00000
NOTIF_RECV, NOTIF_SEND = 0xC0502100, 0xC0182101
NOTIF = struct.Struct("QIIiIQ6Q")
RESPONSE = struct.Struct("QqiI")
FLAG_CONTINUE = 1
# What the run's PID 1 and the grader say to each other on the witness socket.
PROGRAM_ENDED, TEAR_DOWN = b"E", b"K"
CLONE_NEW = {"ipc": 0x08000000, "net": 0x40000000, "uts": 0x04000000}


# -- the run's side -------------------------------------------------------------------

def wanted(files):
    """Whether a run whose root holds these files has the witness for its command."""
    return WITNESS in files


def furnish_root(new_root, files):
    """Into the run's root, before it is made read-only: the witness's shell,
    a copy that only this run has. The mount is locked read-only for the run:
    it can neither change the shell nor put another file in its place."""
    if not wanted(files):
        return
    folder = f"{new_root}{DIR}"
    os.makedirs(folder, exist_ok=True)
    shutil.copyfile(MACHINE_SHELL, f"{folder}/sh")
    os.chmod(f"{folder}/sh", 0o755)


def _filter(clones=False):
    """BPF: every execve, execveat and exit_group goes to the grader (with
    clones, every clone, fork, vfork and clone3 too); the rest is allowed."""
    code = []  # (op or label, k, label to jump to if true, if false: None for the next)
    for index, (arch, calls) in enumerate(EXEC_CALLS):
        if clones:
            calls = tuple(calls) + CLONE_CALLS.get(arch, ())
        code.append((0x20, 4, None, None))                     # A = arch
        code.append((0x15, arch, None, f"next{index}"))         # not this ABI: next block
        code.append((0x20, 0, None, None))                     # A = nr
        code += [(0x15, nr, "notify", None) for nr in calls]
        code.append((0x06, SECCOMP_RET_ALLOW, None, None))
        code.append((f"next{index}", None, None, None))
    code.append((0x06, SECCOMP_RET_ALLOW, None, None))
    code.append(("notify", None, None, None))
    code.append((0x06, SECCOMP_RET_USER_NOTIF, None, None))
    labels, program = {}, []
    for op, *_ in code:
        if isinstance(op, str):
            labels[op] = len(program)
        else:
            program.append(None)
    out, at = [], 0
    for op, k, jt, jf in code:
        if isinstance(op, str):
            continue
        jump = lambda label: 0 if label is None else labels[label] - at - 1
        out.append(struct.pack("HBBI", op, jump(jt), jump(jf), k))
        at += 1
    return b"".join(out), len(out)


def hold_execs(fd, clones=False):
    """In the program's process, before it is exec'd: every execve from here
    on waits for the grader's answer. The listener goes to the grader."""
    raw, count = _filter(clones)
    filters = ctypes.create_string_buffer(raw, len(raw))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    prog = Prog(count, ctypes.addressof(filters))
    listener = libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER,
                            SECCOMP_FILTER_FLAG_NEW_LISTENER, ctypes.byref(prog))
    if listener < 0:
        raise OSError(ctypes.get_errno(), "seccomp: " + os.strerror(ctypes.get_errno()))
    with socket.socket(fileno=fd) as channel:
        socket.send_fds(channel, [b"L"], [listener])
    os.close(listener)


def before_teardown(fd):
    """In the run's PID 1, once the program has ended: wait until the grader
    has seen every witness the program started."""
    try:
        os.write(fd, PROGRAM_ENDED)
        os.read(fd, 1)
    except OSError:
        pass  # the grader has gone: so will this run


# -- the grader's side ------------------------------------------------------------------

def _stat_fields(pid):
    """(state, ppid, exit signal) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); field 38 (exit_signal) is fields[35].
    return fields[0].decode(), int(fields[1]), int(fields[35])


def _ended(pid):
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def _children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _parent_state(pid):
    """"ended" (gone, or held in exit_group), "waiting" (in wait4 or waitid),
    or None: still at work."""
    if _ended(pid) or _in_calls(pid, EXITS):
        return "ended"
    if _in_calls(pid, WAITS):
        return "waiting"
    return None


def _in_calls(pid, calls):
    """Whether any thread of pid sits in one of these system calls."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall", "rb") as fh:
                first = fh.read(32).split(b" ", 1)[0]
        except OSError:
            continue
        if first.lstrip(b"-").isdigit() and int(first) in calls:
            return True
    return False


def _exe(pid):
    try:
        st = os.stat(f"/proc/{pid}/exe")
        return st.st_dev, st.st_ino
    except OSError:
        return None


def _read_path(pid, address):
    """The file name an execve is about to run, read from the caller's memory
    (it is stopped in the call); only used to know a witness is coming."""
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.pread(fd, len(WITNESS) + 1, address).split(b"\0", 1)[0].decode(errors="replace")
    except (OSError, OverflowError, ValueError):
        return None
    finally:
        os.close(fd)


def _status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("NSpid", "Uid", "Gid"):
                out[key] = [int(v) for v in value.split()]
    return out


def _id_map(pid, name):
    with open(f"/proc/{pid}/{name}") as fh:
        return [tuple(int(v) for v in line.split()) for line in fh if line.strip()]


def mapped(id_map, outside):
    """What an id of the machine is called inside a user namespace."""
    for first, lower, count in id_map:
        if lower <= outside < lower + count:
            return first + outside - lower
    return OVERFLOW_ID


def _mounts(text):
    """(major:minor, mount point, fstype) of every mount in a mountinfo."""
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        parts = left.split()
        if len(parts) >= 5 and right:
            out.append((parts[2], parts[4], right.split()[0]))
    return out


def _shared(text):
    """The mount points of a mountinfo's shared mounts (a peer group, "shared:N"):
    a namespace whose mounts were all made private has none."""
    out = []
    for line in text.splitlines():
        left, _, _ = line.partition(" - ")
        parts = left.split()
        if len(parts) >= 5 and any(tag.startswith("shared:") for tag in parts[6:]):
            out.append(parts[4])
    return out


def _inside(pid):
    """Hostname, links and SysV queues as the process sees them: read in its
    UTS, network and IPC namespaces, by a grader-side process that enters
    them (see Namespaces)."""
    from .runinit import _links
    with open("/proc/sysvipc/msg") as fh:
        queues = [int(line.split()[0]) for line in fh.read().splitlines()[1:BOUND + 1]]
    links = _links()
    return {"hostname": os.uname().nodename[:64], "links": dict(list(links.items())[:BOUND]),
            "queues": sorted(queues)}


class Namespaces:
    """Enters a process's UTS, network and IPC namespaces to read them. As the
    machine's root, the grader itself enters them and comes back; otherwise a
    short-lived fork enters the run's user namespace first (only its owner's
    descendants have a say over the namespaces it owns)."""

    def __init__(self):
        self.in_place = os.geteuid() == 0 and _machine_user_namespace()
        self.own = {}

    def read(self, pid, user_fd):
        if self.in_place:
            return self._in_place(pid)
        return self._forked(pid, user_fd)

    def _setns(self, fd, kind):
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
            return _inside(pid)
        finally:
            for kind in entered:
                try:
                    self._setns(self.own[kind], kind)
                except OSError as error:
                    # The grader must never go on in a run's namespace.
                    raise SystemExit(f"nskit: cannot return to the grader's {kind} namespace: "
                                     f"{error.strerror}") from None

    def _forked(self, pid, user_fd):
        import json
        fds = [os.open(f"/proc/{pid}/ns/{k}", os.O_RDONLY) for k in CLONE_NEW]
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.close(r)
                libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE: not the run's to read
                if user_fd is not None:
                    self._setns(user_fd, "user")
                for fd, kind in zip(fds, CLONE_NEW):
                    self._setns(fd, kind)
                os.write(w, json.dumps(_inside(pid)).encode())
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
        out = json.loads(data or b'{"error": "the reader died"}')
        if "error" in out:
            raise OSError(errno.EPERM, out["error"])
        return out


def _machine_user_namespace():
    try:
        with open("/proc/self/uid_map") as fh:
            return fh.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


NAMESPACE_READER = None


def observe(pid, shell_id, user_fd, helper=None):
    """The kernel's facts about a witness process, as the checks read them;
    helper: its child held in /nskit/ready, not counted among its processes."""
    global NAMESPACE_READER
    NAMESPACE_READER = NAMESPACE_READER or Namespaces()
    facts = {"ns": {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NAMESPACES}}
    status = _status(pid)
    facts["nspid"] = status["NSpid"]
    facts["uid"], facts["gid"] = status["Uid"][0], status["Gid"][0]
    facts["uid_map"], facts["gid_map"] = _id_map(pid, "uid_map"), _id_map(pid, "gid_map")
    with open(f"/proc/{pid}/mountinfo") as fh:
        mountinfo = fh.read(MOUNTINFO_TEXT)
    facts["mounts"] = _mounts(mountinfo)[:BOUND * 4]
    facts["shared"] = _shared(mountinfo)[:BOUND * 4]
    root = f"/proc/{pid}/root"
    st = os.stat(root)
    facts["root"] = [st.st_dev, st.st_ino]
    owners = []
    with os.scandir(root) as entries:
        for entry in entries:
            if len(owners) >= BOUND:
                break
            try:
                est = entry.stat(follow_symlinks=False)
                owners.append([entry.name, est.st_uid, est.st_gid])
            except OSError:
                pass
    facts["root_entries"] = sorted(owners)
    try:
        hidden = {_status(helper)["NSpid"][-1]} if helper else set()
    except (OSError, KeyError, IndexError):
        hidden = set()
    facts["proc"] = _proc_facts(root, facts["nspid"][-1], facts["mounts"], shell_id, hidden)
    facts.update(NAMESPACE_READER.read(pid, user_fd))
    return facts


def _start_facts(pid, early):
    """The witness at its execve: whether its parent was still held at the
    clone that made it, and its user namespace's maps then."""
    out = {"early": early}
    for name in ("uid_map", "gid_map"):
        try:
            out[name] = _id_map(pid, name)
        except OSError:
            out[name] = []
    return out


PTRACE_SYSCALL, PTRACE_DETACH, PTRACE_SETOPTIONS = 24, 17, 0x4200
PTRACE_GETEVENTMSG, PTRACE_SEIZE = 0x4201, 0x4206
O_TRACESYSGOOD, O_TRACEFORK, O_TRACEVFORK, O_TRACECLONE, O_EXITKILL = 1, 2, 4, 8, 0x100000
EVENT_FORK, EVENT_VFORK, EVENT_CLONE, EVENT_STOP = 1, 2, 3, 128
WALL = 0x40000000
SYSCALL_STOP = signal.SIGTRAP | 0x80


def _ptrace(request, pid, data=0):
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(request, pid, None, ctypes.c_void_p(data)) == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))


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
        self.start = None          # the witness's _start_facts, when the child is it
        _ptrace(PTRACE_SEIZE, parent, O_TRACECLONE | O_TRACEFORK | O_TRACEVFORK
                | O_TRACESYSGOOD | O_EXITKILL)

    def step(self, budget=0.005):
        """Move on what can move, for up to budget seconds of the grader's
        time (a parent stops at every call: a tick each would be slow);
        True once the parent is let go, "exec" when the child's execve of
        something else than the witness may go."""
        deadline = time.monotonic() + budget
        # A stop of the parent is told to its tracer with SIGCHLD: blocked
        # here, it stays pending for sigtimedwait, which sleeps until it.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            while True:
                done = self._step()
                left = deadline - time.monotonic()
                if done is not False or left <= 0:
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
                return True
            if pid == 0:
                return False
            if not os.WIFSTOPPED(status):
                return True  # it ended
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
                if _in_calls(self.parent, WAITS | EXITS):
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
                return False
            if os.WIFSTOPPED(status):
                _ptrace(PTRACE_DETACH, self.child)
            self.child_free = True
        if self.child_exec is not None and self.child_exec[1] == WITNESS:
            self.start = _start_facts(self.child, self.early)  # before the parent goes on
        elif self.child_exec is not None and (_stat_fields(self.child) or (0, 0, 0))[2] == SIGCHLD:
            # It runs something else first (sh -c, say): still followed, for
            # that may exec the command next. (A child without SIGCHLD would
            # have that exec held until its parent waits: let the parent go.)
            return "exec"
        if self.child_exec is not None or _ended(self.child):
            return self._let_go()
        if _quiet(self.child):
            return self._go_on()  # it waits: the parent may go on, one call
        return False

    @property
    def held_at_clone(self):
        return self.child is not None and self.stopped and self.early

    def _go_on(self):
        _ptrace(PTRACE_SYSCALL, self.parent, self.inject)
        self.stopped = False
        return False

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
        return True


def _quiet(pid, depth=0):
    """Whether a process and all its descendants sleep (outside an execve)
    or have ended: nothing of it moves until something wakes it. Its
    children are read first: one that ends, ends before its parent wakes
    for it; an ended one that its parent waits for wakes it."""
    children = _children(pid)
    if len(children) > BOUND or depth > 8:
        return False
    zombies = False
    for child in children:
        fields = _stat_fields(child)
        if fields is not None and fields[0] in ("Z", "X"):
            zombies = True
        elif not _quiet(child, depth + 1):
            return False
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return True
    # One held at a seccomp notification is not asleep: the grader answers it.
    return (fields[0] == "S" and not _in_calls(pid, NOTIFIED)
            and not (zombies and _in_calls(pid, WAITS)))


def _in_charge_facts(witness, parent):
    """Beyond Part 1: who the witness's parent is on the machine, and
    whether the witness's user namespace may drop groups."""
    out = {"parent": None}
    try:
        status = _status(parent)
        out["parent"] = {"uid": status["Uid"][0], "gid": status["Gid"][0]}
    except (OSError, KeyError):
        pass
    with open(f"/proc/{witness}/setgroups") as fh:
        out["setgroups"] = fh.read(16).strip()
    return out


def _signal_masks(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("SigPnd", "ShdPnd", "SigIgn", "SigCgt"):
                    out[key] = int(value.strip(), 16)
    except (OSError, ValueError):
        pass
    return out


def _sigkill_pending(pid):
    masks = _signal_masks(pid)
    bit = 1 << (signal.SIGKILL - 1)
    return bool((masks.get("SigPnd", 0) | masks.get("ShdPnd", 0)) & bit)


def _death_signal_hint(pid):
    masks = _signal_masks(pid)
    if masks.get("SigIgn", 0) & (1 << (signal.SIGTERM - 1)):
        return " (it ignores SIGTERM, as any command may)"
    return ""


def _proc_facts(root, inner_pid, mounts, shell_id, hidden=()):
    """What is on the witness's /proc: a proc of its own PID namespace (its
    own PID there leads back to the witness), another proc, or nothing; and
    the processes ps would list from it."""
    try:
        st = os.stat(f"{root}/proc")
    except OSError as error:
        return {"kind": "unreadable", "why": error.strerror}
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    fstype = next((fs for d, point, fs in reversed(mounts) if point == "/proc" and d == dev), None)
    if fstype != "proc":
        return {"kind": "none", "fstype": fstype}
    try:
        pids = sorted(int(n) for n in os.listdir(f"{root}/proc")
                      if n.isdigit() and int(n) not in hidden)
    except OSError:
        pids = []
    own = False
    try:
        mine = os.stat(f"{root}/proc/{inner_pid}")
        exe = os.stat(f"{root}/proc/{inner_pid}/exe")
        own = mine.st_dev == st.st_dev and [exe.st_dev, exe.st_ino] == list(shell_id)
    except OSError:
        pass
    return {"kind": "own" if own else "other", "pids": pids[:BOUND], "count": len(pids)}


class Watch:
    """One run's witness, followed from the grader's event loop: the seccomp
    listener (every execve, and the program's exit_group) and the socket to
    the run's PID 1.

    The witness makes itself known by running /nskit/ready: that execve, by
    a child of a process whose executable is the witness's shell, is held
    (the witness waits for its child meanwhile, and nothing in the run can
    hurry it) until the witness's parent waits for it or has ended (or the
    witness is the program itself, exec'd); then the witness is observed,
    and released. The program's own exit_group is held while a child of it
    may still become the witness."""

    def __init__(self, parent_in_charge=False):
        self.in_charge = parent_in_charge  # beyond Part 1: see _death_test and Trace
        self.in_charge_of = None  # the observed witness's parent, to be killed at DONE
        self.death = None
        self.trace = None       # the parent followed from its clone on (Trace)
        self.trace_error = None
        self.start = None       # how the witness started: Trace, _start_facts
        self.grader_end, self.run_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.grader_end.setblocking(False)
        self.listener = self.user_fd = None
        self.release = None     # the held execve of /nskit/ready: notification id
        self.helper = None      # the witness's child that made it
        self.program = self.init = None
        self.shell_id = self.host = None
        self.seen = {}          # pid -> the file its last execve named
        self.expected = set()   # pids that execve'd the witness and are yet to be seen
        self.held = []          # (notification id, pid, parent, exit signal): execs held
        self.exit_held = None   # the program's own exit_group, held: notification id
        self.observed = None    # pid of the witness observed
        self.facts = None
        self.parent = None      # the observed witness's parent, until it is released
        self.waited = None
        self.exit_signal = None
        self.copies = 0
        self.error = None
        self.ended = False      # the program has ended, and PID 1 waits for a word
        self.torn_down = False

    def after_fork(self):
        """In the grader, once the run's first stage is forked."""
        self.run_end.close()

    def fds(self):
        return [f for f in (self.grader_end.fileno() if not self.torn_down else None,
                            self.listener) if f is not None]

    def busy(self):
        """Whether something waits for a process of the run to move on."""
        return bool(self.held or self.trace or self.parent is not None or self.exit_held is not None
                    or (self.ended and not self.torn_down))

    def on_readable(self, fd):
        try:
            if fd == self.listener:
                self._notification()
            else:
                self._message()
        except OSError as error:
            self.error = self.error or f"the grader could not follow the run: {error.strerror or error}"
        self.tick()

    def _message(self):
        try:
            data, fds, _, _ = socket.recv_fds(self.grader_end, 16, 4)
        except BlockingIOError:
            return
        for fd in fds:
            if self.listener is None:
                self.listener = fd
            else:
                os.close(fd)
        if data == PROGRAM_ENDED:
            self.ended = True
        elif not data:
            self.torn_down = True

    def _notification(self):
        # Readable may only mean that every process of the run has ended
        # (POLLHUP): older kernels (6.1) then block in NOTIF_RECV for ever.
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        events = [event for _, event in poller.poll(0)]
        if not any(event & select.POLLIN for event in events):
            if any(event & (select.POLLHUP | select.POLLERR) for event in events):
                os.close(self.listener)
                self.listener = None
            return
        buf = bytearray(NOTIF.size)
        try:
            fcntl.ioctl(self.listener, NOTIF_RECV, buf, True)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.EINTR):
                raise
            # The caller died before it was heard; or every process of the
            # run has ended, and the listener would be readable for ever.
            if any(event & select.POLLHUP for _, event in poller.poll(0)):
                os.close(self.listener)
                self.listener = None
            return
        notif_id, pid, _, nr, _, _, *args = NOTIF.unpack(buf)
        if nr in CLONES:
            self._cloning(notif_id, pid)
            return
        if self.trace and pid == self.trace.child and nr in EXECS:
            # Held until the parent is stopped again (Trace.settle).
            self.trace.child_exec = (notif_id, _read_path(pid, args[1] if nr in EXECVEAT else args[0]))
            return
        if nr in EXITS:
            if pid == self.program and self.observed is None:
                self.exit_held = notif_id
            else:
                self._answer(notif_id)
            return
        if self.in_charge_of is not None and self.death is None and nr in EXECS:
            path = _read_path(pid, args[1] if nr in EXECVEAT else args[0])
            fields = _stat_fields(pid)
            if path == DONE and fields and fields[1] == self.observed:
                self._death_test(notif_id, pid)
                return
        if self.observed is not None and self.parent is None:
            self._answer(notif_id)  # seen and released: what runs now changes no verdict
            return
        try:
            if self.program is None:
                self._first(pid)
            path = _read_path(pid, args[1] if nr in EXECVEAT else args[0])
        except BaseException:
            self._answer(notif_id)
            raise
        self._exec(notif_id, pid, path)

    def _exec(self, notif_id, pid, path, hold=False):
        """An execve of path by pid, held: seen, and answered now or later
        (with hold, once its parent waits or has ended)."""
        try:
            if self.in_charge and path == WITNESS and self.start is None:
                # A descendant of the followed child, or a witness whose
                # parent is no longer followed (it waits, or it ended).
                self.start = _start_facts(pid, early=bool(self.trace and self.trace.held_at_clone))
            if len(self.seen) >= BOUND:
                self.seen = {p: name for p, name in self.seen.items() if not _ended(p)}
            if len(self.seen) < BOUND or pid in self.seen:
                self.seen[pid] = path
            if path == WITNESS:
                self.expected.add(pid)
            fields = _stat_fields(pid)
            if path == READY and fields and self._announced(fields[1], notif_id, pid):
                return
        except BaseException:
            self._answer(notif_id)  # never leave a process of the run stopped for ever
            raise
        if fields and ((fields[2] != SIGCHLD and pid != self.program
                        and os.path.exists(f"/proc/{pid}/task/{pid}")) or hold):
            self.held.append((notif_id, pid, fields[1], fields[2]))
        else:
            self._answer(notif_id)

    def _cloning(self, notif_id, pid):
        """Beyond Part 1, a process is about to clone: before the witness is
        seen, the first one that does is followed (Trace), then answered."""
        if (self.in_charge and self.trace is None and self.start is None
                and self.observed is None and self.trace_error is None):
            try:
                self.trace = Trace(pid)
            except OSError as error:
                self.trace_error = (f"ptrace refused ({error.strerror}): the grader must run "
                                    f"as root, or where ptrace is allowed")
        self._answer(notif_id)

    def _follow(self):
        """One step of the followed parent and child (see Trace)."""
        trace = self.trace
        try:
            done = trace.step()
        except OSError as error:
            self.trace_error = f"following the parent failed: {error.strerror or error}"
            done = True
        if done == "exec":
            (notif_id, path), trace.child_exec = trace.child_exec, None
            self._exec(notif_id, trace.child, path)
            return
        if not done:
            return
        self.trace = None
        if trace.child_exec is not None:
            notif_id, path = trace.child_exec
            if path == WITNESS and self.start is None:
                self.start = trace.start
            # A witness that did not wait: its parent now runs free, and
            # what it does (its write to a pipe the exec would close, say)
            # must not race the exec: it goes once the parent waits or ends.
            self._exec(notif_id, trace.child, path, hold=path == WITNESS and bool(trace.start and trace.start["early"]))

    def _first(self, pid):
        """The program's own execve, from code that is still the grader's:
        where the run's host is, and what it has."""
        self.program = pid
        self.init = _stat_fields(pid)[1]
        root = f"/proc/{pid}/root"
        st = os.stat(f"{root}{SHELL}")
        self.shell_id = [st.st_dev, st.st_ino]
        rst = os.stat(root)
        self.host = {"ns": {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NAMESPACES},
                     "root": [rst.st_dev, rst.st_ino]}
        self.user_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)

    def _answer(self, notif_id):
        try:
            fcntl.ioctl(self.listener, NOTIF_SEND,
                        bytearray(RESPONSE.pack(notif_id, 0, 0, FLAG_CONTINUE)), True)
        except OSError as error:
            if error.errno != errno.ENOENT:
                raise

    def _announced(self, witness, notif_id, helper):
        """A child of witness runs /nskit/ready: if witness is the witness
        (its executable is this run's shell), the first one is held here."""
        if _exe(witness) != tuple(self.shell_id or ()):
            return False
        self.seen.pop(witness, None)
        self.expected.discard(witness)
        self.copies += 1
        if self.observed is not None:
            return False  # a second copy: only the first is judged
        fields = _stat_fields(witness)
        self.observed, self.release, self.helper = witness, notif_id, helper
        self.parent = fields[1] if fields else self.init
        return True

    def tick(self):
        """Answer what can be answered now: held execs, the observed witness,
        the run's PID 1 waiting to tear down."""
        if self.trace:
            self._follow()
        still = []
        for notif_id, pid, parent, signal in self.held:
            state = _parent_state(parent)
            if state:
                if state == "ended" and self.exit_signal is None and self.seen.get(pid) == WITNESS:
                    self.exit_signal = signal
                self._answer(notif_id)
            else:
                still.append((notif_id, pid, parent, signal))
        self.held = still
        if self.parent is not None:
            if self.observed == self.program:
                self.waited = True   # the program became its command
            elif self.parent == self.init:
                self.waited = False  # its parent ended, and it was left to PID 1
            else:
                state = _parent_state(self.parent)
                if state:
                    self.waited = state == "waiting"
            if self.waited is not None:
                # Read once the parent has done all it does before it waits
                # (or has ended): what it changes after clone counts too.
                parent, self.parent = self.parent, None
                try:
                    self.facts = observe(self.observed, self.shell_id, self.user_fd, self.helper)
                    if self.in_charge:
                        self.facts.update(_in_charge_facts(self.observed, parent))
                        if self.waited and self.observed != self.program:
                            self.in_charge_of = parent
                except OSError as error:
                    self.error = f"the command could not be observed: {error.strerror or error}"
                self._answer(self.release)
                self.release = None
        if self.exit_held is not None and all(map(self._settled, _children(self.program))):
            self._answer(self.exit_held)
            self.exit_held = None
        self.expected = {pid for pid in self.expected if not _ended(pid)}
        if self.ended and not self.torn_down and not self.held and self.parent is None \
                and not self.expected:
            try:
                self.grader_end.send(TEAR_DOWN)
            except OSError:
                pass
            self.torn_down = True

    def _death_test(self, notif_id, helper):
        """The witness, at its end, runs DONE: held there, still the child of
        the parent that waits for it, it sees that parent killed (SIGKILL,
        from outside). Once the parent is dead its death signals have been
        sent: the witness is then dead or has SIGKILL pending, or it
        survives. It ignores SIGTERM (probe.py): only SIGKILL is sure."""
        witness, parent = self.observed, self.in_charge_of
        fields = _stat_fields(witness)
        if not fields or fields[1] != parent or _ended(parent):
            self.death = {"died": False, "seen": "its parent had already ended"}
            self._answer(notif_id)
            return
        fds = []
        try:
            fds = [os.pidfd_open(p) for p in (witness, parent, helper)]
            signal.pidfd_send_signal(fds[1], signal.SIGKILL)
            if not select.select([fds[1]], [], [], KILLED_WITHIN)[0]:
                raise OSError(errno.ETIME, "the killed parent did not end")
            died = bool(select.select([fds[0]], [], [], 0)[0]) or _sigkill_pending(witness)
            if died:
                select.select([fds[0]], [], [], KILLED_WITHIN)
                # Its DONE child too: nothing of the run may outlive the test.
                signal.pidfd_send_signal(fds[2], signal.SIGKILL)
                select.select([fds[2]], [], [], KILLED_WITHIN)
                self.death = {"died": True, "seen": "it was killed with its parent"}
            else:
                self.death = {"died": False, "seen": "it still ran after its parent was "
                              "killed" + _death_signal_hint(witness)}
        except OSError as error:
            self.death = {"died": False, "seen": f"the grader could not kill its parent: "
                                                 f"{error.strerror or error}"}
        finally:
            for fd in fds:
                os.close(fd)
        self._answer(notif_id)

    def _settled(self, child):
        """Whether a child of the program no longer keeps it from ending: once
        the witness has been observed and released, none does; before, one
        that has ended, has exec'd something else, or sleeps (pause, a read)
        outside a held execve, as a child about to exec the witness never does."""
        if self.observed is not None:
            return self.parent is None
        path = self.seen.get(child)
        if path is not None:
            return path != WITNESS
        fields = _stat_fields(child)
        return (fields is None or fields[0] in ("Z", "X")
                or (fields[0] == "S" and not _in_calls(child, EXECS)))

    def untrace(self):
        """Before the run is ended: nothing of it may stay traced."""
        if self.trace:
            self.trace.end()
            self.trace = None

    def close(self):
        self.untrace()
        for fd in (self.listener, self.user_fd):
            if fd is not None:
                os.close(fd)
        self.grader_end.close()
        self.run_end.close()

    def result(self):
        """What the checks read: the witness's facts and how it was started."""
        return {"facts": self.facts, "host": self.host, "waited": self.waited, "death": self.death,
                "start": self.start, "trace_error": self.trace_error,
                "exit_signal": self.exit_signal, "copies": self.copies, "error": self.error,
                "seen": self.observed is not None}
