"""The exercises: `make exercise` writes the tasks into work/ without
overwriting anything, `make grade` grades them, and a learner who follows
the article passes step by step, guided by hints that never give the answer.
"""
import ast
import os
import shutil
import subprocess

import pytest

from conformance.catalog import STEP_NAMES, file_name
from exercises.make_work import SKELETON, with_docstring
from exercises.tasks import TASKS
from helpers import ARTICLE, PYTHON, ROOT, grade, needs_articles, step_path

# What the hints must not give away: the flags, their values, the calls' code.
ANSWERS = ("CLONE_NEW", "0x", "libc.", "MS_PRIVATE", "MS_REC")
# What a step's first failing hints must be about: the next thing to do.
TOPIC = {"01": "network", "02": "/mytmp", "03": "hostname", "04": "IPC",
         "05": "PID namespace", "06": "user namespace", "07": "network"}


def make_work(*args):
    return subprocess.run([PYTHON, "-m", "exercises.make_work", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


def make(*args):
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True)


def docstring(source):
    return ast.get_docstring(ast.parse(source), clean=False)


@pytest.fixture
def work(tmp_path):
    done = make_work(tmp_path / "work")
    assert done.returncode == 0, done.stderr
    return tmp_path / "work"


def test_work_holds_the_skeleton_with_one_task_per_step(work):
    skeleton = SKELETON.read_text()
    assert sorted(p.name for p in work.iterdir()) == [f"{file_name(nn)}.py" for nn in STEP_NAMES]
    assert (work / "00_skeleton.py").read_text() == skeleton
    for nn in TASKS:
        source = (work / f"{file_name(nn)}.py").read_text()
        task = docstring(source)
        # Only the docstring differs from the skeleton.
        assert with_docstring(source, "") == with_docstring(skeleton, "")
        assert task != docstring(skeleton) and task.startswith(f"{nn} {STEP_NAMES[nn]}, your task:")
        assert f"python -m conformance --target work --step {nn}" in task
        assert "You should see:" in task and "make " not in task[task.index("Try it:"):]


# Where the exercises are written, what grades them there.
GRADED_WITH = {
    "make": ("make grade STEP={nn}", "make step-{nn} runs the kit's own; diff steps/"),
    "nskit": ("nskit grade --step {nn}", "nskit step {nn} runs the kit's own\n"),
    "python": ("python -m conformance --target work --step {nn}", "python -m demo {nn} runs"),
    "classroom": ("cd .nskit && python3 -m conformance --target .. --step {nn}", None),
}


@pytest.mark.parametrize("kind", GRADED_WITH)
def test_every_task_names_the_command_that_grades_it_where_it_is(tmp_path, kind):
    done = subprocess.run([PYTHON, "-m", "exercises.make_work", str(tmp_path / "work")],
                          cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "NSKIT_COMMAND": kind})
    assert done.returncode == 0, done.stderr
    beyond = subprocess.run([PYTHON, "-m", "exercises.make_work", "--beyond",
                             str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "NSKIT_COMMAND": kind})
    assert beyond.returncode == 0, beyond.stderr
    grades, compare = GRADED_WITH[kind]
    others = [g.split(" ")[0] + " " for k, (g, _) in GRADED_WITH.items() if k != kind]
    for nn in [*TASKS, "08", "09"]:
        task = docstring((tmp_path / "work" / f"{file_name(nn)}.py").read_text())
        how = task[task.index("Try it:"):]
        assert f"Grade it:   {grades.format(nn=nn)}" in how, how
        assert not [o for o in others if o in how.replace(grades.format(nn=nn), "")], how
        if nn in ("08", "09"):
            assert (compare is None) == ("Compare:" not in how), how
            assert compare is None or compare.format(nn=nn) in how, how
    first = grades.format(nn="01").replace(" work ", f" {tmp_path / 'work'} ").replace(
        "make grade ", f"make grade TARGET={tmp_path / 'work'} ").replace(
        "nskit grade ", f"nskit grade --target {tmp_path / 'work'} ")
    assert done.stdout.strip().endswith(f"do what its docstring asks, then {first}."), done.stdout


@needs_articles
def test_every_task_points_at_a_section_the_article_has(work):
    article = ARTICLE.read_text()
    for nn in TASKS:
        task = docstring((work / f"{file_name(nn)}.py").read_text())
        section = task.split('Article:    "')[1].split('"')[0]
        assert f"## {section}\n" in article, f"{nn} points at a section the article lacks"


