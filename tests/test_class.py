"""Grading a whole class: `python -m conformance --submissions DIR`.

A class of synthetic learners, built here from the kit's steps and the
exercises, some right, some partly right, some broken in every way a
submission breaks (missing, not parsing, crashing, hanging, leaving a
process behind). Each learner's expected score per step comes from the
grader's own check table, and scores.csv is checked cell by cell.
"""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import PYTHON, ROOT, grade, step_path

sys.path.insert(0, str(ROOT))
from conformance.checks import STEPS, checks_for  # noqa: E402
from exercises.make_work import make_work  # noqa: E402
from exercises.tasks import file_name  # noqa: E402

TIMEOUT = "4"  # seconds per run: short, for the hanging learners


def full(nn):
    return len(checks_for(nn))


OUT_OF = sum(map(full, STEPS))


def skeleton(nn):
    """What an untouched exercise (the skeleton) earns: step 00, and nothing
    in the steps it does not do."""
    return full(nn) if nn == "00" else 0


def silent(nn):
    """A program that runs but never runs the command (a syntax error, a
    crash): nothing is credited, not even the host it left alone."""
    return 0


def zero(nn):
    return 0


def one_cause(nn):
    """A step whose namespaces are wrong: that one failure, the rest skipped."""
    return 0


def all_but_one(nn):
    return full(nn) - 1


# -- the class -------------------------------------------------------------------

def correct(folder):
    for nn in STEPS:
        shutil.copy(step_path(nn), folder / file_name(nn))


def exercises(folder):
    make_work(folder)


def edit(folder, nn, old, new):
    path = folder / file_name(nn)
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {path.name}"
    path.write_text(text.replace(old, new))


def learners():
    """name -> (build(folder), {step: expected(step)}): 33 learners."""
    cls = {}

    def add(name, build, **by_step):
        cls[name] = (build, {nn: by_step.get(f"s{nn}", full) for nn in STEPS})

    for i in range(6):
        add(f"correct-{i}", correct)
    for i in range(3):
        add(f"fresh-{i}", exercises, **{f"s{nn}": skeleton for nn in STEPS})
    for k in range(1, 8):            # done up to step k, the rest untouched
        def upto(folder, k=k):
            exercises(folder)
            for nn in list(STEPS)[1:k + 1]:
                shutil.copy(step_path(nn), folder / file_name(nn))
        add(f"upto-{k:02d}", upto, **{f"s{nn}": skeleton for nn in list(STEPS)[k + 1:]})
    for nn in ("01", "03", "05", "07"):
        def missing(folder, nn=nn):
            correct(folder)
            (folder / file_name(nn)).unlink()
        add(f"missing-{nn}", missing, **{f"s{nn}": zero})
    for nn in ("02", "04", "06"):
        add(f"syntax-{nn}", lambda f, nn=nn: (correct(f), edit(f, nn, "def main():", "def main(:")),
            **{f"s{nn}": silent})
    for nn in ("01", "05"):
        add(f"crash-{nn}", lambda f, nn=nn: (correct(f), edit(
            f, nn, "\nimport ctypes\n", "\nimport ctypes\nraise SystemExit('boom')\n")),
            **{f"s{nn}": silent})
    for nn in ("03", "07"):
        add(f"hang-{nn}", lambda f, nn=nn: (correct(f), edit(
            f, nn, "\nimport ctypes\n", "\nimport ctypes, time\ntime.sleep(600)\n")),
            **{f"s{nn}": zero})
    add("extra-flag", lambda f: (correct(f), edit(
        f, "01", "clone_flags = CLONE_NEWNET | SIGCHLD",
        "clone_flags = CLONE_NEWNET | 0x04000000 | SIGCHLD")), s01=one_cause)
    add("leftover", lambda f: (correct(f), edit(
        f, "04", "    argv = sys.argv[1:]\n", "    argv = sys.argv[1:]\n    os.system('sleep 300 &')\n")),
        s04=all_but_one)
    add("empty", lambda f: None, **{f"s{nn}": zero for nn in STEPS})

    def not_runnable(folder):
        correct(folder)
        (folder / "03_uts.py").rename(folder / "03_uts")   # neither .py nor executable
    add("not-runnable", not_runnable, s03=zero)

    def two_claims(folder):
        correct(folder)
        shutil.copy(folder / "04_ipc.py", folder / "04_other.py")
    add("two-claims", two_claims, s04=zero)
    return cls


