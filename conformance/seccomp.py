"""Seccomp user notification: the run's execs (and, beyond Part 1, its
clones) stop in the kernel until the grader answers them.

The program's process installs the filter before it is exec'd (listen) and
hands the listener to the grader, outside the run; the grader receives each
notification (Listener.receive), may read the caller's memory while it is
stopped, and answers "go on" (Listener.answer). What it reads of the
caller's memory counts only if the notification is still valid afterwards
(SECCOMP_IOCTL_NOTIF_ID_VALID): otherwise the caller died and its pid may
already name another process.
"""
import ctypes
import errno
import fcntl
import os
import select
import socket
import struct
from dataclasses import dataclass

from .syscalls import ABIS, SYS_SECCOMP, libc

SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER = 1, 8
SECCOMP_RET_ALLOW, SECCOMP_RET_USER_NOTIF = 0x7FFF0000, 0x7FC00000
NOTIF_RECV, NOTIF_SEND, NOTIF_ID_VALID = 0xC0502100, 0xC0182101, 0x40082102
NOTIF = struct.Struct("QIIiIQ6Q")
RESPONSE = struct.Struct("QqiI")
FLAG_CONTINUE = 1
EXEC_CALLS = ("execve", "execveat", "exit_group")
CLONE_CALLS = ("clone", "fork", "vfork", "clone3")
PATH_MAX = 4096


def filter_program(clones=False):
    """BPF: every execve, execveat and exit_group goes to the grader (with
    clones, every clone, fork, vfork and clone3 too); the rest is allowed."""
    code = []  # (op or label, k, label to jump to if true, if false: None for the next)
    names = EXEC_CALLS + (CLONE_CALLS if clones else ())
    for index, (arch, calls) in enumerate(ABIS.items()):
        code.append((0x20, 4, None, None))                     # A = arch
        code.append((0x15, arch, None, f"next{index}"))         # not this ABI: next block
        code.append((0x20, 0, None, None))                     # A = nr
        code += [(0x15, nr, "notify", None) for name in names for nr in calls.get(name, ())]
        code.append((0x06, SECCOMP_RET_ALLOW, None, None))
        code.append((f"next{index}", None, None, None))
    code.append((0x06, SECCOMP_RET_ALLOW, None, None))
    code.append(("notify", None, None, None))
    code.append((0x06, SECCOMP_RET_USER_NOTIF, None, None))
    labels, at = {}, 0
    for op, *_ in code:
        if isinstance(op, str):
            labels[op] = at
        else:
            at += 1
    out, at = [], 0
    for op, k, jt, jf in code:
        if isinstance(op, str):
            continue
        jump = lambda label: 0 if label is None else labels[label] - at - 1
        out.append(struct.pack("HBBI", op, jump(jt), jump(jf), k))
        at += 1
    return b"".join(out), len(out)


def listen(fd, clones=False):
    """In the program's process, before it is exec'd: every execve from here
    on waits for the grader's answer. The listener goes to the grader on the
    socket fd."""
    raw, count = filter_program(clones)
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


# (audit arch, number) -> the call's name, for every call the filter holds.
NAMES = {(arch, nr): name for arch, calls in ABIS.items()
         for name, numbers in calls.items() for nr in numbers}


# The ABIs whose pointers are 4 bytes: i386, and x32 (x86_64's, with bit 30 set).
POINTER_4 = {0x40000003}
X32_BIT = 0x40000000


@dataclass
class Notification:
    id: int
    pid: int
    call: str          # execve, execveat, exit_group, clone, fork, vfork or clone3
    args: tuple
    pointer: int = 8   # bytes in a pointer of the caller's ABI

    @property
    def path_address(self):
        """Where the file name of an execve or execveat is, in the caller's memory."""
        return self.args[1] if self.call == "execveat" else self.args[0]

    @property
    def argv_address(self):
        return self.args[2] if self.call == "execveat" else self.args[1]


class Listener:
    """The grader's end of a run's seccomp listener."""

    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd

    def receive(self):
        """The next notification; None when there was none after all (the
        caller died before it was heard). Closes the listener once every
        process of the run has ended: check .fd."""
        # Readable may only mean that every process of the run has ended
        # (POLLHUP): older kernels (6.1) then block in NOTIF_RECV for ever.
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        events = [event for _, event in poller.poll(0)]
        if not any(event & select.POLLIN for event in events):
            if any(event & (select.POLLHUP | select.POLLERR) for event in events):
                self.close()
            return None
        buf = bytearray(NOTIF.size)
        try:
            fcntl.ioctl(self.fd, NOTIF_RECV, buf, True)
        except OSError as error:
            if error.errno not in (errno.ENOENT, errno.EINTR):
                raise
            if any(event & select.POLLHUP for _, event in poller.poll(0)):
                self.close()
            return None
        notif_id, pid, _, nr, arch, _, *args = NOTIF.unpack(buf)
        pointer = 4 if arch in POINTER_4 or nr & X32_BIT else 8
        return Notification(notif_id, pid, NAMES.get((arch, nr), f"{arch:x}:{nr}"), tuple(args),
                            pointer)

    def valid(self, notif_id):
        """Whether the caller is still stopped in that call (and its pid still its)."""
        try:
            fcntl.ioctl(self.fd, NOTIF_ID_VALID, struct.pack("Q", notif_id))
            return True
        except OSError:
            return False

    def read_exec(self, notification, max_args=64, room=16 << 10):
        """(path, argv) an execve is about to run, as bytes, read from the
        stopped caller's memory; (None, None) where it cannot be read, or the
        caller is no longer the one that was stopped. argv is None where
        only the path could be read; at most max_args arguments and room
        bytes of them."""
        try:
            fd = os.open(f"/proc/{notification.pid}/mem", os.O_RDONLY)
        except OSError:
            return None, None
        try:
            path = _string(fd, notification.path_address, PATH_MAX)
            argv = _strings(fd, notification.argv_address, notification.pointer, max_args, room)
        finally:
            os.close(fd)
        if not self.valid(notification.id):
            return None, None
        return path, argv

    def answer(self, notif_id):
        """Let the caller's call go on."""
        try:
            fcntl.ioctl(self.fd, NOTIF_SEND,
                        bytearray(RESPONSE.pack(notif_id, 0, 0, FLAG_CONTINUE)), True)
        except OSError as error:
            if error.errno != errno.ENOENT:
                raise

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _string(fd, address, size):
    try:
        raw = os.pread(fd, size, address)
    except (OSError, OverflowError, ValueError):
        return None
    return raw.split(b"\0", 1)[0]


def _strings(fd, address, pointer, max_args, room):
    """A NULL-ended array of string pointers; None where it cannot be read."""
    try:
        table = os.pread(fd, pointer * max_args, address)
    except (OSError, OverflowError, ValueError):
        return None
    out = []
    for at in range(0, len(table) - pointer + 1, pointer):
        item = int.from_bytes(table[at:at + pointer], "little")
        if item == 0 or room <= 0:
            break
        text = _string(fd, item, min(room, PATH_MAX))
        if text is None:
            return None
        out.append(text)
        room -= len(text) + 1
    return out
