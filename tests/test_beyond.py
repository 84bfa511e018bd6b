"""Steps 08 and 09, beyond Part 1: what they must do, seen from outside.

- 08 and 09: the command starts only after the parent has written "OK"
  (the parent is held before each of its writes, and the command's start is
  timed against them); the command dies when its parent is killed, even a
  command that ignores SIGTERM; the command runs at all.
- 09: as an ordinary user, no sudo: `id` is root inside, the uid map is
  "0 <uid> 1", files the user owns are root's inside; the maps are there
  when the command starts.

Every check is also shown to fail a wrong program of helpers.WRONG_BEYOND.
Everything runs in a throwaway frame (helpers.in_frame).
"""
import ast
import difflib
import re
import shlex

import pytest

from helpers import (HELD, PYTHON, STEPS_DIR, grade, in_frame, readable_folder,
                     step_or_wrong, step_path)

from conformance.catalog import BEYOND_PART_1, STEP_NAMES  # noqa: E402

WRONG = None  # the folder of wrong programs (wrong_programs)
USER = 65534
# The command: when it started, and the uid map it found then.
START = ("import time; t = time.monotonic(); "
         "print('@@start', repr(t), open('/proc/self/uid_map').read().split(), flush=True)")

# Start the program with a command that ignores SIGTERM, kill the program
# (the command's parent) with SIGKILL, and say whether the command outlived it.
DEATH = r'''
{prog} sh -c 'trap "" TERM; exec sleep 30' &
P=$!
for i in $(seq 200); do C=$(pgrep -P $P -x sleep) && break; sleep 0.05; done
[ -n "$C" ] || {{ echo "@@nostart"; exit 0; }}
kill -KILL $P; wait $P 2>/dev/null
for i in $(seq 30); do
    s=$(awk '{{print $3}}' /proc/$C/stat 2>/dev/null)
    [ -z "$s" ] || [ "$s" = Z ] && break; sleep 0.05
done
if [ -z "$s" ] || [ "$s" = Z ]; then echo "@@dead"; else echo "@@alive"; kill -KILL $C; fi
'''


def py(path):
    return f"{shlex.quote(PYTHON)} {shlex.quote(str(path))}"


@pytest.fixture(scope="module", autouse=True)
def wrong_programs():
    """A folder for the wrong programs, which frames of an ordinary user read too."""
    global WRONG
    with readable_folder("nskit-beyond-") as WRONG:
        yield


def program(name):
    """A step (08, 09) or a wrong program of helpers.WRONG_BEYOND (its name)."""
    return step_or_wrong(name, WRONG)


def held_run(path, user=None):
    """Run path held; {"writes": [(time, first word)], "start": (time, map) or None}."""
    script = (f"{shlex.quote(PYTHON)} -c {shlex.quote(HELD)} {shlex.quote(str(path))} "
              f"{shlex.quote(PYTHON)} -S -c {shlex.quote(START)}; echo \"@@code $?\"")
    run = in_frame(script, user=user)
    writes = [(float(m.group(1)), m.group(2))
              for m in re.finditer(r"^@@write (\S+) \['?([^'\]]*)'?\]", run.err, re.M)]
    start = re.search(r"^@@start (\S+) (.*)$", run.out, re.M)
    return {"writes": writes, "start": (float(start.group(1)), ast.literal_eval(start.group(2)))
            if start else None, "run": run}


def ok_time(seen):
    (t,) = [t for t, word in seen["writes"] if word == "OK"]
    return t


# The checks, each over what one run showed.

def check_runs(seen):
    assert seen["start"] is not None, seen["run"]
    assert "@@code 0" in seen["run"].out, seen["run"]


def check_starts_after_ok(seen):
    check_runs(seen)
    assert seen["start"][0] > ok_time(seen), seen


def check_maps_before_start(seen):
    """09: the command finds its uid map already written when it starts."""
    check_runs(seen)
    assert seen["start"][1] and seen["start"][1][0] == "0", seen
    assert all(t < seen["start"][0] for t, _ in seen["writes"]), seen


def death(path):
    run = in_frame(DEATH.format(prog=py(path)))
    (verdict,) = re.findall(r"^@@(dead|alive|nostart)$", run.out, re.M) or [run]
    return verdict


def as_user(path):
    """What `id`, the uid map and a file of the user's show through path,
    run by an ordinary user with no capabilities."""
    script = (f"echo @@id; {py(path)} id; echo @@map; {py(path)} cat /proc/self/uid_map; "
              "touch /tmp/mine; echo @@host; stat -c '%U %G' /tmp/mine; "
              f"echo @@inside; {py(path)} stat -c '%U %G' /tmp/mine")
    run = in_frame(script, user=USER)
    parts = re.split(r"^@@(\w+)$", run.out, flags=re.M)
    return dict(zip(parts[1::2], (p.strip() for p in parts[2::2]))) | {"err": run.err}


