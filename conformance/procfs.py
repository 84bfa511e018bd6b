"""What the grader reads of a process in /proc, and of a network namespace.

Everything a run can name (mount points, links, hostnames, commands) is read
as bytes and stays bytes here: a name may hold any byte but NUL, and one
\\xff must never stop the grader. shown() turns bytes into text, escaped
(\\xff), for people to read; only a report's edge calls it. Readers return
None (or an empty answer) for a process that has gone: the run's processes
come and go while they are read.
"""
import errno
import fcntl
import os
import re
import signal
import socket
import struct

from .journal import Mount, shown  # noqa: F401 - shown: the readers' names, for people
from .syscalls import native

BOUND = 256          # processes, mounts, links, queues, entries kept per read
MOUNTINFO_TEXT = 64 << 10
SIOCGIFFLAGS, IFF_UP = 0x8913, 0x1
PF_EXITING = 0x4     # a task's flags (stat field 9): do_exit has begun
SIGKILL_BIT = 1 << (signal.SIGKILL - 1)
OCTAL = re.compile(rb"\\([0-7]{3})")


def _read(path, size=-1):
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError:
        return None


def stat_fields(pid):
    """(state, ppid, exit signal) of a process, or None once it is gone."""
    return parse_stat(_read(f"/proc/{pid}/stat"))


def parse_stat(raw):
    if not raw or b")" not in raw:
        return None
    # The command's name may hold ") ": the fields follow the last one.
    fields = raw[raw.rindex(b")") + 2:].split()
    try:
        # fields[0] is field 3 (state); field 38 (exit_signal) is fields[35].
        return fields[0].decode(errors="replace"), int(fields[1]), int(fields[35])
    except (IndexError, ValueError):
        return None


def ended(pid):
    fields = stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def dying(pid):
    """Whether a process has ended or is on its way out, which nothing can
    stop: a SIGKILL pending (a parent's death signal reaches a child as the
    parent dies, before the child next runs), or its exit begun."""
    try:
        pending = status(pid)
    except OSError:
        return True
    if (pending.get("SigPnd", 0) | pending.get("ShdPnd", 0)) & SIGKILL_BIT:
        return True
    raw = _read(f"/proc/{pid}/stat")
    fields = parse_stat(raw)
    if fields is None or fields[0] in ("Z", "X"):
        return True
    try:  # field 9, after the name's last ")"
        return bool(int(raw[raw.rindex(b")") + 2:].split()[6]) & PF_EXITING)
    except (IndexError, ValueError):
        return False


