"""The steps do what the article shows, and nothing leaks out of them.

Each step runs once in a throwaway frame with a probe that prints what every
article command shows inside (`ip a`, mounts, `ls /`, `hostname`, `ipcs -q`,
`id`, `ls -la`, the namespace ids, and last `ps aux`), between two probes of
the frame itself. The outcome checks are small functions over those prints,
and every one of them is also shown to reject a wrong program.

Steps 02 and 07 create /mytmp, so the frame runs on a root of its own in
memory (helpers' in_frame with own_root): the directory is made there, never on the
machine's disk.
"""
import re
import shlex
from functools import cache
from pathlib import Path

import pytest
import sh

from conformance.catalog import ALL_STEPS, NEW_NAMESPACES, STEP_NAMES, file_name
from helpers import PYTHON, ROOT, flag_names, in_frame, sections, step_path

NUMBERS = list(STEP_NAMES)

def in_root(script, rshared=False, keep=()):
    """Run a bash script as root in a frame on a root of its own in memory
    (keeping the folders in keep); with rshared, that / propagates mounts
    the way a systemd host's does."""
    return in_frame(script, rshared=rshared, own_root=True, keep=keep)


def py(path):
    return f"{shlex.quote(PYTHON)} {shlex.quote(str(path))}"


NS_LOOP = ('for f in /proc/self/ns/*; do '
           'echo "${f##*/} $(readlink $f)"; done')
INSIDE = "; ".join([
    "echo @@inside.ip", "ip a",
    "echo @@inside.mounts", "cat /proc/self/mounts",
    "echo @@inside.ls", "ls /",
    "echo @@inside.hostname", "hostname",
    "echo @@inside.ipcs", "ipcs -q",
    "echo @@inside.id", "id",
    "echo @@inside.lsla", "ls -la",
    "echo @@inside.ns", NS_LOOP,
    "echo @@inside.ps", "exec ps aux",
])


def frame_probe(when):
    return "; ".join([
        f"echo @@{when}.hostname", "hostname",
        f"echo @@{when}.links", "ip -o link",
        f"echo @@{when}.ipcs", "ipcs -q",
        f"echo @@{when}.mounts", "cat /proc/self/mounts",
        f"echo @@{when}.ls", "ls /",
        f"echo @@{when}.init", "tr '\\0' ' ' </proc/1/cmdline; echo",
        f"echo @@{when}.ns", NS_LOOP,
    ])


def observe(path, rshared=False):
    """The frame before, the probe inside the step at path, the frame after."""
    script = "\n".join([
        "hostname nskit-frame && ipcmk -Q >/dev/null &&"
        " ip link add nskit0 type veth peer name nskit1 || exit 99",
        frame_probe("before"),
        f"{py(path)} sh -c {shlex.quote(INSIDE)}",
        'code=$?; echo @@code; echo $code',
        frame_probe("after"),
    ])
    run = in_root(script, rshared, keep=[Path(path).parent])
    assert run.code == 0, run
    seen = sections(run.out)
    seen["err"] = run.err
    return seen


# One worker runs this module, so that each run below (seen, runs) is made
# once a session, however many checks read it.
pytestmark = pytest.mark.xdist_group("test_steps-runs")


@cache
def seen(nn):
    return observe(step_path(nn))


# What a program shows, parsed.

def link_names(text):
    return [m.group(1) for m in re.finditer(r"^\d+: ([^:@\s]+)", text, re.M)]


def queues(text):
    return [line.split()[:2] for line in text.splitlines()
            if line.startswith("0x")]


def mounts_at(text, where):
    return [line.split() for line in text.splitlines()
            if line.split()[1:2] == [where]]


def namespaces(text):
    ids = dict(line.split() for line in text.splitlines())
    return {k: v for k, v in ids.items() if not k.endswith("_for_children")}


def processes(text):
    return [line.split(None, 10) for line in text.splitlines()[1:]]