CLASS = learners()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class, graded once: (grader run, its folder)."""
    tmp = tmp_path_factory.mktemp("class")
    for name, (build, _) in CLASS.items():
        (tmp / "class" / name).mkdir(parents=True)
        build(tmp / "class" / name)
    done = grade("--submissions", tmp / "class", "--csv", tmp / "scores.csv", "--timeout", TIMEOUT,
                 "--gradescope-dir", tmp / "gradescope", tmp=tmp)
    return done, tmp


def test_the_class_is_big_and_mixed():
    assert len(CLASS) >= 30
    kinds = {name.rsplit("-", 1)[0] for name in CLASS}
    assert {"correct", "fresh", "upto", "missing", "syntax", "crash", "hang"} <= kinds


def test_scores_csv_cell_by_cell(graded):
    done, tmp = graded
    assert done.code == 0, done
    with open(tmp / "scores.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["learner", *[f"{nn}_{name}" for nn, name in STEPS.items()], "total", "out_of"]
    out_of = sum(full(nn) for nn in STEPS)
    assert [row[0] for row in rows[1:]] == sorted(CLASS)
    for row in rows[1:]:
        expected = [CLASS[row[0]][1][nn](nn) for nn in STEPS]
        assert row[1:] == [str(n) for n in [*expected, sum(expected), out_of]], row[0]


def test_the_table_and_the_ones_not_graded_normally(graded):
    done, tmp = graded
    table, _, trouble = done.out.partition("\nnot graded normally:\n")
    assert f"\nscores: {tmp / 'scores.csv'}" in table
    for name, (_, expected) in CLASS.items():
        total = sum(expected[nn](nn) for nn in STEPS)
        assert any(line.split()[:1] == [name] and line.split()[-1] == f"{total}/{OUT_OF}"
                   for line in table.splitlines()), name
    listed = {tuple(line.split()[:2]) for line in trouble.splitlines() if line.strip()}
    expected = {(name, f"{nn}:") for name, (_, by_step) in CLASS.items()
                for nn in STEPS if by_step[nn] in (zero, silent)}
    assert listed == expected
    assert "hang-03 03: timed out after 4 s" in trouble
    assert "missing-05 05: not found: no file named 05_pid.py" in trouble
    assert "two-claims 04: more than one program claims step 04: 04_ipc.py, 04_other.py" in trouble
    assert "crash-01 01: the command never ran; the program's last words: boom" in trouble
    assert "syntax-02 02: the command never ran" in trouble


def test_one_gradescope_results_json_per_learner(graded):
    _, tmp = graded
    assert sorted(p.name for p in (tmp / "gradescope").iterdir()) == sorted(CLASS)
    for name, (_, by_step) in CLASS.items():
        results = json.loads((tmp / "gradescope" / name / "results.json").read_text())
        assert results["score"] == sum(by_step[nn](nn) for nn in STEPS), name
        assert len(results["tests"]) == OUT_OF


def _run_with_stderr(stderr, folder):
    return subprocess.run([PYTHON, "-m", "conformance", "--submissions", str(folder), "--csv",
                           str(folder.parent / "scores.csv")], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=stderr, timeout=120)


def test_a_progress_line_on_a_terminal_only(tmp_path):
    for name in ("ann", "bob", "cy"):
        (tmp_path / "class" / name).mkdir(parents=True)
        correct(tmp_path / "class" / name)
    quiet = subprocess.run([PYTHON, "-m", "conformance", "--submissions", str(tmp_path / "class"),
                            "--csv", str(tmp_path / "scores.csv")], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""
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
# The workflow runs on GitHub's runners, not here. Here it is parsed (by the
# YAML reader that ships with perl, a strict subset of YAML), its shape is
# checked against what Classroom's grader and reporter actions expect, and its
# commands are run as they would be in a template repository, sudo aside.

WORKFLOW = ROOT / "docs" / "classroom" / "classroom.yml"
GRADER_ACTION = "classroom-resources/autograding-command-grader@v1"
REPORTER_ACTION = "classroom-resources/autograding-grading-reporter@v1"


@pytest.fixture(scope="module")
def workflow():
    done = subprocess.run(
        ["perl", "-MCPAN::Meta::YAML", "-MJSON::PP", "-e",
         "local $/; my $y = CPAN::Meta::YAML->read_string(<STDIN>) or die CPAN::Meta::YAML->errstr;"
         " print JSON::PP->new->encode($y->[0])"],
        stdin=open(WORKFLOW), capture_output=True, text=True) if shutil.which("perl") else None
    if done is None or "Can't locate" in done.stderr:
        pytest.skip("no YAML reader here: perl with CPAN::Meta::YAML")
    assert done.returncode == 0, f"{WORKFLOW} is not YAML: {done.stderr}"
    return json.loads(done.stdout)


def test_the_classroom_workflow_has_a_test_per_step(workflow):
    assert "push" in workflow["on"]
    job = workflow["jobs"]["grade"]
    assert job["runs-on"] == "ubuntu-latest"
    graders = [s for s in job["steps"] if s.get("uses") == GRADER_ACTION]
    assert [g["id"] for g in graders] == [f"step-{nn}" for nn in STEPS]
    for nn, grader in zip(STEPS, graders):
        assert grader["with"]["max-score"] == "1" and grader["with"]["test-name"] == f"{nn} {STEPS[nn]}"
    (reporter,) = [s for s in job["steps"] if s.get("uses") == REPORTER_ACTION]
    assert job["steps"][-2] == reporter or job["steps"][-1] == reporter
    assert reporter["with"]["runners"] == ",".join(g["id"] for g in graders)
    assert reporter["env"] == {f"{g['id'].upper()}_RESULTS": f"${{{{steps.{g['id']}.outputs.result}}}}"
                               for g in graders}


@pytest.fixture
def template(tmp_path):
    """A classroom template repository as the README describes it, after a
    learner did steps 01 and 02: work/ and the grader's copy in .nskit/."""
    repo = tmp_path / "repo"
    make_work(repo / "work")
    for nn in ("01", "02"):
        shutil.copy(step_path(nn), repo / "work" / file_name(nn))
    shutil.copytree(ROOT / "conformance", repo / ".nskit" / "conformance")
    shutil.copy(ROOT / "requirements.txt", repo / ".nskit")
    return repo


