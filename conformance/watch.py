"""One run's witness, followed from the grader's event loop (see witness.py
for what the witness is and why the order is forced, never raced).

In phases, as the run goes: the program's own execve (where the run's host
is); every execve held until the process's parent waits or has ended; the
witness announced by its /nskit/ready and observed (observe.py); beyond
Part 1, the parent followed from its clone (ptrace.Trace) and killed at the
witness's DONE; the run torn down once every witness started was seen.
"""
import errno
import os
import select
import signal
import socket

from . import procfs
from .catalog import NAMESPACES, SIGCHLD
from .journal import (Clone, Death, Exec, Exit, HostSnapshot, HostView, Journal, Observation,
                      Wait, Watched)
from .observe import (close_all, death_signal_hint, in_charge_facts, namespace_fds, observe,
                      pivot_view, sigkill_pending, start_facts)
from .procfs import BOUND, shown
from .protocol import PROGRAM_ENDED, TEAR_DOWN
from .ptrace import EXITS, WAITS, Step, Trace
from .seccomp import Listener
from .syscalls import native
from .witness import DONE, READY, SHELL, WITNESS

AT_FDCWD = -100 & 0xFFFFFFFF  # as the low half of a system call's argument
KILLED_WITHIN = 2.0   # seconds a process killed with SIGKILL may take to end: a bound, not a verdict
EXECS = ("execve", "execveat")
CLONES = ("clone", "fork", "vfork", "clone3")
# An execve as /proc/PID/syscall shows it: a child about to become the witness.
IN_EXEC = native("execve", "execveat")