# The outcome of each step, as the article describes it.

def ran(o):
    assert o["code"] == "0", o
    assert o["err"] == "", o["err"]


def check_00(o):
    ran(o)
    assert o["inside.hostname"] == o["before.hostname"] == "nskit-frame"
    assert link_names(o["inside.ip"]) == link_names(o["before.links"])
    assert queues(o["inside.ipcs"]) == queues(o["before.ipcs"]) != []
    assert namespaces(o["inside.ns"]) == namespaces(o["before.ns"])
    assert o["inside.id"].startswith("uid=0(root) gid=0(root)")


def check_01(o):
    ran(o)
    assert link_names(o["inside.ip"]) == ["lo"], o["inside.ip"]
    assert "state DOWN" in o["inside.ip"].splitlines()[0]
    assert {"lo", "nskit0", "nskit1"} <= set(link_names(o["before.links"]))
    assert o["after.links"] == o["before.links"]


def check_02(o):
    ran(o)
    assert ["none", "/mytmp", "tmpfs"] in [
        m[:3] for m in mounts_at(o["inside.mounts"], "/mytmp")]
    assert mounts_at(o["after.mounts"], "/mytmp") == []
    assert o["after.mounts"] == o["before.mounts"]
    assert "mytmp" not in o["before.ls"].split()
    assert "mytmp" in o["after.ls"].split()
    assert o["inside.ls"] == o["after.ls"]


def check_03(o):
    ran(o)
    assert o["inside.hostname"] == "myhostname"
    assert o["after.hostname"] == o["before.hostname"] == "nskit-frame"


def check_04(o):
    ran(o)
    made = queues(o["before.ipcs"])
    assert len(made) == 1 and queues(o["after.ipcs"]) == made
    assert queues(o["inside.ipcs"]) == [], o["inside.ipcs"]


def check_05(o):
    ran(o)
    ps = processes(o["inside.ps"])
    assert len(ps) == 1, o["inside.ps"]
    assert ps[0][1] == "1" and ps[0][10] == "ps aux"
    assert o["after.init"] == o["before.init"] != ""
    assert o["after.mounts"] == o["before.mounts"]


def check_06(o):
    ran(o)
    assert o["inside.id"].startswith("uid=65534(nobody) gid=65534(nogroup)")
    owners = [line.split()[2:4] for line in o["inside.lsla"].splitlines()[1:]]
    assert owners and all(x == ["nobody", "nogroup"] for x in owners), owners


def check_07(o):
    for check in (check_01, check_02, check_03, check_04, check_05, check_06):
        check(o)


CHECKS = {nn: globals()[f"check_{nn}"] for nn in NUMBERS}


def check_namespaces(o, new):
    before, inside = namespaces(o["before.ns"]), namespaces(o["inside.ns"])
    assert set(before) >= {"cgroup", "ipc", "mnt", "net", "pid", "user", "uts"}
    changed = {k for k in before if inside[k] != before[k]}
    assert changed == new, f"new namespaces: {sorted(changed)}, not {sorted(new)}"


@pytest.mark.parametrize("nn", NUMBERS)
def test_step_shows_what_the_article_shows(nn):
    CHECKS[nn](seen(nn))


@pytest.mark.parametrize("nn", NUMBERS)
def test_step_differs_from_the_frame_in_its_namespaces_only(nn):
    check_namespaces(seen(nn), NEW_NAMESPACES[nn])


WRONG_RUNS = ([(nn, "00") for nn in NUMBERS[1:]]     # 00 under each name
              + [("00", nn) for nn in NUMBERS[1:]]   # each step passed off as 00
              + [("07", nn) for nn in NUMBERS[1:7]])  # one namespace is not all


@pytest.mark.parametrize("check, program", WRONG_RUNS)
def test_outcome_check_rejects_the_wrong_program(check, program):
    o = seen(program)
    ran(o)  # the wrong program ran as well as the right one: the outcome differs
    with pytest.raises(AssertionError):
        CHECKS[check](o)