def check_root_inside(seen):
    assert seen["id"].startswith("uid=0(root) gid=0(root)"), seen
    assert seen["map"].split() == ["0", str(USER), "1"], seen
    assert seen["host"] == "nobody nogroup" and seen["inside"] == "root root", seen


# The right programs pass.

@pytest.mark.parametrize("nn", ["08", "09"])
def test_command_starts_only_after_the_parents_ok(nn):
    check_starts_after_ok(held_run(step_path(nn)))


def test_09_maps_are_written_before_the_command_starts():
    check_maps_before_start(held_run(step_path("09")))


def test_09_maps_are_written_before_the_command_starts_as_a_user():
    check_maps_before_start(held_run(step_path("09"), user=USER))


@pytest.mark.parametrize("nn", ["08", "09"])
def test_command_dies_with_its_parent(nn):
    assert death(step_path(nn)) == "dead"


def test_09_root_inside_is_the_user_without_sudo():
    check_root_inside(as_user(step_path("09")))


def test_08_is_03s_uts_step():
    run = in_frame(f"hostname nskit-frame; {py(step_path('08'))} hostname; hostname")
    assert run.out.split() == ["myhostname", "nskit-frame"], run


def test_09_as_root_maps_root_to_root():
    run = in_frame(f"{py(step_path('09'))} sh -c 'id -u; cat /proc/self/uid_map'")
    assert run.out.split() == ["0", "0", "0", "1"], run


# Each check fails a wrong program.

@pytest.mark.parametrize("name", ["08_no_wait", "09_no_wait", "08_never_ok"])
def test_start_check_rejects(name):
    with pytest.raises(AssertionError):
        check_starts_after_ok(held_run(program(name)))


@pytest.mark.parametrize("name", ["09_maps_after_ok", "09_no_wait", "09_no_maps"])
def test_maps_check_rejects(name):
    with pytest.raises(AssertionError):
        check_maps_before_start(held_run(program(name)))


@pytest.mark.parametrize("name", ["08_no_deathsig", "08_deathsig_term"])
def test_death_check_rejects(name):
    assert death(program(name)) == "alive"


@pytest.mark.parametrize("name", ["09_no_maps", "09_uid_only", pytest.param(
    "09_no_setgroups", marks=pytest.mark.root("an ordinary user's frame denies setgroups "
                                              "to every user namespace in it already"))])
def test_root_check_rejects(name):
    with pytest.raises(AssertionError):
        check_root_inside(as_user(program(name)))


def test_the_06_it_grows_from_is_rejected_too():
    with pytest.raises(AssertionError):
        check_root_inside(as_user(step_path("06")))


# As every step does.

@pytest.mark.parametrize("nn", ["08", "09"])
def test_usage_missing_command_and_exit_status(nn):
    run = in_frame(f"{py(step_path(nn))}; echo \"@@$?\"; "
                   f"{py(step_path(nn))} nskit-no-such-command; echo \"@@$?\"; "
                   f"{py(step_path(nn))} sh -c 'echo hi; exit 3' | cat; echo \"@@${{PIPESTATUS[0]}}\"")
    assert run.out.split() == ["@@2", "@@127", "hi", "@@3"], run
    name = step_path(nn).name
    assert run.err.splitlines() == [f"usage: {name} CMD [ARGS...]",
                                    f"{name}: nskit-no-such-command: command not found"], run


@pytest.mark.parametrize("nn, base", [("08", "03"), ("09", "06")])
def test_a_full_copy_of_its_base_plus_the_pipe(nn, base):
    """Only added lines, besides the docstring: the base step stays inside."""
    new, old = step_path(nn).read_text(), step_path(base).read_text()
    body = lambda text: text.split('"""', 2)[2].splitlines()  # noqa: E731
    removed = [line for line in difflib.unified_diff(body(old), body(new), lineterm="", n=0)
               if line.startswith("-") and not line.startswith("---")]
    assert removed == [], removed
    assert "PR_SET_PDEATHSIG" in new and "os.pipe()" in new and 'b"OK"' in new
    assert "import" not in "".join(set(new.splitlines()) - set(old.splitlines()))


def test_grading_stays_00_to_07_with_08_and_09_in_the_folder(tmp_path):
    assert not set(BEYOND_PART_1) & set(STEP_NAMES)
    graded = grade("--target", str(STEPS_DIR), tmp=tmp_path)
    assert graded.code == 0, graded
    assert sorted(graded.steps) == sorted(STEP_NAMES)
