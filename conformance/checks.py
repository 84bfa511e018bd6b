"""The table of expected outcomes: what each step must show, and a hint for
a learner when it does not.

A check reads the kernel's facts about the command the program ran (the
witness, see witness.py), the run's host before and after the run, and what
the program left running; never what the command printed. It is written as
check50 writes one: a judge that returns what it saw when the check passes,
and raises Failure(seen, hint) when it does not, the hint naming the mistake
that the evidence shows. Checks depend on each other, as check50's do: a
check whose needs do not all pass is skipped, "skipped: needs <title>", and
earns nothing, so one cause shows as one failure. A step's checks of the
program's manners (it ran its command, waited for it, left the host as it
was) earn only when the step's own outcome holds.

Hints speak of calls and processes (the parent, the child before it execs);
they name the kit's own function (child_exec) only to a Python program.
"""
import os
import re
from dataclasses import dataclass

from .catalog import (ARTICLE_COMMANDS, BEYOND_PART_1, CLONE_FLAG_NAME, NAMESPACES,
                      NEW_NAMESPACES, SIGCHLD)
from .journal import (OVERFLOW_ID, Blocked, Clone, Exec, Facts, Follow, Observation, Watched,
                      Write, mapped, shown)

NOT_RUN = "the command never ran"
SKIPPED = "skipped: needs "
ON_ITS_OWN = "; on its own: "


class Failure(Exception):
    """A check failed: what was seen, and the hint for the learner (check50's
    Failure(rationale, help))."""

    def __init__(self, seen, hint=""):
        super().__init__(seen)
        self.seen, self.hint = seen, hint


@dataclass
class Evidence:
    witness: Facts        # the kernel's facts about the command (journal.Facts), or None
    watch: Watched        # how it was started and released (journal.Watched)
    before: dict          # the run's host before the run (runinit.snapshot)
    after: dict
    leftover: list
    output: str           # what the program printed: only ever shown
    propagation: str = "shared"
    language: str = "python"  # "python", "c" or "other": the words a hint uses
    program: str = ""     # the program's path as the learner knows it
    journal: object = None    # every event of the run, in order (journal.Journal)


@dataclass(frozen=True, eq=False)
class Check:
    title: str
    judge: object          # Evidence -> what was seen; raises Failure
    needs: tuple = ()      # the Checks it needs
    outcome: bool = False  # part of what the step is for (see verdicts)
    needs_outcome: bool = False  # earns only when the step's outcome holds
    watches_host: bool = False   # judges one part of the host (see HOST)

    def __call__(self, ev):
        return self.judge(ev)


def check(title, needs=(), **kinds):
    """Makes a judge a Check, as check50's @check does."""
    def make(judge):
        return Check(title, judge, tuple(needs), **kinds)
    return make


# -- the words of a hint -------------------------------------------------------------

def in_child(ev):
    """Who does a step's work: the child, before it execs the command."""
    if ev.language == "python":
        return "child_exec (the child, before it execs the command)"
    return "the child, before it execs the command"


def runs_command(ev):
    """How a program runs the command it was given, in its own language."""
    if ev.language == "python":
        return "child_exec execs sys.argv[1:]"
    if ev.language == "c":
        return "the child execs argv[1] with its arguments (execvp(argv[1], &argv[1]))"
    return "the child execs the command it was given, with its arguments"


def _names(items):
    return ", ".join(items) or "none"


def _mounted_on(mounts, point):
    """The file system type on top at a mount point (bytes), or None."""
    return next((m.fstype for m in reversed(mounts) if m.point == point), None)


def _mountinfo_lines(mountinfo, point):
    return [line for line in mountinfo.splitlines() if line.split()[4:5] == [point]]


def _moments(ev):
    """The run's host at every moment the grader looked: when the command was
    observed, and at the end (after everything the program left had ended)."""
    return [(m.get("moment", "during the run"), m) for m in ev.watch.moments] + \
        [("at the end", ev.after)]


def _when(moment, changes):
    """When a change was seen, said where it was undone by the end."""
    if any(when == "at the end" for when, _ in changes):
        return ""
    return f" ({moment}, undone by the end)"


def _made_private(ev):
    """Whether the command's own / is no longer shared: the child did make
    its mounts private (observe.observe's "shared" lists the others)."""
    return b"/" not in ev.witness.shared


PRIVATE_CALL = 'mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)'


def _reached_host(ev, seen, change, redo):
    """The Failure of a change the child made to its mounts that reached the
    host: change says what it did ("mounted the tmpfs"), redo what to do
    instead once its mounts are private ("mount the tmpfs")."""
    if ev.propagation != "shared":
        return Failure(seen, f"The host saw what the child {change}: {redo} only in a mount "
                       "namespace of the child's own.")
    if _made_private(ev):
        return Failure(seen, (
            f"The child did make its mounts private, but only after it {change}: that had "
            f"already reached the host, whose / is shared. Make every mount private first "
            f"({PRIVATE_CALL}), then {redo}."))
    return Failure(seen, (
        "The run's host mounts / shared, as systemd hosts do today (the article's 2014 hosts "
        "mounted it private): a mount namespace copied from it stays joined to it until the "
        "child makes all of its mounts private, and only then do its mounts and unmounts stay "
        "its own. Which mount call makes every mount of the child's namespace private?"))


