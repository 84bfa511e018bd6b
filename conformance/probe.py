"""What the grader asks a program to run, and how it reads the answer.

Every probe of a step goes into one command, `sh -c SCRIPT`, so a program is
started once per step however many checks the step has. Each section of the
output starts with a marker carrying a token made fresh for the run: a
program that ignores its arguments and prints what it hopes the grader wants
cannot know it.
"""
import re
from dataclasses import dataclass, field

from .catalog import NAMESPACES

# (section, command): what the command inside sees.
PROBES = (
    ("ns", "ls -l /proc/self/ns/"),
    ("links", "ip -o link"),
    ("mounts", "cat /proc/self/mounts"),
    ("hostname", "hostname"),
    ("queues", "ipcs -q"),
    ("ps", "ps -eo pid=,args="),
    ("id", "id"),
    ("ls", "ls -la /"),
)


def script(token):
    lines = [f'echo "@@nskit {token} {name}"; {command} 2>&1' for name, command in PROBES]
    return "\n".join(lines + [f'echo "@@nskit {token} end"'])


def command(token):
    """The CMD [ARGS...] a program under test is given."""
    return ["sh", "-c", script(token)]


@dataclass
class View:
    """The world as the command inside saw it."""
    ns: dict = field(default_factory=dict)        # name -> "net:[4026...]"
    links: dict = field(default_factory=dict)     # name -> "UP" / "DOWN"
    mounts: list = field(default_factory=list)    # (source, target, fstype)
    hostname: str = ""
    queues: list = field(default_factory=list)    # keys, as ints
    ps: list = field(default_factory=list)        # (pid, args)
    id: str = ""
    ls: list = field(default_factory=list)        # (name, owner, group)


def sections(output, token):
    """The marked sections of a run's output, by name; absent when not printed."""
    found, current = {}, None
    marker = f"@@nskit {token} "
    for line in output.splitlines():
        if line.startswith(marker):
            current = line[len(marker):].strip()
            found[current] = []
        elif current is not None:
            found[current].append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def parse(output, token):
    """A View, or None when the command's marked output never came back whole."""
    raw = sections(output, token)
    if "end" not in raw or any(name not in raw for name, _ in PROBES):
        return None
    view = View(hostname=raw["hostname"].strip(), id=raw["id"].strip())
    for match in re.finditer(r"(\w+) -> (\w+:\[\d+\])", raw["ns"]):
        if match.group(1) in NAMESPACES:
            view.ns[match.group(1)] = match.group(2)
    for match in re.finditer(r"^\d+: ([^:@]+)(?:@\S+)?: <([^>]*)>", raw["links"], re.M):
        view.links[match.group(1)] = "UP" if "UP" in match.group(2).split(",") else "DOWN"
    for line in raw["mounts"].splitlines():
        parts = line.split()
        if len(parts) >= 3:
            view.mounts.append((parts[0], parts[1], parts[2]))
    view.queues = [int(m, 16) for m in re.findall(r"^0x([0-9a-f]+)\s", raw["queues"], re.M)]
    for line in raw["ps"].splitlines():
        pid, _, args = line.strip().partition(" ")
        if pid.isdigit():
            view.ps.append((int(pid), args.strip()))
    for line in raw["ls"].splitlines()[1:]:
        parts = line.split(None, 8)
        if len(parts) == 9:
            view.ls.append((parts[8].split(" -> ")[0], parts[2], parts[3]))
    return view
