"""The guard every test runs on teardown (helpers.machine_unchanged) sees
what the kit could leave on the machine: shown in a frame, whose namespaces
stand in for the machine's."""
from shlex import quote

import pytest

from helpers import PYTHON, in_frame

LEAVE = r"""
import ctypes, os, subprocess, sys
sys.path[:0] = ["tests", "."]
import helpers
before = helpers.machine_traces()
subprocess.run("ip link add nskit9 type veth peer name other9 && "
               "mount -t tmpfs nskit-left /mnt && mkdir /mytmp && "
               "mount -t tmpfs none /mytmp", shell=True, check=True)
assert ctypes.CDLL(None).msgget(0x6E736B, 0o1000 | 0o600) >= 0
print(sorted(helpers.left_behind(before, helpers.machine_traces())))
print(helpers.left_behind(before, before))
"""


def test_the_guard_sees_links_mounts_mytmp_and_queues_of_the_kit():
    result = in_frame(f"{quote(PYTHON)} -c {quote(LEAVE)}", own_root=True)
    assert result.code == 0, result
    seen, nothing = result.out.splitlines()
    assert seen == str(sorted(["links named nskit", "mounts named nskit or on /mytmp", "/mytmp",
                               "queues of the kit's keys or uids"])), result
    assert nothing == "{}"


ORPHAN = r"""
import subprocess, sys, time
sys.path[:0] = ["tests", "."]
import helpers
before = helpers.machine_traces()
uid = helpers.KIT_UIDS.start
subprocess.run(f"(setpriv --reuid {uid} --regid {uid} --clear-groups sleep 30 &)", shell=True)
time.sleep(0.5)
print(sorted(helpers.left_behind(before, helpers.machine_traces())))
"""


@pytest.mark.root("only the machine's root may become a uid of the grader's range")
def test_the_guard_sees_an_orphan_of_the_graders_uid_range():
    # The frame's bash is PID 1 of its PID namespace: the orphan's new parent.
    result = in_frame(f"{quote(PYTHON)} -c {quote(ORPHAN)}")
    assert result.code == 0, result
    assert result.out.strip() == str(["orphans of the grader's uid range"]), result