# -- every step: the command ran, and the parent waited for it ----------------------

# A traceback's frame, or a syntax error's place: File "PATH", line N.
PLACE = re.compile(r'^\s*File "(?P<path>[^"]+)", line (?P<line>\d+)')


def last_words(output):
    """The program's own last line: its one-sentence error, or the line of a
    traceback that names the error."""
    lines = [line.strip() for line in output.splitlines() if line.strip()
             and not line.startswith("[... ")]
    return lines[-1][:300] if lines else None


def where(output, program):
    """The last place in the program itself that a traceback or a syntax error
    names, as "PATH, line N", or None."""
    places = [m for m in map(PLACE.match, output.splitlines()) if m and m["path"] == program]
    return f"{program}, line {places[-1]['line']}" if places and program else None


def witness_lines(output):
    """Whether output holds the lines the witness prints once released ("$ ip
    a"): a copy of it ran, one the grader did not know (a copy of its shell),
    so what follows is the article's commands, not the program's last words."""
    echoed = {f"$ {command}" for commands in ARTICLE_COMMANDS.values() for command in commands}
    return any(line in echoed for line in output.splitlines())


def _locked_proc(words):
    """Whether a program's last words are umount's EINVAL on /proc."""
    return "/proc" in words and "mount" in words and (
        "Invalid argument" in words or "EINVAL" in words)


def _where(ev, run):
    """Where a copy of the command ran: "in new uts and pid", "in the host's"."""
    host = ev.watch.host.ns if ev.watch.host else {}
    new = sorted(n for n in NAMESPACES if run.ns.get(n) and run.ns.get(n) != host.get(n))
    return f"in new {' and '.join(new)}" if new else "in the host's"


TIMES = {2: "twice", 3: "three times"}


def _as_given(run):
    """Whether a copy is the command as it was given: the witness, alone."""
    return run.runs == "witness" and (run.argv is None or len(run.argv) == 1)


def _command_line(run):
    return " ".join(shown(a) for a in (run.argv or [run.path or b"?"]))[:200]


def _copies(ev):
    """Every copy of the command the journal saw: each process that ran the
    witness's shell, however it was started."""
    if ev.journal is None:
        return []
    return [e for e in ev.journal.of(Exec) if e.runs in ("witness", "shell")]


def _wrong_copies(ev):
    """The Failure of a program that ran the command more than once, or with
    other arguments; None when it ran it once, as it was given."""
    copies = _copies(ev)
    if len(copies) > 1:
        places = ", ".join(f"once {_where(ev, run)}" if _as_given(run) else
                           f"once as {_command_line(run)} {_where(ev, run)}"
                           for run in copies[:4])
        return Failure(f"ran the command {TIMES.get(len(copies), f'{len(copies)} times')}: "
                       f"{places}", (
            "The program is given one command and runs it once: " + runs_command(ev) +
            ", and nothing else runs it, before or after."))
    other = [run for run in copies if not _as_given(run)]
    if other:
        run = other[0]
        name = shown(run.path or b"?") if run.runs == "witness" else "/nskit/sh"
        return Failure(f"ran {name} with other arguments: {_command_line(run)}", (
            "Run the command exactly as it was given, with its arguments and nothing else: "
            + runs_command(ev) + "."))
    return None


@check("runs the command it is given", needs_outcome=True)
def ran(ev):
    if ev.witness is not None:
        wrong = _wrong_copies(ev)
        if wrong:
            raise wrong
        return "it ran, and was observed"
    if ev.watch.error:
        raise Failure(f"{NOT_RUN}: {ev.watch.error}",
                      "The command was started but could not be observed: it must keep "
                      "running until it ends by itself.")
    if witness_lines(ev.output):
        raise Failure(f"{NOT_RUN} as given: a copy of it ran instead (its output shows the "
                      f"article's commands), and a copy cannot be observed",
                      "Run the command exactly as given: a copy of it, or of the shell that "
                      f"runs it, is not the command; {runs_command(ev)}.")
    words = last_words(ev.output)
    if words and (place := where(ev.output, ev.program)):
        words += f" (at {place})"
    if words and _locked_proc(words):
        raise Failure(f"{NOT_RUN}; the program's last words: {words}",
                      "Unmounting /proc failed with \"Invalid argument\": in a new user "
                      "namespace, the proc the child inherited is locked to the mounts it came "
                      "with, and a new user namespace cannot unmount it. Mount a fresh proc "
                      "over /proc instead, without unmounting the old one.")
    if words:
        raise Failure(f"{NOT_RUN}; the program's last words: {words}",
                      "The program stopped before its command ran: its last words say "
                      f"where. Once that is fixed, {runs_command(ev)}.")
    raise Failure(f"{NOT_RUN}, and the program printed nothing",
                  f"Nothing ran the command: {runs_command(ev)}, and the parent waits for "
                  "the child?")


