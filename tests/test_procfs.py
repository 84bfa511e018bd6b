"""Every /proc parser of the grader, fed names of every byte but NUL:
newlines, spaces, backslashes, \\xff, 4,096-byte and empty names. None may
raise, each gives the name back as the kernel's bytes, and shown() always
gives text that encodes as UTF-8."""
import json
import os
import select
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import observe, procfs, seccomp
from conformance.journal import Mount
from conformance.ptrace import EXITS, NOTIFIED, WAITS
from conformance.syscalls import libc, native

BOUNDED = settings(max_examples=80, deadline=2000)
# Every byte 1-255, names up to a page long and empty ones.
names = st.one_of(st.binary(max_size=64).map(lambda b: b.replace(b"\0", b"\1")),
                  st.just(b""), st.just(b"\xff"), st.just(b"a\nb"), st.just(b"\\040 x"),
                  st.binary(min_size=4096, max_size=4096).map(lambda b: b.replace(b"\0", b"\xff")))


def escaped(name):
    """A name as mountinfo writes it: space, tab, newline and backslash in octal."""
    return b"".join(b"\\%03o" % c if c in b" \t\n\\" else bytes([c]) for c in name)


@BOUNDED
@given(point=names, fstype=names)
def test_mountinfo_gives_every_mount_point_back_as_its_bytes(point, fstype):
    point, fstype = b"/" + point, escaped(fstype) or b"x"  # a mount point is never empty
    text = (b"22 1 0:21 / / rw - ext4 /dev/root rw\n"
            b"36 22 0:5 / " + escaped(point) + b" rw,nosuid shared:9 - " + fstype + b" none rw\n")
    mounts = procfs.mounts(text)
    assert mounts[0] == Mount("0:21", b"/", b"ext4", shared=False)
    assert mounts[1].point == point and mounts[1].device == "0:5" and mounts[1].shared
    assert mounts[1].fstype == procfs.unescaped(fstype)
    procfs.shown(point).encode()


@BOUNDED
@given(raw=st.binary(max_size=512))
def test_mountinfo_of_any_bytes_never_raises(raw):
    for mount in procfs.mounts(raw):
        procfs.shown(mount.point).encode()


@BOUNDED
@given(comm=st.binary(max_size=64).map(lambda b: b.replace(b"\0", b"\1")))
def test_stat_reads_state_parent_and_exit_signal_whatever_the_command_s_name(comm):
    rest = b" ".join(b"%d" % n for n in range(5, 45))
    raw = b"42 (" + comm + b") S 7 " + rest + b"\n"
    assert procfs.parse_stat(raw) == ("S", 7, 38)


@BOUNDED
@given(raw=st.binary(max_size=300))
def test_stat_status_syscall_id_map_and_cmdline_of_any_bytes_never_raise(raw):
    procfs.parse_stat(raw)
    procfs.parse_status(raw)
    procfs.parse_syscall(raw)
    procfs.parse_id_map(raw)
    procfs.parse_cmdline(raw)
    procfs.queues(raw)


@BOUNDED
@given(name=names)
def test_status_is_read_whatever_the_name_line_holds(name):
    raw = (b"Name:\t" + name.replace(b"\n", b"\\n") + b"\nUid:\t0\t0\t0\t0\nGid:\t5\t5\t5\t5\n"
           b"NSpid:\t30\t1\nSigIgn:\t0000000000004000\n")
    out = procfs.parse_status(raw)
    assert out["Uid"][0] == 0 and out["Gid"][0] == 5 and out["NSpid"] == [30, 1]
    assert out["SigIgn"] == 1 << 14


@BOUNDED
@given(args=st.lists(names, min_size=1, max_size=4))
def test_cmdline_gives_the_arguments_back(args):
    assert procfs.parse_cmdline(b"\0".join(args) + b"\0") == args


@BOUNDED
@given(hostname=names, links=st.dictionaries(names, st.sampled_from(["UP", "DOWN"]), max_size=4),
       queues=st.lists(st.integers(-2**31, 2**31 - 1), max_size=4))
def test_what_a_namespace_reader_sends_arrives_as_the_same_bytes(hostname, links, queues):
    seen = {"hostname": hostname, "links": links, "queues": queues}
    wire = b"[" + observe._to_wire(seen) + b"]"
    json.loads(wire)
    assert observe._from_wire(wire) == [seen]