def _per_thread(pid, name, limit=-1):
    """The file name of each thread of pid, as bytes (b"" where a thread has
    gone meanwhile); none once pid is gone."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    return [_read(f"/proc/{pid}/task/{tid}/{name}", limit) or b"" for tid in tasks]


def children(pid):
    return [int(c) for raw in _per_thread(pid, "children") for c in raw.split() if c.isdigit()]


def syscalls(pid):
    """The system call each thread of pid sits in: [(number, [args])], a
    thread that runs or is not in a call left out."""
    calls = (parse_syscall(raw) for raw in _per_thread(pid, "syscall", 256))
    return [call for call in calls if call is not None]


def parse_syscall(raw):
    """(number, [args]) from a /proc/PID/syscall, or None: running, or in no call."""
    first, *rest = (raw or b"").split() or [b""]
    if not first.isdigit():
        return None
    try:
        return int(first), [int(arg, 16) for arg in rest[:6]]
    except ValueError:
        return int(first), []


def in_calls(pid, calls):
    """Whether any thread of pid sits in one of these system calls."""
    if not os.path.exists(f"/proc/{pid}/syscall"):
        return _in_calls_by_stack(pid, calls)
    return any(nr in calls for nr, _ in syscalls(pid))


# User-mode Linux's kernel has no /proc/PID/syscall (its architecture lacks the
# tracehook that file needs): with in_calls always false there, no witness's
# parent was ever seen waiting, and every run timed out. There the grader is
# that kernel's root and reads each thread's kernel stack instead: a wait shows
# as do_wait; a call held at a seccomp notification as
# seccomp_do_user_notification, without its number. Such a call is taken to be
# an execve or a clone, never exit_group: that errs towards holding longer,
# never towards a verdict, as the grader answers every exit_group as soon as it
# hears it, but the program's own, which it knows it holds (parent_state's
# exit_held).
STACK_WAITS = native("wait4", "waitid")
STACK_HELD = native("execve", "execveat", "clone", "fork", "vfork", "clone3")


def _in_calls_by_stack(pid, calls):
    for stack in _per_thread(pid, "stack", 4096):
        if b"] do_wait+" in stack and calls & STACK_WAITS:
            return True
        if b"] seccomp_do_user_notification" in stack and calls & STACK_HELD:
            return True
    return False


# What a kernel stack says a task sleeps in, where /proc/PID/syscall is
# missing (User-mode Linux): a read of a pipe, or of a socket.
STACK_READS = {b"] pipe_read+": b"pipe:", b"] pipe_wait+": b"pipe:",
               b"] unix_stream_read_generic+": b"socket:", b"] unix_dgram_recvmsg+": b"socket:"}


def reading_by_stack(pid):
    """Where there is no /proc/PID/syscall: (fd, what it names) of what the
    process sleeps reading, from its kernel stack and its fds opened for
    reading of that kind (the first such); None where it reads nothing."""
    if os.path.exists(f"/proc/{pid}/syscall"):
        return None
    stack = _read(f"/proc/{pid}/stack", 4096) or b""
    kind = next((kind for mark, kind in STACK_READS.items() if mark in stack), None)
    if kind is None:
        return None
    for fd, target in sorted(fds(pid).items()):
        if target.startswith(kind) and (kind == b"socket:" or not writable(pid, fd)):
            return fd, target
    return None


def exe(pid):
    """(device, inode) of the file a process runs, or None."""
    try:
        st = os.stat(f"/proc/{pid}/exe")
        return st.st_dev, st.st_ino
    except OSError:
        return None


def status(pid):
    """NSpid, Uid, Gid and the signal masks of a process's status; OSError
    once it has gone."""
    with open(f"/proc/{pid}/status", "rb") as fh:
        return parse_status(fh.read(16 << 10))


def parse_status(raw):
    out = {}
    for line in raw.split(b"\n"):
        key, _, value = line.partition(b":")
        try:
            if key in (b"NSpid", b"Uid", b"Gid"):
                out[key.decode()] = [int(v) for v in value.split()]
            elif key in (b"SigPnd", b"ShdPnd", b"SigIgn", b"SigCgt"):
                out[key.decode()] = int(value.strip(), 16)
        except ValueError:
            pass
    return out


def id_map(pid, name):
    """A uid_map or gid_map: [(first inside, first outside, count)]."""
    with open(f"/proc/{pid}/{name}", "rb") as fh:
        return parse_id_map(fh.read(64 << 10))


def parse_id_map(raw):
    out = []
    for line in raw.split(b"\n"):
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            out.append(tuple(int(f) for f in fields))
    return out


def unescaped(field):
    """A mountinfo field as its bytes: the kernel writes space, tab, newline
    and backslash as octal escapes (\\040)."""
    return OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), field)


def mounts(text):
    """Every mount of a mountinfo (bytes), in order."""
    out = []
    for line in text.split(b"\n"):
        # One space between fields: any other byte may be part of a name.
        left, _, right = line.partition(b" - ")
        parts = left.split(b" ")
        if len(parts) >= 5 and right:
            out.append(Mount(parts[2].decode(errors="replace"), unescaped(parts[4]),
                             unescaped(right.split(b" ")[0]),
                             any(tag.startswith(b"shared:") for tag in parts[6:])))
    return out


def mountinfo(pid="self", dir_fd=None):
    """A process's mountinfo, as bytes (at most MOUNTINFO_TEXT of it)."""
    if dir_fd is not None:
        fd = os.open("mountinfo", os.O_RDONLY, dir_fd=dir_fd)
        with open(fd, "rb") as fh:
            return fh.read(MOUNTINFO_TEXT)
    with open(f"/proc/{pid}/mountinfo", "rb") as fh:
        return fh.read(MOUNTINFO_TEXT)


def links():
    """{name: "UP" or "DOWN"} of the links of the caller's network namespace,
    names as bytes, in the kernel's order."""
    out = {}
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex()[:BOUND]:
            raw = os.fsencode(name)  # the kernel's bytes, as Python decoded them
            try:
                flags = fcntl.ioctl(probe, SIOCGIFFLAGS, struct.pack("16sH", raw, 0) + bytes(22))
            except OSError as error:
                # Gone since the list was read: a veth end whose peer's
                # namespace the kernel has just freed (step 11).
                if error.errno in (errno.ENODEV, errno.ENXIO):
                    continue
                raise
            out[raw] = "UP" if struct.unpack("16sH", flags[:18])[1] & IFF_UP else "DOWN"
    finally:
        probe.close()
    return out


def queues(text):
    """The keys of the SysV message queues in a /proc/sysvipc/msg (bytes)."""
    out = []
    for line in text.split(b"\n")[1:]:
        first = line.split()[:1]
        if first and first[0].lstrip(b"-").isdigit():
            out.append(int(first[0]))
    return out


def hostname():
    """The caller's hostname, as bytes."""
    return os.fsencode(os.uname().nodename)


def fd_target(pid, fd):
    """What a process's fd names (pipe:[123], socket:[45], a path), as bytes, or None."""
    try:
        return os.readlink(os.fsencode(f"/proc/{pid}/fd/{fd}"))
    except OSError:
        return None


def writable(pid, fd):
    """Whether a process's fd was opened for writing (its fdinfo's flags)."""
    raw = _read(f"/proc/{pid}/fdinfo/{fd}", 4096) or b""
    for line in raw.split(b"\n"):
        key, _, value = line.partition(b":")
        if key == b"flags":
            try:
                return int(value.strip(), 8) & 3 in (1, 2)  # O_WRONLY, O_RDWR
            except ValueError:
                return False
    return False


def fds(pid):
    """{fd: what it names} of a process; {} once it has gone."""
    out = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names[:4 * BOUND]:
        if name.isdigit() and (target := fd_target(pid, name)) is not None:
            out[int(name)] = target
    return out


def cmdline(pid):
    """A process's arguments, as bytes, or None."""
    raw = _read(f"/proc/{pid}/cmdline", 64 << 10)
    return None if raw is None else parse_cmdline(raw)


def parse_cmdline(raw):
    return raw[:-1].split(b"\0") if raw.endswith(b"\0") else raw.split(b"\0")