@check("waits for its command", needs_outcome=True)
def waits(ev):
    watch = ev.watch
    if watch.waited:
        return "its parent waited for it"
    signal = watch.exit_signal
    if signal is not None and signal != SIGCHLD:
        raise Failure(
            f"the program ended before its command started: the child was cloned with exit "
            f"signal {signal}, not SIGCHLD, so its parent's waitpid found no child",
            "What lets the parent wait for a child made by clone? The child's exit signal is "
            "the low byte of clone's flags, and waitpid waits for SIGCHLD children.")
    raise Failure("the program ended while its command still ran",
                  "The parent must wait for the child it cloned (waitpid) before it ends: "
                  "what lets a parent wait for a child made by clone?")


# -- the namespaces a step makes new ---------------------------------------------------

# What a step's command lacks when none of its new namespaces is there.
TOPIC = {
    "00": "The skeleton adds no namespace: clone_flags should ask for none.",
    "01": "The command shares the host's network: which namespace gives the child a network "
          "stack of its own? (article: NET Namespace)",
    "02": "The command shares the host's mounts: a tmpfs on /mytmp that only the child sees "
          "needs a mount namespace of the child's own (article: MNT Namespace).",
    "03": "The command shares the host's hostname: setting it to myhostname needs a UTS "
          "namespace of the child's own (article: UTS Namespace).",
    "04": "The command shares the host's SysV IPC objects: which namespace gives the child IPC "
          "objects of its own? (article: IPC Namespace)",
    "05": "The command shares the host's processes: it should be PID 1 of a PID namespace of "
          "its own, with a mount namespace for a fresh /proc (article: PID Namespace).",
    "06": "The command is still the host's root: in a new user namespace with no uid map yet "
          "it becomes nobody (article: USER Namespace).",
    "07": "All six at once: the child needs a new network, mount, UTS, IPC, PID and user "
          "namespace (article: In the end...).",
    "08": "isolate runs its command in a UTS namespace of its own, and no other: clone's "
          "flags are CLONE_NEWUTS and SIGCHLD (Deep dive into Linux namespaces: main).",
    "09": "09 is 06's user namespace with a parent in charge: the child needs a user "
          "namespace of its own, and no other (Deep dive into Linux namespaces: User "
          "namespaces).",
    "10": "10 is 09 with a root of its own: the child needs new user, mount and PID "
          "namespaces (a proc of its own in the new root), and no other.",
    "11": "11 is 10 with a network: the child needs new user, mount, PID and network "
          "namespaces, and no other.",
}

# Why a namespace is needed beside one the command has already.
BESIDE = {
    ("05", "mnt"): "ps reads /proc, and a fresh /proc for the new PID namespace needs a mount "
                   "namespace of the child's own beside it: in the host's, "
                   "remounting /proc would change the host's (article: PID Namespace).",
    ("10", "mnt"): "pivot_root changes the root of a mount namespace: the child needs one of "
                   "its own, or it would change the host's.",
    ("10", "pid"): "ps shows the command as PID 1 only in a PID namespace of its own, with a "
                   "proc of it mounted in the new root.",
}
BESIDE[("11", "mnt")], BESIDE[("11", "pid")] = BESIDE[("10", "mnt")], BESIDE[("10", "pid")]


WORD = {"ipc": "IPC", "mnt": "mount", "net": "network", "pid": "PID", "user": "user",
        "uts": "UTS"}


def _words(names):
    return " and ".join(WORD[name] for name in names)


def _namespace_title(step):
    new = sorted(NEW_NAMESPACES[step])
    if not new:
        return "runs in the host's namespaces"
    if len(new) == len(NAMESPACES):
        return "new namespaces: all six"
    return f"new namespaces: {' and '.join(new)}, no other"


def _namespaces_judge(step):
    def judge(ev):
        host = ev.watch.host.ns
        new = {name for name in NAMESPACES if ev.witness.ns[name] != host[name]}
        want = NEW_NAMESPACES[step]
        seen = f"new: {_names(sorted(new))}"
        if new == want:
            return seen
        missing, there = sorted(want - new), sorted(want & new)
        if missing and not there:
            raise Failure(seen, TOPIC[step])
        if missing:
            why = " ".join(BESIDE[step, name] for name in missing if (step, name) in BESIDE)
            raise Failure(seen, (
                f"The command has a new {_words(there)} namespace, but still the host's "
                f"{_words(missing)} namespace: clone's flags miss "
                f"{' and '.join(CLONE_FLAG_NAME[name] for name in missing)}. "
                + (why or "This step needs each of them.")))
        raise Failure(seen, (
            f"clone_flags asks for more than this step needs: the command also has a new "
            f"{' and '.join(sorted(new - want))} namespace. Which flags does this step need, "
            f"and which come later?"))
    return judge


NAMESPACE_CHECK = {nn: Check(_namespace_title(nn), _namespaces_judge(nn), outcome=True)
                   for nn in NEW_NAMESPACES}


# -- outcomes --------------------------------------------------------------------

