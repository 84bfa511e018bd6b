"""The grader's checks of 10 and 11, beyond Part 1: a root of the command's
own, and a network that works. Graded as one class in one grader run: the
kit's 10 and 11 pass every check, and every wrong program of
helpers.WRONG_BEYOND fails exactly the checks that name its mistake, the
rest passing or skipped. The grader gives each run a root to pivot into
(conformance/rootfs.py: build_pivot_root), named in NSKIT_ROOTFS."""
import json
import shutil
import subprocess

import pytest

from helpers import PYTHON, ROOT, STEPS_DIR, grade, step_path, wrong_beyond

from conformance.catalog import file_name  # noqa: E402
from conformance.checks import OWN_ROOT, PID1, STARTS_AFTER_OK, checks_for  # noqa: E402

LINKS = checks_for("11")[-3].title

# Each learner of the class, and the checks of its step that fail: all others
# pass or are skipped.
EXPECTED = {
    "kit": {"10": set(), "11": set()},
    "10_no_pivot": {"10": {OWN_ROOT, PID1}},
    "10_no_proc": {"10": {PID1}},
    "11_end_in_parent": {"11": {LINKS}},
    "11_no_wait": {"11": {STARTS_AFTER_OK, LINKS}},
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
    report = root / "results.json"
    done = subprocess.run(
        [PYTHON, "-m", "conformance", "--submissions", str(root / "class"), "--step", "10",
         "--step", "11", "--json", str(report), "--csv", str(report.with_suffix(".csv"))],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout[-2000:], done.stderr)
    results = json.loads(report.read_text())
    return {label: {s["step"]: s for s in r["steps"] if s["program"]} for label, r in results.items()}


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
    own = {OWN_ROOT, PID1, LINKS}
    rejected = {title for steps in EXPECTED.values() for titles in steps.values()
                for title in titles}
    assert own <= rejected
    assert {c.title for c in checks_for("10") + checks_for("11")} & own == own


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