def _run_in(repo, command, **env):
    """A workflow command in the template, with the kit's Python as the venv's
    and sudo a no-op (the tests already run where namespaces work)."""
    env = dict(os.environ, NSKIT_PY=PYTHON, **env)
    return subprocess.run(["bash", "-c", f'sudo() {{ "$@"; }}; {command}'], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_classroom_workflow_grades_a_template(workflow, template, tmp_path):
    steps = workflow["jobs"]["grade"]["steps"]
    graders = [s for s in steps if s.get("uses") == GRADER_ACTION]
    passed = {g["id"]: _run_in(template, g["with"]["command"]).returncode == 0 for g in graders}
    assert passed == {f"step-{nn}": nn in ("00", "01", "02") for nn in STEPS}
    (table,) = [s for s in steps if s.get("name") == "Every check, with hints"]
    summary = tmp_path / "summary.md"
    done = _run_in(template, table["run"], GITHUB_STEP_SUMMARY=str(summary))
    assert done.returncode == 0, done.stderr
    got = sum(full(nn) if nn in ("00", "01", "02") else skeleton(nn) for nn in STEPS)
    text = summary.read_text()
    assert text.startswith("```\n") and text.endswith(f"score: {got}/{OUT_OF} checks passed\n```\n")
    assert "hint: " in text
    assert "<testsuites" in (template / "nskit-junit.xml").read_text()