@check("sees what the host sees", outcome=True)
def sees_the_host(ev):
    w, host = ev.witness, ev.before
    wrong = []
    if shown(w.hostname) != host["hostname"]:
        wrong.append(f"hostname {shown(w.hostname)!r}, not the host's {host['hostname']!r}")
    links = sorted(map(shown, w.links))
    if links != sorted(host["links"]):
        wrong.append(f"links {_names(links)}, not the host's {_names(host['links'])}")
    if not set(host["queues"]) <= set(w.queues):
        wrong.append("not the host's SysV queue")
    if w.root != ev.watch.host.root:
        wrong.append("not the host's /")
    if wrong:
        raise Failure("; ".join(wrong), "The skeleton adds no namespace: the command should "
                      "see the host's hostname, links, queues and /.")
    return "the host's hostname, links, queue and /"


@check("ip a lists only lo, DOWN", outcome=True)
def only_lo_down(ev):
    links = ev.witness.links
    seen = "links: " + _names(f"{shown(name)} {state}" for name, state in links.items())
    if links != {b"lo": "DOWN"}:
        raise Failure(seen, "The command's network namespace should hold only its own lo, "
                      "still down (article: NET Namespace).")
    return seen


@check("a tmpfs is mounted on /mytmp inside", outcome=True)
def tmpfs_inside(ev):
    found = _mounted_on(ev.witness.mounts, b"/mytmp")
    if found != b"tmpfs":
        raise Failure(f"/mytmp: {shown(found)}" if found else "nothing mounted on /mytmp",
                      f"Nothing on /mytmp inside: {in_child(ev)} mounts a tmpfs there "
                      "(article: MNT Namespace).")
    return "/mytmp: tmpfs"


@check("the tmpfs never shows on the host", needs=[tmpfs_inside], watches_host=True)
def tmpfs_not_on_host(ev):
    first = len(_mountinfo_lines(ev.before["mounts"], "/mytmp"))
    leaks = [(moment, len(_mountinfo_lines(host["mounts"], "/mytmp")) - first)
             for moment, host in _moments(ev)]
    leaks = [(moment, leaked) for moment, leaked in leaks if leaked > 0]
    if not leaks:
        return "nothing"
    moment, leaked = leaks[0]
    raise _reached_host(ev, f"{leaked} new mount(s) on the host's /mytmp{_when(moment, leaks)}",
                        "mounted the tmpfs", "mount the tmpfs")


@check("ls / still shows the host's files", outcome=True)
def no_jail(ev):
    w = ev.witness
    if w.root == ev.watch.host.root:
        return "the host's /"
    inside = {shown(name) for name, _, _ in w.root_entries}
    missing = sorted(set(ev.before["root"]) - inside)
    raise Failure(f"/ is another folder; missing: {_names(missing[:8])}",
                  "A mount namespace is not a jail: the command should still see the host's "
                  "files in / (no chroot, no pivot_root).")


@check("hostname prints myhostname inside", outcome=True)
def myhostname(ev):
    seen = f"hostname {shown(ev.witness.hostname)!r}"
    if ev.witness.hostname == b"myhostname":
        return seen
    if ev.after["hostname"] == "myhostname":
        raise Failure(f"{seen}, and the host's became 'myhostname'", (
            "sethostname ran in the parent, after clone: the host took the name, and the "
            "child kept the one its UTS namespace started with. Call sethostname in "
            f"{in_child(ev)}."))
    raise Failure(seen, f"{in_child(ev)} should set the hostname to myhostname, in a UTS "
                  "namespace of its own (article: UTS Namespace).")


@check("the host's hostname is unchanged", needs=[myhostname], watches_host=True)
def host_hostname_kept(ev):
    before = ev.before["hostname"]
    changes = [(moment, host["hostname"]) for moment, host in _moments(ev)
               if host["hostname"] != before]
    if not changes:
        return "unchanged"
    moment, after = changes[0]
    seen = f"{before!r} became {after!r}{_when(moment, changes)}"
    if after == shown(ev.witness.hostname):
        raise Failure(seen, (
            "sethostname ran in the parent, before clone: the host took the name, and the "
            "child's new UTS namespace began as a copy of the host's. Call sethostname in "
            f"{in_child(ev)}, once it has a UTS namespace of its own."))
    raise Failure(seen, "A sethostname ran in the host's UTS namespace, in the parent: only "
                  "the child, in its own UTS namespace, should set a hostname.")


@check("ipcs -q inside lists no queue", outcome=True)
def no_queue(ev):
    queues = ev.witness.queues
    seen = f"queues: {_names(hex(k) for k in queues)}"
    if queues or ev.before["queues"] == []:
        raise Failure(seen, "ipcs -q inside still lists a queue: which namespace gives the "
                      "child SysV IPC objects of its own? (article: IPC Namespace)")
    return seen