@BOUNDED
@given(name=names)
def test_shown_escapes_what_is_not_utf_8_and_keeps_what_is(name):
    text = procfs.shown(name)
    text.encode("utf-8")
    if b"\\" not in name:
        assert text.encode("utf-8", "surrogateescape") == name or "\\x" in text


def test_shown_writes_xff_for_a_byte_that_is_not_utf_8():
    assert procfs.shown(b"lo\xff") == "lo\\xff" and procfs.shown("already text") == "already text"


def test_queue_keys_are_read_from_sysvipc():
    raw = (b"       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid "
           b"     stime      rtime      ctime\n"
           b"  12345678          0   644           0          0     0     0     0     0     0     0 "
           b"         0          0 1700000000\n")
    assert procfs.queues(raw) == [12345678]


@pytest.mark.root("a thread's kernel stack is for the machine's root to read")
def test_where_proc_has_no_syscall_file_the_kernel_stack_tells_a_wait_and_a_held_call():
    """User-mode Linux has no /proc/PID/syscall: there a thread's kernel stack
    says it waits (do_wait), or is held at a seccomp notification (taken to be
    an execve or a clone, never exit_group)."""
    channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    waiter = os.fork()
    if waiter == 0:
        channel.close()
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: seccomp's condition
        seccomp.listen(theirs.detach())
        child = os.fork()
        if child == 0:
            os.execv("/bin/true", ["true"])  # held at its notification
        os.waitpid(child, 0)
        os._exit(0)
    theirs.close()
    _, fds, _, _ = socket.recv_fds(channel, 1, 1)
    listener = seccomp.Listener(fds[0])
    try:
        select.select([listener], [], [], 10)
        held = listener.receive()
        assert held.call == "execve"
        for _ in range(1000):  # until the waiter sleeps in wait4: not a verdict
            if procfs._in_calls_by_stack(waiter, WAITS):
                break
            time.sleep(0.01)
        assert procfs._in_calls_by_stack(waiter, WAITS)
        assert not procfs._in_calls_by_stack(waiter, EXITS | NOTIFIED)
        assert procfs._in_calls_by_stack(held.pid, native("execve"))
        assert not procfs._in_calls_by_stack(held.pid, WAITS | EXITS)
        listener.answer(held.id)
    finally:
        # The rest of the waiter's calls (its child's exit, its own) go on.
        while (ended := os.waitpid(waiter, os.WNOHANG)) == (0, 0):
            if listener.fd is not None and select.select([listener], [], [], 1)[0] \
                    and (later := listener.receive()):
                listener.answer(later.id)
        listener.close()
        channel.close()
    assert ended[1] == 0


def test_dying_is_what_has_ended_or_cannot_escape_its_sigkill(monkeypatch):
    """A process runs on unless it has ended, its exit has begun, or a
    SIGKILL waits for it (the death signal a killed parent sends its child)."""
    child = os.fork()
    if child == 0:
        time.sleep(30)
        os._exit(0)
    try:
        assert not procfs.dying(child)
        os.kill(child, 9)
        for _ in range(200):
            if procfs.ended(child):
                break
            time.sleep(0.01)
        assert procfs.dying(child)  # a zombie
    finally:
        os.waitpid(child, 0)
    assert procfs.dying(child)  # gone
    # The moments between, told by the kernel: a SIGKILL pending, an exit begun.
    pid = os.getpid()
    monkeypatch.setattr(procfs, "status", lambda p: {"SigPnd": 0, "ShdPnd": 1 << 8})
    assert procfs.dying(pid)
    monkeypatch.setattr(procfs, "status", lambda p: {"SigPnd": 0, "ShdPnd": 1 << 14})
    assert not procfs.dying(pid)  # a SIGTERM may be caught
    stat = open(f"/proc/{pid}/stat", "rb").read()
    head, tail = stat.rsplit(b") ", 1)
    fields = tail.split(b" ")
    fields[6] = str(int(fields[6]) | procfs.PF_EXITING).encode()
    monkeypatch.setattr(procfs, "_read", lambda path, size=-1: head + b") " + b" ".join(fields))
    assert procfs.dying(pid)
