"""The launcher ("zygote"): the process every run's setup is forked from.

It is started once, when the grader makes its Sandbox, as a fresh interpreter
that has read nothing of any learner: no program, no token, no result, not
even the grader's command line. `python -m conformance` forks it instead, as
its very first step (start_early), before it has parsed its command line:
the same nothing, and the run's side already imported, for the price of a
fork. For each run the grader hands it the two
pipe ends of that run's setup; it forks the setup, which reads its own
request from its pipe, and answers with the setup's pid and a pidfd. So a
run's setup, and the run's PID 1 forked from it, hold the data of that run
alone, and nothing of the grader's is in reach of any run.
"""
import atexit
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

from .runsetup import run_setup
from .syscalls import close_fds_except, die_with_parent, set_dumpable

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class Launcher:
    """The grader's end of the launcher."""

    def __init__(self, fork=False):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if fork:
            grader = os.getpid()
            pid = os.fork()
            if pid == 0:
                ours.close()
                _serve_forked(theirs, grader)
            self.process = _Forked(pid)
            theirs.close()
            self.socket = ours
            self.used = False
            atexit.register(self.close)
            return
        code = (f"import sys; sys.path[:0] = [{PACKAGE_PARENT!r}]; "
                f"from conformance.launcher import serve; serve({theirs.fileno()}, {os.getpid()})")
        # -S: no site, as for the runs' own interpreters: it imports the standard library only.
        self.process = subprocess.Popen([sys.executable, "-S", "-c", code], pass_fds=[theirs.fileno()],
                                        stdin=subprocess.DEVNULL, close_fds=True)
        theirs.close()
        self.socket = ours
        self.used = False
        # Waited for, so that the CPU time of every run is counted as the
        # grader's children's (time, make bench) like the grader's own.
        atexit.register(self.close)

    def fork_setup(self, ctl_r, rep_w, watch_fd):
        """(pid, pidfd) of a new run setup holding these pipe ends and its end
        of the witness's socket."""
        self.used = True
        socket.send_fds(self.socket, [b"f"], [ctl_r, rep_w, watch_fd])
        reply, fds, _, _ = socket.recv_fds(self.socket, 16, 1)
        if len(reply) != 4 or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise OSError(0, "the launcher did not answer")
        pid, = struct.unpack("i", reply)
        return pid, fds[0]

    def close(self):
        if self.socket.fileno() != -1:
            self.socket.close()  # the launcher ends at the end of its socket
            if not self.used:
                self.process.kill()  # it holds nothing: no need to wait for its imports
            self.process.wait()


class _Forked:
    """A forked launcher, as the grader waits for it."""

    def __init__(self, pid):
        self.pid = pid

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self):
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _serve_forked(sock, grader):
    try:
        set_dumpable(False)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        close_fds_except({sock.fileno()})
        serve(sock.detach(), grader)
    finally:
        os._exit(1)


_EARLY = None


def start_early():
    """Fork the grader's launcher from the grader's first instructions,
    before it has parsed its command line or read anything of a learner: a
    fork of a process that has imported the run's side, where a fresh
    interpreter would start and import it all again."""
    global _EARLY
    try:
        _EARLY = Launcher(fork=True)
    except OSError:
        _EARLY = None  # the sandbox starts one when it needs it, and says why it cannot


def take_early():
    """The launcher start_early() started, once; or None."""
    global _EARLY
    launcher, _EARLY = _EARLY, None
    return launcher


def reap(*_):
    """Wait for every setup that ended (its times then count as ours)."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def serve(fd, grader):
    set_dumpable(False)
    die_with_parent(signal.SIGKILL)
    if os.getppid() != grader:
        os._exit(1)
    signal.signal(signal.SIGCHLD, reap)
    sock = socket.socket(fileno=fd)
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 16, 3)
        except OSError:
            message, fds = b"", []
        if not message:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            while True:  # the grader is done: so are the setups
                try:
                    os.wait()
                except ChildProcessError:
                    os._exit(0)
        if len(fds) != 3:
            for stray in fds:
                os.close(stray)
            sock.send(b"")
            continue
        pid = os.fork()
        if pid == 0:
            sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            run_setup(*fds)
            os._exit(1)
        for stray in fds:
            os.close(stray)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            sock.send(b"")
            continue
        socket.send_fds(sock, [struct.pack("i", pid)], [pidfd])
        os.close(pidfd)