@check("ps shows the command as PID 1, alone", outcome=True)
def pid1_alone(ev):
    w = ev.witness
    inner, proc = w.nspid[-1], w.proc
    if inner != 1:
        raise Failure(f"the command is PID {inner} of its PID namespace, not 1", (
            "The command must be the first process of its new PID namespace: the child that "
            "clone makes runs it, and nothing runs before it there (article: PID Namespace)."))
    if proc.kind == "other":
        raise Failure(
            f"PID 1 of a new PID namespace, but its /proc is the host's: ps lists the "
            f"host's {proc.count} processes",
            f"ps reads /proc, and the command's /proc is still the host's: {in_child(ev)} "
            "remounts /proc, in its own mount namespace (article: PID Namespace).")
    if proc.kind != "own":
        raise Failure(
            f"PID 1, but no proc on its /proc ({shown(proc.fstype or b'nothing')}): ps lists "
            f"nothing",
            f"ps reads /proc, and nothing is mounted there: {in_child(ev)} mounts a fresh "
            "proc on /proc, in its own mount namespace (article: PID Namespace).")
    others = proc.count - 1
    if others:
        raise Failure(f"PID 1, and {others} other process(es) in its PID namespace",
                      "The command should be alone in its PID namespace: start nothing else "
                      "in it.")
    return "PID 1 of its own PID namespace, alone, with a /proc of that namespace"


@check("the host's /proc is untouched", needs=[pid1_alone], watches_host=True)
def host_proc_kept(ev):
    first = _mountinfo_lines(ev.before["mounts"], "/proc")
    changes = [(moment, host) for moment, host in _moments(ev)
               if not host.get("proc", True) or _mountinfo_lines(host["mounts"], "/proc") != first]
    if not changes:
        return "unchanged"
    raise _reached_host(ev, f"the host's /proc was unmounted or replaced"
                        f"{_when(changes[0][0], changes)}",
                        "unmounted or mounted /proc", "remount /proc")


def _id_names(uid, gid):
    def name(n, nobody):
        return {0: "root", OVERFLOW_ID: nobody}.get(n, str(n))
    return f"uid={uid}({name(uid, 'nobody')}) gid={gid}({name(gid, 'nogroup')})"


@check("id shows nobody/nogroup", outcome=True)
def id_nobody(ev):
    w = ev.witness
    uid, gid = mapped(w.uid_map, w.uid), mapped(w.gid_map, w.gid)
    seen = f"id: {_id_names(uid, gid)}"
    if uid == gid == OVERFLOW_ID:
        return seen
    raise Failure(seen, "id should show nobody: the command runs in a new user namespace that "
                  "has no uid map yet (article: USER Namespace).")


@check("ls -la shows nobody/nogroup", outcome=True)
def ls_nobody(ev):
    w = ev.witness
    owners = {f"{'nobody' if mapped(w.uid_map, u) == OVERFLOW_ID else mapped(w.uid_map, u)}/"
              f"{'nogroup' if mapped(w.gid_map, g) == OVERFLOW_ID else mapped(w.gid_map, g)}"
              for _, u, g in w.root_entries}
    seen = f"owners in ls -la /: {_names(sorted(owners)[:6])}"
    if owners == {"nobody/nogroup"}:
        return seen
    raise Failure(seen, "ls -la should show every file as nobody/nogroup, as seen from a user "
                  "namespace without a mapping.")


# -- beyond Part 1: a parent in charge of its child ---------------------------------

def _chain(journal, pid, top):
    """pid and its ancestors up to (not with) top, from the journal's clones and execs."""
    parents = {}
    for event in journal.events:
        if isinstance(event, Clone) and event.child is not None:
            parents[event.child] = event.parent
        elif isinstance(event, Exec) and event.ppid is not None:
            parents.setdefault(event.pid, event.ppid)
    chain = []
    while pid is not None and pid != top and pid not in chain and len(chain) < 64:
        chain.append(pid)
        pid = parents.get(pid)
    return chain


def _same_channel(read, written):
    """Whether a write went to what a child read: the same pipe, or (a
    socket's peer cannot be named from /proc) another socket."""
    if read is None or written is None:
        return False
    if read.startswith(b"pipe:"):
        return read == written
    return read.startswith(b"socket:") and written.startswith(b"socket:") and read != written


def ok_delivered(journal):
    """Whether the journal shows the parent's OK: the command's process (or
    the child it came from) asleep reading a pipe whose write end the
    followed parent holds, then the parent's write to that pipe, then the
    command's execve. Returns (True, seen) or (False, seen)."""
    parent = next((e.pid for e in journal.of(Follow)), None)
    witness = next((e.pid for e in journal.of(Observation)), None)
    if parent is None or witness is None:
        return False, "the grader could not follow the parent and its child"
    chain = set(_chain(journal, witness, parent))
    waiting, last, wrote = None, None, None
    for event in journal.events:
        if isinstance(event, Blocked) and event.pid in chain:
            last = event
            waiting = event if event.parent_holds else None
        elif isinstance(event, Write) and event.pid == parent and waiting is not None \
                and _same_channel(waiting.target, event.target):
            wrote = event
        elif isinstance(event, Exec) and event.pid == witness and event.runs == "witness":
            break
    if wrote is not None:
        kind = "pipe" if wrote.target.startswith(b"pipe:") else "socket"
        return True, f"the command started after its parent wrote to the {kind} its child was reading"
    if last is None:
        return False, ("the command started while its parent was held at clone, before it "
                       "could write anything")
    if last.call not in ("read", "readv", "pread64", "recvfrom", "recvmsg"):
        waited = "was running" if last.call == "running" else f"waited in {last.call}"
        return False, (f"the child {waited}, not reading a pipe of its parent's, "
                       "and the command started without the parent's OK")
    if not last.parent_holds:
        return False, (f"the child read {shown(last.target or b'?')}, which its parent does "
                       "not write to, and the command started without the parent's OK")
    return False, ("the child read a pipe of its parent's, but the command started before "
                   "the parent wrote to it")