@pytest.mark.parametrize("check, program", [
    (c, p) for c in NUMBERS for p in NUMBERS if c != p])
def test_namespace_check_rejects_every_other_step(check, program):
    o = seen(program)
    with pytest.raises(AssertionError, match="new namespaces: "):
        check_namespaces(o, NEW_NAMESPACES[check])


# Wrong programs made from the real ones, in tmp_path.

def without(nn, tmp_path, *blocks):
    text = step_path(nn).read_text()
    for block in blocks:
        assert text.count(block) == 1, block
        text = text.replace(block, "")
    path = tmp_path / step_path(nn).name
    path.write_text(text)
    return path


PRIVATE = '''\
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        die(failed("mount --make-rprivate /"))
'''
REMOUNT = '''\
    if libc.umount2(b"/proc", MNT_DETACH) != 0:
        die(failed("umount /proc"))
    if libc.mount(b"proc", b"/proc", b"proc", 0, b"") != 0:
        die(failed("mount proc on /proc"))
'''


def test_05_without_the_proc_remount_still_sees_the_frame(tmp_path):
    with pytest.raises(AssertionError, match="ps aux"):
        check_05(observe(without("05", tmp_path, REMOUNT)))


def check_frame_mounts_kept(o):
    assert o["after.mounts"] == o["before.mounts"], (
        f"the frame's mounts changed:\n{o['before.mounts']}\n---\n"
        f"{o['after.mounts']}")


@pytest.mark.parametrize("nn", ["02", "05", "07"])
def test_mounts_stay_inside_when_the_root_is_shared(nn):
    o = observe(step_path(nn), rshared=True)
    check_frame_mounts_kept(o)
    CHECKS[nn](o)


@pytest.mark.parametrize("nn", ["02", "05"])
def test_shared_root_check_rejects_a_step_without_the_private_mount(
        nn, tmp_path):
    o = observe(without(nn, tmp_path, PRIVATE), rshared=True)
    with pytest.raises(AssertionError, match="frame's mounts changed"):
        check_frame_mounts_kept(o)


# Messages, exit status, pipes: every step in one frame per kind of run.

def each_step(command, numbers=NUMBERS, prefix=""):
    """Bash that runs `step COMMAND` for each step, printing its output and
    exit status under @@out.NN and @@code.NN."""
    return "\n".join(
        f'echo @@out.{nn}; {prefix}{py(step_path(nn))} {command}; '
        f'code=${{PIPESTATUS[0]}}; echo @@code.{nn}; echo $code'
        for nn in numbers)


@cache
def runs(command, prefix="", numbers=tuple(NUMBERS)):
    run = in_root(each_step(command, numbers, prefix))
    assert run.code == 0, run
    return sections(run.out)


def check_message(out, code, expected_code, *words):
    assert code == str(expected_code), f"exit {code}, not {expected_code}: {out}"
    assert "Traceback" not in out, out
    assert len(out.splitlines()) == 1, f"not one line: {out}"
    for word in words:
        assert word in out, out


@pytest.mark.parametrize("nn", NUMBERS)
def test_no_command_prints_usage_and_exits_2(nn):
    r = runs("2>&1")
    check_message(r[f"out.{nn}"], r[f"code.{nn}"], 2,
                  f"usage: {step_path(nn).name} CMD [ARGS...]")


@pytest.mark.parametrize("nn", NUMBERS)
def test_missing_command_is_one_line_and_exit_127(nn):
    r = runs("nskit-no-such-command 2>&1")
    check_message(r[f"out.{nn}"], r[f"code.{nn}"], 127,
                  "nskit-no-such-command: command not found")


