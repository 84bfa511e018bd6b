"""What the grader learns about a run, as the checks read it: the kernel's
facts about the witness, how it started and ended. Names are bytes as the
kernel gave them (shown() turns them into text for a report).

Plain data only: the checks import this module, never the code that reads
/proc, answers seccomp or ptraces (observe, seccomp, ptrace, watch).
"""
from dataclasses import dataclass, field

from . import text


def shown(name):
    """Bytes as text for a report: UTF-8 where it is, \\xff where it is not,
    its lines kept (text.shown)."""
    return text.shown(name, lines=True)


OVERFLOW_ID = 65534  # what an id without a mapping shows as (kernel.overflowuid)


def mapped(id_map, outside):
    """What an id of the machine is called inside a user namespace."""
    for first, lower, count in id_map:
        if lower <= outside < lower + count:
            return first + outside - lower
    return OVERFLOW_ID


@dataclass(frozen=True)
class Mount:
    """One line of a mountinfo."""
    device: str       # major:minor
    point: bytes
    fstype: bytes
    shared: bool = False  # in a peer group ("shared:N"): mounts and unmounts propagate


@dataclass
class ProcView:
    """What is on the witness's /proc: "own" (a proc of its own PID
    namespace), "other" (another proc), "none" (no proc there) or
    "unreadable"; and the processes ps would list from it."""
    kind: str
    fstype: bytes = None
    pids: list = field(default_factory=list)
    count: int = 0
    why: str = None


@dataclass
class Facts:
    """The kernel's facts about one witness process, read from outside the run."""
    ns: dict                 # namespace kind -> "uts:[4026531838]"
    nspid: list              # its pid in each PID namespace, the innermost last
    uid: int                 # on the machine
    gid: int
    uid_map: list            # [(inside, outside, count)]
    gid_map: list
    mounts: list             # [Mount] of its mount namespace
    shared: list             # the mount points of its shared mounts (Mount.shared)
    root: tuple              # (device, inode) of its /
    root_entries: list       # [(name, uid, gid)] of what is in its /
    proc: ProcView
    hostname: bytes          # read in its UTS namespace
    links: dict              # {name: "UP" or "DOWN"}, read in its network namespace
    queues: list             # SysV message queue keys, read in its IPC namespace
    # Beyond Part 1: its parent's ids on the machine, and its /proc/PID/setgroups.
    parent: dict = None
    setgroups: str = None
    # 10 and 11: its mount namespace from that namespace's own root (a chroot
    # shows only what is below it).
    namespace_mounts: list = None
    # 11: its network (observe.pivot_view).
    network: "Network" = None
    # Facts for further checks go here, read in observe.observe.


@dataclass
class Network:
    """11: the links of the witness's network namespace ({name, up, ipv4,
    peer, peer_netnsid}, netlink.links), the links of its parent's, the id
    the witness's namespace knows its parent's by (None: by none), and the
    addresses of its links that answered a ping from the parent's side."""
    links: list
    parent_links: list
    parent_nsid: int = None
    answered: list = field(default_factory=list)


@dataclass
class Start:
    """The witness at its execve, beyond Part 1: whether its parent was still
    held at the clone that made it, and its user namespace's maps then."""
    early: bool
    uid_map: list = field(default_factory=list)
    gid_map: list = field(default_factory=list)


@dataclass
class Death:
    """The witness when its parent was killed, beyond Part 1."""
    died: bool
    seen: str


@dataclass
class HostView:
    """Where the run's host is: its namespaces and its / (device, inode)."""
    ns: dict
    root: tuple


# -- the journal: what happened in a run, in the order the grader learnt it ----------

@dataclass
class Exec:
    """An execve, held at its seccomp notification: who, what, and where."""
    pid: int
    ppid: int
    path: bytes
    argv: list               # bytes each; None where they could not be read
    ns: dict                 # the caller's namespaces (an execve keeps them)
    # What the file it runs is: "witness" (the command it was given),
    # "shell" (the witness's shell otherwise: /nskit/sh, or a script of it),
    # "script" (/nskit/ready or /nskit/done, run by a copy of the witness),
    # or None: anything else.
    runs: str = None
    file: tuple = None       # (device, inode) of the file it names, as the caller sees it


@dataclass
class Clone:
    """A clone, fork or vfork, at its seccomp notification (beyond Part 1)."""
    parent: int
    flags: int = None        # clone's flags, exit signal in the low byte; None for clone3
    child: int = None        # once it exists (the followed parent's own)


@dataclass
class Follow:
    """Beyond Part 1: the first process that clones, followed from then on (ptrace.Trace)."""
    pid: int


@dataclass
class Blocked:
    """A child of the followed parent asleep, while its parent was held (see
    ptrace.Trace), and on what: the call, and what the fd it reads names."""
    pid: int
    call: str                # "read", "nanosleep", ... or "running" (not asleep)
    fd: int = None
    target: bytes = None     # b"pipe:[123]", b"socket:[45]"
    parent_holds: bool = False  # the followed parent holds the pipe's write end (the socket's peer)


@dataclass
class Write:
    """The followed parent about to write (write, writev, send...) to an fd."""
    pid: int
    fd: int
    target: bytes
    size: int


@dataclass
class Wait:
    """The parent of the observed witness found waiting for it (or ended)."""
    pid: int
    waited: bool


@dataclass
class Exit:
    """A process's exit_group, at its seccomp notification."""
    pid: int


@dataclass
class HostSnapshot:
    """The run's host at one moment: what the checks compare with its first."""
    moment: str              # "the command observed", ...
    hostname: bytes
    mounts: bytes            # its mountinfo
    queues: list
    links: dict


@dataclass
class Observation:
    """The witness observed: its facts, and the run's host at that moment."""
    pid: int
    facts: Facts
    host: HostSnapshot = None


@dataclass
class Journal:
    """Every event of a run, in order. A run may make any number of
    processes: past LIMIT events, only those that may change a verdict
    (copies of the command, observations) are kept."""
    events: list = field(default_factory=list)
    LIMIT = 4096

    def add(self, event):
        if len(self.events) < self.LIMIT or (
                isinstance(event, Exec) and event.runs in ("witness", "shell")) \
                or isinstance(event, Observation):
            self.events.append(event)
        return event

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class Watched:
    """What the grader saw of a run's command (watch.Watch.result): its
    facts, where the run's host is, how the command started and ended, and
    the journal."""
    facts: Facts = None
    host: HostView = None
    waited: bool = None      # its parent waited for it (False: the parent ended first)
    exit_signal: int = None  # of a child that became the command, read before its exec
    start: Start = None      # beyond Part 1
    death: Death = None      # beyond Part 1
    trace_error: str = None
    error: str = None        # why the command could not be observed
    # The run's host when the command was observed, as runinit.snapshot
    # gives it (names escaped), to compare with the first snapshot.
    moments: list = field(default_factory=list)
    journal: Journal = None