@check("the command starts only after the parent's OK", outcome=True)
def starts_after_ok(ev):
    if ev.watch.start is None or ev.journal is None:
        raise Failure("the grader could not follow the parent and its child: " + (
            ev.watch.trace_error or "no child of the program ran the command"),
            "The parent clones the child and writes \"OK\" to the pipe once it has set it up "
            "(Deep dive into Linux namespaces: main).")
    delivered, seen = ok_delivered(ev.journal)
    if not delivered:
        raise Failure(seen, (
            "The child ran the command without waiting for the parent: before it execs, it "
            "must block reading the pipe until the parent writes \"OK\", so that the parent "
            "can set it up first (Deep dive into Linux namespaces: cmd_exec, await_setup)."))
    return seen


@check("the command dies with its parent", needs=[waits])
def dies_with_parent(ev):
    death = ev.watch.death
    if death is None:
        raise Failure("the command was not seen at its end with its parent alive",
                      "The command must still be the parent's child when it ends: the parent "
                      "waits for it (Deep dive into Linux namespaces: main).")
    if death.died:
        return death.seen
    raise Failure(death.seen, (
        "The command must die with its parent whatever it does: before it execs, the child "
        "asks the kernel for a death signal that nothing can catch or ignore, prctl("
        "PR_SET_PDEATHSIG, SIGKILL) (Deep dive into Linux namespaces: cmd_exec)."))


def _map_text(id_map):
    return "; ".join(" ".join(map(str, line)) for line in id_map) or "empty"


@check("id shows root inside, the parent's own ids outside", outcome=True)
def root_inside(ev):
    w = ev.witness
    parent = w.parent or {}
    uid, gid = mapped(w.uid_map, w.uid), mapped(w.gid_map, w.gid)
    seen = (f"id: {_id_names(uid, gid)}; uid_map {_map_text(w.uid_map)}, gid_map "
            f"{_map_text(w.gid_map)}; the parent is uid {parent.get('uid')} gid "
            f"{parent.get('gid')} outside")
    want_uid = [(0, parent.get("uid"), 1)]
    want_gid = [(0, parent.get("gid"), 1)]
    if w.uid_map == want_uid and w.gid_map == want_gid and uid == gid == 0:
        return seen
    if not w.uid_map or not w.gid_map:
        missing = " and ".join(n for n in ("uid_map", "gid_map") if not getattr(w, n))
        raise Failure(seen, (
            f"The child's {missing} is empty: the parent writes \"0 <its uid> 1\" to "
            f"/proc/CHILD/uid_map and \"0 <its gid> 1\" to gid_map, from outside the new user "
            f"namespace, before it says OK (Deep dive into Linux namespaces: User "
            f"namespaces)."))
    raise Failure(seen, "Each map is one line, \"0 <the parent's id> 1\": root inside is the "
                  "parent's uid and gid outside, and nothing else is mapped (Deep dive into "
                  "Linux namespaces: User namespaces).")


@check("setgroups is denied in the command's user namespace", needs=[root_inside])
def setgroups_denied(ev):
    state = ev.witness.setgroups
    if state == "deny":
        return "setgroups: deny"
    raise Failure(f"setgroups: {state}", (
        "The parent writes \"deny\" to /proc/CHILD/setgroups before the gid map: an ordinary "
        "user may not map a gid otherwise, and the child must not drop the groups that keep "
        "it out of files (Deep dive into Linux namespaces: User namespaces)."))


@check("the maps are written before the command starts", needs=[root_inside, starts_after_ok])
def maps_before_start(ev):
    start = ev.watch.start
    if start is None:
        raise Failure("the grader could not see the command start",
                      "The parent writes the maps, then \"OK\" (Deep dive into Linux "
                      "namespaces: User namespaces).")
    empty = [n for n in ("uid_map", "gid_map") if not getattr(start, n)]
    if empty:
        raise Failure(
            f"when the command started its {' and '.join(empty)} "
            f"{'were' if len(empty) > 1 else 'was'} empty",
            "The parent must write the maps before it says OK: a command that starts first "
            "runs as nobody until they appear (Deep dive into Linux namespaces: User "
            "namespaces).")
    return "both maps were written when the command started"


# -- beyond Part 1: a root of its own, a network that works --------------------------

@check("/ is a root of its own, not the host's", outcome=True)
def root_of_its_own(ev):
    w = ev.witness
    if w.root == ev.watch.host.root:
        raise Failure("/ is the host's", (
            f"The command's / is still the host's: {in_child(ev)} binds the root filesystem "
            "NSKIT_ROOTFS names onto itself and pivots into it (pivot_root), in a mount "
            "namespace of its own."))
    entries = sorted(shown(name) for name, _, _ in w.root_entries)
    return f"/ is another root: {_names(entries[:10])}"


@check("nothing of the host's root is mounted in its namespace", needs=[root_of_its_own],
       outcome=True)
