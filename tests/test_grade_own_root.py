"""The grader's checks of 10 and 11, beyond Part 1: a root of the command's
own, and a network that works. Graded as one class in one grader run: the
kit's 10 and 11 pass every check, and every wrong program of
helpers.WRONG_BEYOND fails exactly the checks that name its mistake, the
rest passing or skipped. The grader gives each run a root to pivot into
(conformance/rootfs.py: build_pivot_root), named in NSKIT_ROOTFS."""
import shutil

import pytest

from helpers import STEPS_DIR, grade, grade_class, step_path, wrong_beyond

from conformance.catalog import file_name  # noqa: E402
from conformance.checks import (CROSSES, OLD_ROOT_GONE, OWN_ROOT, PEER, PID1,  # noqa: E402
                                STARTS_AFTER_OK, VETH_INSIDE, checks_for)

# Each learner of the class, and the checks of its step that fail: all others
# pass or are skipped.
EXPECTED = {
    "kit": {"10": set(), "11": set()},
    "10_no_pivot": {"10": {OWN_ROOT, PID1}},
    "10_chroot": {"10": {OLD_ROOT_GONE}},
    "10_old_root_kept": {"10": {OLD_ROOT_GONE}},
    "10_no_proc": {"10": {PID1}},
    "11_end_in_parent": {"11": {VETH_INSIDE}},
    "11_no_address": {"11": {VETH_INSIDE}},
    "11_no_wait": {"11": {STARTS_AFTER_OK, VETH_INSIDE}},
}


def build_class(folder):
    for label, steps in EXPECTED.items():
        (folder / label).mkdir(parents=True)
        for nn in steps:
            target = folder / label / f"{file_name(nn)}.py"
            if label == "kit":
                shutil.copy(step_path(nn), target)
            else:
                target.write_text(wrong_beyond(label))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-root")
    build_class(root / "class")
    return grade_class(root / "class", root / "results.json", ("10", "11"))


def verdicts(result):
    return [(c["title"], c["status"], c["seen"]) for c in result["checks"]]


@pytest.mark.parametrize("label, nn", [(label, nn) for label, steps in EXPECTED.items()
                                       for nn in steps])
def test_each_program_fails_exactly_the_checks_of_its_mistake(graded, label, nn):
    result = graded[label][nn]
    assert result["problem"] is None, result["problem"]
    failed = {c["title"] for c in result["checks"] if c["status"] == "failed"}
    assert failed == EXPECTED[label][nn], verdicts(result)
    for check in result["checks"]:
        if check["status"] == "failed":
            assert check["hint"], check


def test_every_outcome_of_10_and_11_rejects_a_wrong_program():
    """The checks 10 and 11 share with 08 and 09 (the parent in charge) and
    with 00-07 are shown failing by tests/test_grade_beyond.py and
    tests/test_grader.py."""
    own = {OWN_ROOT, OLD_ROOT_GONE, PID1, VETH_INSIDE}
    rejected = {title for steps in EXPECTED.values() for titles in steps.values()
                for title in titles}
    assert own <= rejected
    assert {c.title for c in checks_for("10") + checks_for("11")} >= own | {PEER, CROSSES}


def test_what_was_seen_and_the_hint_name_the_mistake(graded):
    def check(label, nn, title):
        (found,) = [c for c in graded[label][nn]["checks"] if c["title"] == title]
        return found
    chroot = check("10_chroot", "10", OLD_ROOT_GONE)
    assert chroot["seen"].endswith("(a chroot)") and "chroot changes the root of one process" in chroot["hint"]
    kept = check("10_old_root_kept", "10", OLD_ROOT_GONE)
    assert kept["seen"].startswith("the host's root is still mounted") and "umount2" in kept["hint"]
    both = check("11_end_in_parent", "11", VETH_INSIDE)
    assert "are in the parent's" in both["seen"] and "move one into the child's" in both["hint"]
    assert "no address" in check("11_no_address", "11", VETH_INSIDE)["seen"]
    assert check("kit", "11", CROSSES)["seen"] == (
        "10.11.0.2 answered a ping sent from the parent's network namespace")
    assert check("kit", "11", PEER)["status"] == "passed"


def test_the_article_s_commands_show_the_small_root(graded):
    assert graded["kit"]["10"]["output"].startswith("$ ls /\n")
    assert "$ ip a\n" in graded["kit"]["11"]["output"]


def test_10_and_11_are_graded_only_when_asked(tmp_path):
    graded = grade("--target", str(STEPS_DIR), "--step", "10", tmp=tmp_path)
    assert graded.code == 0 and sorted(graded.steps) == ["10"], graded
    course = tmp_path / "course.toml"
    course.write_text("[points]\n11 = 10\n")
    graded = grade("--target", str(STEPS_DIR), "--course", str(course), tmp=tmp_path)
    assert graded.code == 0 and sorted(graded.steps) == ["11"], graded
    assert "points: 10/10" in graded.out


@pytest.mark.slow
def test_every_program_gets_the_same_verdicts_in_10_runs(graded, tmp_path):
    """10 copies of every learner as one class: no verdict may depend on
    which process ran first, nor on when the kernel frees a namespace."""
    once = tmp_path / "once"
    build_class(once)
    for label in EXPECTED:
        for copy in range(10):
            shutil.copytree(once / label, tmp_path / "class" / f"{label}-{copy:02d}")
    results = grade_class(tmp_path / "class", tmp_path / "results.json", ("10", "11"))
    differ = [(name, nn, verdicts(result)) for name, steps in results.items()
              for nn, result in steps.items()
              if verdicts(result) != verdicts(graded[name.rsplit("-", 1)[0]][nn])]
    assert differ == []
