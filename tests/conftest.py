"""pytest's hooks for the kit's tests: the `root` marker, and the guard that
every test leaves the machine as it found it. What tests share is in
helpers.py."""
import os
import time
from pathlib import Path

import pytest

try:  # where the split sandbox keeps the grader's uids
    from conformance.ids import RANGE, unused_range
except ImportError:  # the sandbox in one module
    from conformance.sandbox import RANGE, unused_range
from helpers import IS_ROOT

# Prints from a clone child must survive a pipe without this crutch.
os.environ.pop("PYTHONUNBUFFERED", None)

# The hostnames the steps and the frames set; the machine must never get one.
KIT_HOSTNAMES = {"myhostname", "nskit-frame"}
# The queue key of the grader's own tests (0x6e736b, "nsk").
KIT_QUEUE_KEYS = {0x6E736B}
KIT_UIDS = range(unused_range(), unused_range() + RANGE)


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("root")
    if marker and not IS_ROOT:
        why = f": {marker.args[0]}" if marker.args else ""
        pytest.skip(f"needs the machine's root{why} (run it with sudo)")


def _queues():
    # key msqid perms cbytes qnum lspid lrpid uid ...
    rows = [row.split() for row in Path("/proc/sysvipc/msg").read_text().splitlines()[1:]]
    return sorted((int(r[0]), int(r[7])) for r in rows
                  if int(r[0]) in KIT_QUEUE_KEYS or int(r[7]) in KIT_UIDS)


def _orphans():
    """Running processes of the grader's uid range that nobody waits for any
    more (a zombie is already dead: reaping it is the machine's init's job)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
            uid = int(fields["Uid"].split()[0])
            if (uid in KIT_UIDS and fields["PPid"].strip() == "1"
                    and not fields["State"].strip().startswith("Z")):
                command = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"pid {status.parent.name}, uid {uid}: "
                             f"{command.decode(errors='replace').strip()[:120]}")
        except (OSError, ValueError):
            continue  # gone meanwhile
    return sorted(found)


def _kits_mount(line):
    # The kit names every filesystem it mounts nskit...; a folder of someone
    # else's that is merely called so (a daemon's data root) is not the kit's.
    source, target = line.split()[:2]
    return source.startswith("nskit") or target == "/mytmp" or target.startswith("/mytmp/")


def machine_traces():
    """What the kit could leave on the machine, and nothing else: other work
    on it (containers, other queues and links) may change the rest meanwhile,
    and a parallel worker's tests run in frames of their own."""
    # /proc/net is the reader's network namespace (/sys/class/net is not).
    links = [line.split(":")[0].strip() for line in
             Path("/proc/net/dev").read_text().splitlines()[2:]]
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    hostname = os.uname().nodename
    shm = [p.name for p in Path("/dev/shm").iterdir() if "nskit" in p.name]
    return {
        "links named nskit": sorted(link for link in links if "nskit" in link),
        "mounts named nskit or on /mytmp": sorted(m for m in mounts if _kits_mount(m)),
        "the kit's hostnames": hostname if hostname in KIT_HOSTNAMES else None,
        "/mytmp": os.path.lexists("/mytmp"),
        "queues of the kit's keys or uids": _queues(),
        "files named nskit in /dev/shm": sorted(shm),
        "orphans of the grader's uid range": _orphans(),
    }


@pytest.fixture(scope="session")
def machine_at_start():
    return machine_traces()


def left_behind(before, now):
    """What is on the machine now that was not at the start: new entries of
    each list, or a value changed (a /mytmp made, or removed)."""
    changed = {}
    for what, value in now.items():
        if isinstance(value, list):
            new = [entry for entry in value if entry not in before[what]]
            if new:
                changed[what] = new
        elif value != before[what]:
            changed[what] = (before[what], value)
    return changed


@pytest.fixture(autouse=True)
def machine_unchanged(machine_at_start):
    """After each test: nothing of the kit's is left on the machine. A run's
    processes may take a moment to die with their grader: a short grace."""
    yield
    deadline = time.monotonic() + 3
    while (changed := left_behind(machine_at_start, machine_traces())) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not changed, f"the test left this on the machine: {changed}"