def old_root_gone(ev):
    w = ev.witness
    host = ev.watch.host.root[0]
    device = f"{os.major(host)}:{os.minor(host)}"
    below = [m.point for m in w.mounts if m.device == device]
    if below:
        raise Failure(f"the host's root is still mounted in its namespace, on {shown(below[0])}", (
            "pivot_root puts the old root on put_old (with pivot_root(\".\", \".\"), on top "
            "of the new root): unmount it there, umount2(put_old, MNT_DETACH), before the "
            "command runs, and every mount of the host's goes with it."))
    mounts = w.namespace_mounts or []
    if any(m.device == device for m in mounts):
        raise Failure(
            "its / is a folder of a mount namespace whose root is still the host's (a chroot)", (
                "chroot changes the root of one process, and the host's stays the root of the "
                "mount namespace, mounted around the new one: root inside climbs out with a "
                "second chroot. pivot_root makes the new root the namespace's own; then "
                "unmount the old one."))
    return f"its mount namespace holds {len(mounts)} mounts, none of the host's root"


def _link_words(link):
    return (f"{shown(link['name'])} {'UP' if link['up'] else 'DOWN'} "
            f"{' '.join(link['ipv4']) or 'no address'}")


def _network(ev):
    """11: what the witness's network namespace holds (observe.pivot_view)."""
    if ev.witness.network is None:
        raise Failure("the command has the host's network namespace",
                      "The child needs a network namespace of its own (CLONE_NEWNET).")
    return ev.witness.network


def _ends(ev):
    """11: the links of the witness's network namespace but lo."""
    return [link for link in _network(ev).links if link["name"] != b"lo"]


def _end(ev):
    """11: the one veth end inside, as veth_inside has found it."""
    ends = _ends(ev)
    if len(ends) != 1:
        raise Failure(f"{len(ends)} links but lo inside, not one veth end")
    return ends[0]


@check("its network holds lo and a veth end, up, with an address", outcome=True)
def veth_inside(ev):
    net = _network(ev)
    seen = "links: " + _names(_link_words(link) for link in net.links)
    ends = _ends(ev)
    if not ends:
        pair = [shown(link["name"]) for link in net.parent_links
                if shown(link["name"]) not in ev.before["links"] and link["peer"]
                and link["peer_netnsid"] is None]
        if len(pair) >= 2:
            raise Failure(f"{seen}; both ends of a pair, {_names(pair)}, are in the parent's", (
                "The parent made the veth pair but left both ends in its own network "
                "namespace: move one into the child's, before the OK (ip link set END netns "
                "CHILD_PID; over rtnetlink, IFLA_NET_NS_PID)."))
        raise Failure(seen, (
            "The command's network namespace holds no veth end: before its OK, the parent "
            "makes a veth pair and moves one end into the child's namespace (ip link add ... "
            "type veth peer ...; ip link set END netns CHILD_PID)."))
    if len(ends) > 1:
        raise Failure(seen, "The command's network namespace should hold lo and one veth end, "
                      "nothing more.")
    if not all(link["up"] for link in net.links):
        raise Failure(seen, "Every link inside must be up: after the OK, the child brings its "
                      "end and lo up (ip link set ... up).")
    if not ends[0]["ipv4"]:
        raise Failure(seen, "The veth end inside has no address: after the OK, the child gives "
                      "it one, in the same network as the parent's end (ip addr add "
                      "10.11.0.2/24 dev END).")
    return seen


@check("its veth end's peer is in the parent's network namespace", needs=[veth_inside])
def peer_with_parent(ev):
    net, end = _network(ev), _end(ev)
    name = shown(end["name"])
    if end["peer_netnsid"] is None or end["peer_netnsid"] != net.parent_nsid:
        raise Failure(f"{name}'s peer is not in the parent's network namespace", (
            "A veth pair is a cable with two ends: one in the child's network namespace, "
            "the other in the parent's, where it stays."))
    return f"{name}'s peer is in the parent's network namespace"


@check("a ping from the parent's side crosses to it", needs=[peer_with_parent])
def packet_crosses(ev):
    end, answered = _end(ev), _network(ev).answered
    if answered:
        return f"{answered[0]} answered a ping sent from the parent's network namespace"
    raise Failure(f"{' '.join(end['ipv4'])} did not answer a ping sent from the parent's", (
        "The parent's end needs an address in the same network as the child's "
        "(10.11.0.1/24 beside 10.11.0.2/24), and both ends must be up."))


# -- the host and what is left running --------------------------------------------------

HOST_PARTS = ("hostname", "mounts", "queues", "links", "proc")


def _host_kept(ev, parts=HOST_PARTS):
    changes = [(moment, [key for key in parts if key in host and ev.before[key] != host[key]])
               for moment, host in _moments(ev)]
    changes = [(moment, keys) for moment, keys in changes if keys]
    if changes:
        changed = list(dict.fromkeys(key for _, keys in changes for key in keys))
        raise Failure(f"changed: {_names(changed)}{_when(changes[0][0], changes)}", (
            "The host's hostname, mounts, queues, links or /proc changed: whatever the child "
            "changes must happen in namespaces of its own."))
    return "unchanged"


@check("leaves the host unchanged", needs_outcome=True)
def host_unchanged(ev):
    return _host_kept(ev)