@pytest.mark.parametrize("nn", NUMBERS)
def test_exit_status_is_the_commands_and_prints_survive_a_pipe(nn):
    r = runs("sh -c 'echo hi; exit 3' | cat")
    assert r[f"out.{nn}"] == "hi"
    assert r[f"code.{nn}"] == "3"


NO_SYS_ADMIN = "setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin "
NEED_SYS_ADMIN = ("01", "02", "03", "04", "05")


def no_sys_admin():
    return runs("true 2>&1", prefix=NO_SYS_ADMIN)


@pytest.mark.parametrize("nn", NEED_SYS_ADMIN)
def test_without_cap_sys_admin_one_sentence_says_what_to_do(nn):
    r = no_sys_admin()
    check_message(r[f"out.{nn}"], r[f"code.{nn}"], 1, "sudo", "make shell")


@pytest.mark.parametrize("nn", ["00", "06", "07"])
def test_without_cap_sys_admin_a_new_user_namespace_is_still_allowed(nn):
    r = no_sys_admin()
    assert (r[f"out.{nn}"], r[f"code.{nn}"]) == ("", "0")


def test_cap_check_rejects_a_program_that_needs_no_caps():
    r = no_sys_admin()
    with pytest.raises(AssertionError, match="exit 0, not 1"):
        check_message(r["out.00"], r["code.00"], 1, "sudo", "make shell")


def test_an_ordinary_user_is_asked_to_make_mytmp_with_sudo():
    script = "\n".join(
        f"echo @@out.{nn}; {py(step_path(nn))} true 2>&1; code=$?; "
        f"echo @@code.{nn}; echo $code" for nn in ("02", "07"))
    r = sections(in_frame(script, user=65534, own_root=True).out)
    for nn in ("02", "07"):
        check_message(r[f"out.{nn}"], r[f"code.{nn}"], 1, "sudo mkdir /mytmp")


# The files themselves.

def changed_lines(a, b):
    diff = sh.diff(str(a), str(b), _ok_code=[0, 1])
    return [line for line in str(diff).splitlines() if line[:1] in "<>"]


def check_small_change(nn, path):
    changes = changed_lines(step_path("00"), path)
    assert len(changes) <= 14, f"{len(changes)} lines changed:\n" + "\n".join(changes)
    added = [line for line in changes if line[0] == ">"]
    for flag in flag_names(nn):
        assert any(flag in line for line in added), f"no added line names {flag}"


# 07 is every change at once, more than a small one.
@pytest.mark.parametrize("nn", NUMBERS[1:-1])
def test_step_is_the_skeleton_plus_its_flag(nn):
    check_small_change(nn, step_path(nn))


@pytest.mark.parametrize("nn, program, says", [
    ("01", "00", "no added line names CLONE_NEWNET"),
    ("06", "07", r"^\d+ lines changed"),
])
def test_small_change_check_rejects(nn, program, says):
    with pytest.raises(AssertionError, match=says):
        check_small_change(nn, step_path(program))


def check_same_bytes(a, b):
    assert Path(a).read_bytes() == Path(b).read_bytes(), f"{a} and {b} differ"


def test_skeleton_is_step_00():
    check_same_bytes(ROOT / "skeleton" / "skeleton.py", step_path("00"))


def test_skeleton_check_rejects_a_step():
    with pytest.raises(AssertionError, match="differ"):
        check_same_bytes(ROOT / "skeleton" / "skeleton.py", step_path("01"))


def check_step_files(names):
    names = sorted(names)
    assert names == [f"{file_name(nn)}.py" for nn in ALL_STEPS], f"not the steps: {names}"


def test_exactly_the_steps_of_the_catalog():
    check_step_files(p.name for p in (ROOT / "steps").glob("*.py"))


def test_step_files_check_rejects_an_extra_step():
    with pytest.raises(AssertionError, match="not the steps: .*10_cgroup.py"):
        check_step_files([p.name for p in (ROOT / "steps").glob("*.py")]
                         + ["10_cgroup.py"])

