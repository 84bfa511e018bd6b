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

Beyond Part 1 (08 to 11), the program is a parent in charge of its child:
clones are held too, and the first process that clones is followed (ptrace.Trace)
so that whether the command waited for its parent, and which maps it had
when it started, are forced, not raced; at its end the witness runs DONE,
held while the grader kills its parent (Watch.death_test). For 10 and 11,
its mount namespace is also read from that namespace's own root, and for
11 its network beside its parent's (observe.pivot_view).

The grader's side is split by concern: seccomp.py (the held calls),
procfs.py (what /proc says), observe.py (the witness's facts), ptrace.py
(the parent followed), journal.py (what the checks read) and watch.py (one
run's witness, followed in phases from the grader's event loop). Nothing
there runs threads. This module is what the run's side needs: the witness's
names and its shell.
"""
import os
import shutil

from .protocol import PROGRAM_ENDED

DIR = "/nskit"
SHELL = f"{DIR}/sh"
WITNESS = f"{DIR}/witness"
READY = f"{DIR}/ready"   # what the witness runs first: its exec is held until it is seen
DONE = f"{DIR}/done"     # beyond Part 1, what it runs last: held while its parent is killed
MACHINE_SHELL = "/bin/dash" if os.path.exists("/bin/dash") else "/bin/sh"


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


def before_teardown(fd):
    """In the run's PID 1, once the program has ended: wait until the grader
    has seen every witness the program started."""
    try:
        os.write(fd, PROGRAM_ENDED)
        os.read(fd, 1)
    except OSError:
        pass  # the grader has gone: so will this run