# 11's end of the pair is the host's for as long as the child's network
# namespace lives, and the kernel frees that namespace a moment after the
# run: when, is timing, so the host's links are left out of 11's.
host_unchanged_but_its_links = Check(
    host_unchanged.title, lambda ev: _host_kept(ev, tuple(p for p in HOST_PARTS if p != "links")),
    needs_outcome=True)


@check("leaves no process running", needs=[waits], needs_outcome=True)
def nothing_left(ev):
    left = ev.leftover
    if left:
        raise Failure(f"{len(left)} still running: {_names(a[:30] for a in left[:3])}",
                      "Processes outlived the program: the parent waits for its child, and "
                      "the command's own children end with it.")
    return "none"


# Beyond Part 1 the grader kills the parent: what then runs on is judged by
# dies_with_parent alone.
nothing_left_beyond = Check(nothing_left.title, nothing_left.judge,
                            (waits, dies_with_parent), needs_outcome=True)

OUTCOMES = {
    "00": [sees_the_host],
    "01": [only_lo_down],
    "02": [tmpfs_inside, tmpfs_not_on_host, no_jail],
    "03": [myhostname, host_hostname_kept],
    "04": [no_queue],
    "05": [pid1_alone, host_proc_kept],
    "06": [id_nobody, ls_nobody],
    # isolate's own: a UTS namespace (the hostname is 03's lesson), the OK, the death signal.
    "08": [starts_after_ok, dies_with_parent],
    "09": [root_inside, setgroups_denied, starts_after_ok, dies_with_parent, maps_before_start],
    "10": [root_of_its_own, old_root_gone, pid1_alone, starts_after_ok, dies_with_parent],
}
OUTCOMES["11"] = OUTCOMES["10"] + [veth_inside, peer_with_parent, packet_crosses]
OUTCOMES["07"] = [c for step in ("01", "02", "03", "04", "05", "06") for c in OUTCOMES[step]]

RAN, WAITS, HOST, NO_PROCESS = ran.title, waits.title, host_unchanged.title, nothing_left.title
TMPFS_IN, MYHOSTNAME, PID1 = tmpfs_inside.title, myhostname.title, pid1_alone.title
STARTS_AFTER_OK, DIES, ROOT_INSIDE = starts_after_ok.title, dies_with_parent.title, root_inside.title
OWN_ROOT, OLD_ROOT_GONE = root_of_its_own.title, old_root_gone.title
VETH_INSIDE, PEER, CROSSES = veth_inside.title, peer_with_parent.title, packet_crosses.title


def checks_for(step):
    """Every check of a step, in the order reports list them."""
    last = nothing_left_beyond if step in BEYOND_PART_1 else nothing_left
    host = host_unchanged_but_its_links if step == "11" else host_unchanged
    return [ran, waits, NAMESPACE_CHECK[step], *OUTCOMES[step], host, last]


def needs_of(step):
    """{Check: the Checks it needs} for a step: its own needs, the step's
    namespaces for an outcome, every outcome for a manner, and for the host
    as a whole every check that judges one part of it (one cause, one
    failure)."""
    checks = checks_for(step)
    outcome = [c for c in checks if c.outcome]
    out = {}
    for c in checks:
        wanted = list(c.needs)
        if c.outcome and c is not NAMESPACE_CHECK[step]:
            wanted.append(NAMESPACE_CHECK[step])
        if c.needs_outcome:
            wanted += outcome
        if c.title == HOST:
            wanted += [other for other in checks if other.watches_host]
        out[c] = [n for n in dict.fromkeys(wanted) if n is not c and n in checks]
    return out


@dataclass
class Verdict:
    status: str           # "passed", "failed" or "skipped"
    seen: str
    hint: str = ""


def judged(c, ev):
    """One check's own Verdict, whatever its needs say."""
    try:
        return Verdict("passed", c(ev))
    except Failure as failure:
        return Verdict("failed", failure.seen, failure.hint)


def verdicts(step, ev):
    """{title: Verdict} for every check of a step, in order."""
    checks = checks_for(step)
    first = judged(ran, ev)
    if first.status != "passed":
        return {ran.title: first,
                **{c.title: Verdict("skipped", SKIPPED + ran.title) for c in checks[1:]}}
    raw = {c: judged(c, ev) for c in checks}
    needs = needs_of(step)

    def cause(c):
        """The check that failed at the root of c's needs, or None."""
        for need in needs[c]:
            if raw[need].status != "passed":
                return cause(need) or need
            deeper = cause(need)
            if deeper:
                return deeper
        return None

    out = {}
    for c in checks:
        root = cause(c)
        out[c.title] = Verdict("skipped", SKIPPED + root.title) if root else raw[c]
    if out[ran.title].status == "skipped":
        # Skipped, it earns nothing; but a command that visibly ran is not
        # to read as one that never did.
        out[ran.title].seen += ON_ITS_OWN + raw[ran].seen
    return out


def skipped_for(seen):
    """The title of the check a skipped check's seen text says it needs."""
    return seen[len(SKIPPED):].split(ON_ITS_OWN)[0] if seen.startswith(SKIPPED) else None
