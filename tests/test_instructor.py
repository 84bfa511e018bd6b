"""Mistakes an instructor makes get one sentence and exit 2, before anything
runs: a class folder given to --target, one repository given to
--submissions. A learner none of whose work could be graded gets one note,
once, in the table and in scores.csv. (A folder with a space through `make
grade`: tests/test_ends.py.)"""
import csv
import shutil
import subprocess

from conformance.discover import NO_PROGRAMS, NO_WORK
from helpers import PYTHON, ROOT, step_path


def grader(*args):
    return subprocess.run([PYTHON, "-m", "conformance", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def one_sentence(done):
    assert done.returncode == 2, done
    assert done.stdout == "" and "Traceback" not in done.stderr, done
    (line,) = done.stderr.splitlines()
    assert line.startswith("nskit: ") and line.endswith("."), line
    return line


def learner(folder, steps=("03",)):
    folder.mkdir(parents=True)
    for nn in steps:
        shutil.copy(step_path(nn), folder / step_path(nn).name)
    return folder


def test_a_class_given_to_target_suggests_submissions(tmp_path):
    cls = tmp_path / "my class"
    learner(cls / "ann")
    learner(cls / "bob" / "work")
    line = one_sentence(grader("--target", cls, "--step", "03"))
    assert line == (f"nskit: '{cls}' holds no step programs, but 2 of its folders do: to grade "
                    f"each as a learner, give it to --submissions '{cls}'.")


def test_one_repository_given_to_submissions_is_refused_for_target(tmp_path):
    repo = tmp_path / "ns-lab-ann"
    for name in ("steps", "conformance"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    learner(repo / "work")
    line = one_sentence(grader("--submissions", repo))
    assert line == (f"nskit: {repo} is one repository of the kit, not a class of learners' "
                    f"folders: grade it with --target {repo}.")
    # That same repository is graded as one learner, from its work/.
    done = grader("--target", repo, "--step", "03")
    assert done.returncode == 0, done


def test_a_learner_that_could_not_be_graded_gets_one_note_once(tmp_path):
    cls = tmp_path / "class"
    learner(cls / "ann", ("03", "04"))
    (cls / "empty").mkdir()
    shutil.copytree(ROOT / "steps", cls / "repo" / "steps")  # a repository without work/
    (cls / "repo" / "README.md").write_text("# nskit\n")
    done = grader("--submissions", cls, "--step", "03", "--step", "04",
                  "--csv", tmp_path / "scores.csv")
    assert done.returncode == 0, done
    _, _, trouble = done.stdout.partition("\nnot graded normally:\n")
    assert trouble.splitlines() == [f"  empty: {NO_PROGRAMS}", f"  repo: {NO_WORK}"]
    with open(tmp_path / "scores.csv", newline="") as fh:
        notes = {row["learner"]: row["note"] for row in csv.DictReader(fh)}
    assert notes == {"ann": "", "empty": NO_PROGRAMS, "repo": NO_WORK}