def test_exercises_02_and_05_ask_to_try_the_flag_alone_first(work):
    """As the article does: the flag alone, what did not change, then why."""
    for nn, command in (("02", "mount"), ("05", "ps aux")):
        task = " ".join(docstring((work / f"{file_name(nn)}.py").read_text()).split())
        flag = task.index("Add the clone flag for a new")
        tried = task.index(f"and run `{command}`")
        assert flag < tried < task.index("Read the article on why"), (nn, task)


def test_make_work_never_overwrites(work):
    edited = work / "03_uts.py"
    edited.write_text("# my own work\n")
    (work / "05_pid.py").unlink()
    done = make_work(work)
    assert done.returncode == 0
    assert edited.read_text() == "# my own work\n"
    assert docstring((work / "05_pid.py").read_text()).startswith("05 pid, your task:")
    assert "wrote 05_pid.py" in done.stdout and "kept as they were: 00_skeleton.py" in done.stdout


@pytest.mark.parametrize("args, says", [
    (["{tmp}/a-file"], "is a file, not a folder"),
    (["--into", "x"], "usage: python -m exercises.make_work [--beyond] [DIR]"),
])
def test_make_work_rejects_a_wrong_folder(tmp_path, args, says):
    (tmp_path / "a-file").write_text("")
    done = make_work(*[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 2 and says in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_untouched_exercises_fail_with_hints_that_give_nothing_away(work, tmp_path):
    fresh = grade("--target", work, tmp=tmp_path)
    assert fresh.code == 1
    assert not fresh.failed("00"), fresh
    for nn in TASKS:
        assert fresh.failed(nn), f"the untouched exercise {nn} passes: {fresh}"
        # A skipped check has no hint of its own: the check it needs has one.
        failed = [fresh.steps[nn][title] for title in fresh.failed(nn)
                  if fresh.steps[nn][title]["status"] != "skipped"]
        hints = [check["hint"] for check in failed]
        assert all(hints), f"a failing check of {nn} has no hint: {fresh}"
        assert any(TOPIC[nn] in hint for hint in hints), f"no hint of {nn} is about {TOPIC[nn]}"
        for answer in ANSWERS:
            assert not any(answer in hint for hint in hints), f"a hint of {nn} gives away {answer}"
    assert "CLONE_NEW" not in fresh.out and "libc." not in fresh.out


@pytest.mark.slow
def test_following_the_article_passes_step_by_step(work, tmp_path):
    # The article's answer, one step at a time: each passes once it is done.
    for nn in TASKS:
        shutil.copy(step_path(nn), work / f"{file_name(nn)}.py")
        done = grade("--target", work, "--step", nn, tmp=tmp_path)
        assert done.code == 0 and not done.failed(nn), done
    assert grade("--target", work, tmp=tmp_path).code == 0


def test_make_exercise_and_make_grade(tmp_path):
    work = tmp_path / "work"
    made = make("exercise", f"WORK={work}")
    assert made.returncode == 0 and (work / "07_combined.py").exists(), made.stderr
    assert made.stdout.strip().endswith(f"then make grade TARGET={work} STEP=01."), made.stdout
    assert "make grade STEP=04   (every step: make grade)" in (work / "04_ipc.py").read_text()
    one = make("grade", f"TARGET={work}", "STEP=00")
    assert one.returncode == 0 and "score: 6/6 checks passed" in one.stdout, one.stderr
    two = make("grade", f"TARGET={work}", "STEP=00 04")
    assert two.returncode != 0 and "04 ipc" in two.stdout and "03 uts" not in two.stdout
    assert "hint:" in two.stdout


@pytest.mark.parametrize("args, says", [
    (["WORK={tmp}/nowork"], "There is no {tmp}/nowork/ yet: make exercise writes it."),
    (["TARGET={tmp}/elsewhere"], "{tmp}/elsewhere does not exist"),
    (["TARGET=steps", "STEP=12"], "'12' is not a step"),
])
def test_make_grade_rejects_what_it_cannot_grade(tmp_path, args, says):
    done = make("grade", *[a.format(tmp=tmp_path) for a in args])
    assert done.returncode != 0 and says.format(tmp=tmp_path) in done.stderr
    assert "Traceback" not in done.stderr
