"""The test helpers (tests/helpers.py) reject wrong input: a helper that
took anything would let the tests that use it pass without checking."""
import os
import time
from pathlib import Path

import pytest

import helpers
from helpers import (Graded, MEMORY_NOTICE, WRONG_BEYOND, flag_names, grade, in_frame,
                     left_behind, refused, sections, step_path,
                     user_namespaces_allowed, without_notices, wrong_beyond)


def test_sections_keeps_only_what_follows_its_own_headings():
    text = "before\n@@one\n1\n\n@@two\n2\n== three\n3\n"
    assert sections(text) == {"one": "1", "two": "2\n== three\n3"}
    assert sections(text, prefix="== ") == {"three": "3"}
    assert sections("no heading at all\n@ one\n") == {}


def test_without_notices_drops_the_memory_notice_and_nothing_else():
    err = f"{MEMORY_NOTICE} (no cgroup)\nreal error\n  {MEMORY_NOTICE} indented\n"
    assert without_notices(err) == f"real error\n  {MEMORY_NOTICE} indented\n"


@pytest.mark.parametrize("nn", ["12", "4", "", "03_uts"])
def test_step_path_and_flag_names_refuse_a_step_that_does_not_exist(nn):
    with pytest.raises(KeyError):
        step_path(nn)
    with pytest.raises(KeyError):
        flag_names(nn)


def test_flag_names_are_the_steps_own():
    assert flag_names("00") == set() and flag_names("03") == {"CLONE_NEWUTS"}


def test_each_wrong_program_is_its_step_with_a_change():
    for name, (nn, _) in WRONG_BEYOND.items():
        assert wrong_beyond(name) != step_path(nn).read_text(), name


def test_wrong_beyond_refuses_a_step_that_lost_the_text_it_changes(monkeypatch, tmp_path):
    changed = tmp_path / "08_isolate.py"
    changed.write_text("a step rewritten since the table was made\n")
    monkeypatch.setattr(helpers, "step_path", lambda nn: changed)
    with pytest.raises(AssertionError):
        wrong_beyond("08_no_wait")


def test_left_behind_sees_new_entries_and_changed_values_only():
    before = {"links": ["a"], "/mytmp": False}
    assert left_behind(before, {"links": ["a"], "/mytmp": False}) == {}
    assert left_behind(before, {"links": [], "/mytmp": False}) == {}  # gone is not left
    assert left_behind(before, {"links": ["a", "b"], "/mytmp": True}) == {
        "links": ["b"], "/mytmp": (False, True)}


def test_in_frame_reports_a_failing_script_and_runs_as_the_user_asked():
    failed = in_frame("echo out; echo err >&2; exit 3")
    assert (failed.code, failed.out, failed.err) == (3, "out\n", "err\n"), failed
    user = in_frame("id -u; grep ^CapEff /proc/self/status", user=65534)
    assert user.out.split() == ["65534", "CapEff:", "0000000000000000"], user


def test_in_frame_ends_a_script_past_its_time_and_everything_it_started():
    naps = f"30.{os.getpid()}{time.monotonic_ns() % 10**6}"  # no other sleep sleeps as long
    started = time.monotonic()
    run = in_frame(f"sleep {naps} & echo started; sleep {naps}", timeout=1)
    assert run.code == 137 and run.out == "started\n", run
    assert time.monotonic() - started < 10
    # Its frame's PID 1 died with it, and the sleeps with their PID namespace.
    left = [pid for pid in filter(str.isdigit, os.listdir("/proc"))
            if _cmdline(pid) == f"sleep\0{naps}\0".encode()]
    assert left == [], "the frame's processes outlived it"


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_refused_refuses_user_namespaces_to_its_script():
    if not user_namespaces_allowed():
        pytest.skip("user namespaces are refused here already: nothing to tell apart")
    probe = "unshare --user true && echo allowed || echo refused"
    assert in_frame(probe).out.split()[-1] == "allowed"
    assert in_frame(refused(probe)).out.split()[-1] == "refused"


def test_grade_of_a_folder_that_does_not_exist_has_no_verdicts(tmp_path):
    graded = grade("--target", tmp_path / "nowhere", tmp=tmp_path)
    assert graded.code == 2 and "does not exist" in graded.err and graded.steps == {}, graded
    with pytest.raises(KeyError):
        graded.failed("00")
    assert isinstance(graded, Graded)