def parent_state(pid, exit_held=False):
    """"ended" (gone, or held in exit_group: exit_held when the grader knows
    it holds it there), "waiting" (in wait4 or waitid), or None: still at work."""
    if exit_held or procfs.ended(pid) or procfs.in_calls(pid, EXITS):
        return "ended"
    if procfs.in_calls(pid, WAITS):
        return "waiting"
    return None


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
        self.in_charge = parent_in_charge  # beyond Part 1: see death_test and Trace
        self.pivot_root = False   # 10 and 11: the witness's namespaces seen whole (pivot_view)
        self.in_charge_of = None  # the observed witness's parent, to be killed at DONE
        self.death = None
        self.trace = None       # the parent followed from its clone on (Trace)
        self.trace_error = None
        self.start = None       # how the witness started (journal.Start)
        self.grader_end, self.run_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.grader_end.setblocking(False)
        self.listener = None    # the run's seccomp listener (Listener), once it came
        self.user_fd = None
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
        self.error = None
        self.ended = False      # the program has ended, and PID 1 waits for a word
        self.torn_down = False
        self.journal = Journal()
        self.ids = {}           # the witness's files in the run: (device, inode) -> its name
        self.host_fds = {}      # the run's host's namespaces, as its program first had them

    def after_fork(self):
        """In the grader, once the run's first stage is forked."""
        self.run_end.close()

    def fds(self):
        return [f for f in (self.grader_end.fileno() if not self.torn_down else None,
                            self.listener and self.listener.fd) if f is not None]

    def busy(self):
        """Whether something waits for a process of the run to move on."""
        return bool(self.held or self.trace or self.parent is not None or self.exit_held is not None
                    or (self.ended and not self.torn_down))

    def on_readable(self, fd):
        try:
            if self.listener and fd == self.listener.fd:
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
                self.listener = Listener(fd)
            else:
                os.close(fd)
        if data == PROGRAM_ENDED:
            self.ended = True
        elif not data:
            self.torn_down = True

    # -- held calls ------------------------------------------------------------

    def _notification(self):
        notification = self.listener.receive()
        if notification is None:
            if self.listener.fd is None:
                self.listener = None  # every process of the run has ended
            return
        notif_id, pid, call = notification.id, notification.pid, notification.call
        if call in CLONES:
            if self.in_charge:
                flags = notification.args[0] if call == "clone" else None
                self.journal.add(Clone(pid, flags))
            self._cloning(notif_id, pid)
            return
        if call in EXECS:
            try:
                if self.program is None:
                    self._first(pid)
                path = self._record(notification)
            except BaseException:
                self._answer(notif_id)
                raise
        if self.trace and pid in self.trace.children and call in EXECS:
            # Held until the parent is stopped again (Trace.step).
            self.trace.child_exec[pid] = (notif_id, path)
            return
        if call == "exit_group":
            self.journal.add(Exit(pid))
            if pid == self.program and self.observed is None:
                self.exit_held = notif_id
            else:
                self._answer(notif_id)
            return
        if call not in EXECS:
            self._answer(notif_id)  # not one the filter holds: never keep it waiting
            return
        if self.in_charge_of is not None and self.death is None:
            fields = procfs.stat_fields(pid)
            if path == DONE and fields and fields[1] == self.observed:
                self.death_test(notif_id, pid)
                return
        if self.observed is not None and self.parent is None:
            self._answer(notif_id)  # seen, released and written down: it goes on
            return
        self._exec(notif_id, pid, path)

    def _record(self, notification):
        """Into the journal: an execve, what it runs and where; the file's
        name as text, for the phases below (only ever compared with the
        witness's names)."""
        pid = notification.pid
        raw, argv = self.listener.read_exec(notification)
        fields = procfs.stat_fields(pid)
        try:
            ns = {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NAMESPACES}
        except OSError:
            ns = {}
        dirfd = notification.args[0] if notification.call == "execveat" else None
        file = _file_id(pid, raw, dirfd)
        self.journal.add(Exec(pid, fields[1] if fields else None, raw, argv, ns,
                              self._runs(pid, raw, file, dirfd), file))
        return None if raw is None else shown(raw)

    def _runs(self, pid, path, file, dirfd=None):
        """What an execve by pid of path (file: its (device, inode)) runs, as
        journal.Exec says."""
        found = self.ids.get(file)
        if found is None:
            interpreter = _interpreter(pid, path, dirfd)
            if interpreter is not None and self.ids.get(_file_id(pid, interpreter)) == SHELL:
                return "shell"
            return None
        if found == WITNESS:
            return "witness"
        if found in (READY, DONE) and procfs.exe(pid) == self.shell_id:
            return "script"
        return "shell"

    def _exec(self, notif_id, pid, path, hold=False):
        """An execve of path by pid, held: seen, and answered now or later
        (with hold, once its parent waits or has ended)."""
        try:
            if self.in_charge and path == WITNESS and self.start is None:
                # A descendant of the followed child, or a witness whose
                # parent is no longer followed (it waits, or it ended).
                self.start = start_facts(pid, early=bool(self.trace and self.trace.held_at_clone))
            if len(self.seen) >= BOUND:
                self.seen = {p: name for p, name in self.seen.items() if not procfs.ended(p)}
            if len(self.seen) < BOUND or pid in self.seen:
                self.seen[pid] = path
            if path == WITNESS:
                self.expected.add(pid)
            fields = procfs.stat_fields(pid)
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
                self.trace = Trace(pid, self.journal)
            except OSError as error:
                self.trace_error = (f"ptrace refused ({error.strerror}): the grader must run "
                                    f"as root, or where ptrace is allowed")
        self._answer(notif_id)

    def _follow(self):
        """One step of the followed parent and child (see Trace)."""
        trace = self.trace
        try:
            step = trace.step()
        except OSError as error:
            self.trace_error = f"following the parent failed: {error.strerror or error}"
            step = Step.DONE
        if step is Step.EXEC:
            notif_id, path = trace.child_exec.pop(trace.child)
            self._exec(notif_id, trace.child, path)
            return
        if step is Step.FOLLOWING:
            return
        self._followed(trace)

    def _followed(self, trace):
        """The parent is let go: the execs its children made meanwhile go on."""
        self.trace = None
        for child, (notif_id, path) in trace.child_exec.items():
            if path == WITNESS and self.start is None and child == trace.child:
                self.start = trace.start
            # A witness that did not wait: its parent now runs free, and
            # what it does (its write to a pipe the exec would close, say)
            # must not race the exec: it goes once the parent waits or ends.
            early = child == trace.child and bool(trace.start and trace.start.early)
            self._exec(notif_id, child, path, hold=path == WITNESS and early)

    def _first(self, pid):
        """The program's own execve, from code that is still the grader's:
        where the run's host is, and what it has."""
        self.program = pid
        fields = procfs.stat_fields(pid)
        if fields is None:
            raise OSError(errno.ESRCH, "the program ended at its first execve")
        self.init = fields[1]
        root = f"/proc/{pid}/root"
        st = os.stat(f"{root}{SHELL}")
        self.shell_id = (st.st_dev, st.st_ino)
        for name in (SHELL, WITNESS, READY, DONE):
            try:
                st = os.stat(f"{root}{name}")
                self.ids[st.st_dev, st.st_ino] = name
            except OSError:
                pass
        rst = os.stat(root)
        self.host = HostView({n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NAMESPACES},
                             (rst.st_dev, rst.st_ino))
        self.user_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
        # The host's, held from here: the run's PID 1 cannot be read, its program can.
        self.host_fds = namespace_fds(pid, ("ipc", "net", "uts", "mnt"))

    def _answer(self, notif_id):
        if self.listener is not None:
            self.listener.answer(notif_id)

    def _announced(self, witness, notif_id, helper):
        """A child of witness runs /nskit/ready: if witness is the witness
        (its executable is this run's shell), the first one is held here."""
        if procfs.exe(witness) != self.shell_id:
            return False
        self.seen.pop(witness, None)
        self.expected.discard(witness)
        if self.observed is not None:
            return False  # a second copy: the journal has its execve, and the checks judge it
        fields = procfs.stat_fields(witness)
        self.observed, self.release, self.helper = witness, notif_id, helper
        self.parent = fields[1] if fields else self.init
        if self.trace:
            # Its start is in the journal: the parent goes on, to wait for it.
            trace, _ = self.trace, self.trace._let_go()
            self._followed(trace)
        return True

    def tick(self):
        """Answer what can be answered now: held execs, the observed witness,
        the run's PID 1 waiting to tear down."""
        if self.trace:
            self._follow()
        still = []
        for notif_id, pid, parent, signal in self.held:
            state = parent_state(parent, self._exit_held(parent))
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
                state = parent_state(self.parent, self._exit_held(self.parent))
                if state:
                    self.waited = state == "waiting"
            if self.waited is not None:
                # Read once the parent has done all it does before it waits
                # (or has ended): what it changes after clone counts too.
                parent, self.parent = self.parent, None
                self.journal.add(Wait(parent, self.waited))
                try:
                    self.facts, host = observe(self.observed, self.shell_id, self.user_fd,
                                               self.helper, (self.host_fds, self.init))
                    if self.pivot_root:
                        # A network of its own (11): read beside its parent's.
                        own_net = self.facts.ns["net"] != self.host.ns["net"]
                        pivot_view(self.facts, self.observed, self.user_fd,
                                   parent if own_net else None)
                    self.journal.add(Observation(self.observed, self.facts, HostSnapshot(
                        "when the command was observed", host["hostname"], host["mounts"],
                        host["queues"], host["links"])))
                    if self.in_charge:
                        in_charge_facts(self.facts, self.observed, parent)
                        if self.waited and self.observed != self.program:
                            self.in_charge_of = parent
                except OSError as error:
                    self.error = f"the command could not be observed: {error.strerror or error}"
                self._answer(self.release)
                self.release = None
        if self.exit_held is not None and all(map(self._settled, procfs.children(self.program))):
            self._answer(self.exit_held)
            self.exit_held = None
        self.expected = {pid for pid in self.expected if not procfs.ended(pid)}
        if self.ended and not self.torn_down and not self.held and self.parent is None \
                and not self.expected:
            try:
                self.grader_end.send(TEAR_DOWN)
            except OSError:
                pass
            self.torn_down = True

    # -- beyond Part 1: the parent killed --------------------------------------

    def death_test(self, notif_id, helper):
        """The witness, at its end, runs DONE: held there, still the child of
        the parent that waits for it, it sees that parent killed (SIGKILL,
        from outside). Once the parent is dead its death signals have been
        sent: the witness is then dead or has SIGKILL pending, or it
        survives. It ignores SIGTERM (probe.py): only SIGKILL is sure."""
        witness, parent = self.observed, self.in_charge_of
        fields = procfs.stat_fields(witness)
        if not fields or fields[1] != parent or procfs.ended(parent):
            self.death = Death(False, "its parent had already ended")
            self._answer(notif_id)
            return
        fds = []
        try:
            fds = [os.pidfd_open(p) for p in (witness, parent, helper)]
            signal.pidfd_send_signal(fds[1], signal.SIGKILL)
            if not select.select([fds[1]], [], [], KILLED_WITHIN)[0]:
                raise OSError(errno.ETIME, "the killed parent did not end")
            died = bool(select.select([fds[0]], [], [], 0)[0]) or sigkill_pending(witness)
            if died:
                select.select([fds[0]], [], [], KILLED_WITHIN)
                # Its DONE child too: nothing of the run may outlive the test
                # (where the witness was PID 1 of its namespace, it is gone already).
                try:
                    signal.pidfd_send_signal(fds[2], signal.SIGKILL)
                except ProcessLookupError:
                    pass
                select.select([fds[2]], [], [], KILLED_WITHIN)
                self.death = Death(True, "it was killed with its parent")
            else:
                self.death = Death(False, "it still ran after its parent was killed"
                                   + death_signal_hint(witness))
        except OSError as error:
            self.death = Death(False, f"the grader could not kill its parent: "
                                      f"{error.strerror or error}")
        finally:
            for fd in fds:
                os.close(fd)
        self._answer(notif_id)

    # -- the end -----------------------------------------------------------------

    def _exit_held(self, pid):
        return pid == self.program and self.exit_held is not None

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
        fields = procfs.stat_fields(child)
        return (fields is None or fields[0] in ("Z", "X")
                or (fields[0] == "S" and not procfs.in_calls(child, IN_EXEC)))

    def untrace(self):
        """Before the run is ended: nothing of it may stay traced."""
        if self.trace:
            self.trace.end()
            self.trace = None

    def close(self):
        self.untrace()
        if self.listener is not None:
            self.listener.close()
        if self.user_fd is not None:
            os.close(self.user_fd)
        close_all(self.host_fds)
        self.grader_end.close()
        self.run_end.close()

    def result(self):
        """What the checks read (journal.Watched)."""
        moments = [{"hostname": e.host.hostname, "mounts": e.host.mounts, "queues": e.host.queues,
                    "links": e.host.links, "moment": e.host.moment}
                   for e in self.journal.of(Observation) if e.host]
        return Watched(self.facts, self.host, self.waited, self.exit_signal, self.start,
                       self.death, self.trace_error, self.error, _plain(moments), self.journal)


