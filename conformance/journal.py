"""What the grader learns about a run, as the checks read it: the kernel's
facts about the witness, how it started and ended. Names are bytes as the
kernel gave them (procfs.shown turns them into text for a report).

Plain data only: the checks import this module, never the code that reads
/proc, answers seccomp or ptraces (observe, seccomp, ptrace, watch).
"""
from dataclasses import dataclass, field


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
    # Facts for further checks go here, read in observe.observe.


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