def _file_id(pid, path, dirfd=None):
    """(device, inode) of the file an execve by pid names, as pid sees it;
    None where it cannot be found."""
    if path is None:
        return None
    for alias in (b"/proc/self/", b"/proc/thread-self/", b"/dev/fd/"):
        if path.startswith(alias):
            path = (f"/proc/{pid}/" if alias != b"/dev/fd/" else f"/proc/{pid}/fd/").encode() \
                + path[len(alias):]
            break
    else:
        if path.startswith(b"/"):
            path = f"/proc/{pid}/root".encode() + path
        elif dirfd is not None and dirfd & 0xFFFFFFFF != AT_FDCWD:
            path = f"/proc/{pid}/fd/{dirfd & 0xFFFFFFFF}".encode() + (b"/" + path if path else b"")
        else:
            path = f"/proc/{pid}/cwd/".encode() + path
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _interpreter(pid, path, dirfd=None):
    """The #! interpreter of a script an execve names, or None."""
    if path is None:
        return None
    where = _file_id(pid, path, dirfd)
    if where is None:
        return None
    for alias in (b"/proc/self/", b"/proc/thread-self/", b"/dev/fd/"):
        if path.startswith(alias):
            return None  # read through the process's own fds: not followed
    full = (f"/proc/{pid}/root".encode() + path if path.startswith(b"/")
            else f"/proc/{pid}/cwd/".encode() + path)
    try:
        with open(full, "rb") as fh:
            head = fh.read(256)
    except (OSError, ValueError):
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return words[0] if words else None


def _plain(value):
    """Lists for tuples, and every name escaped (procfs.shown)."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return shown(value)
    return value


