"""The kit as a package: a wheel that `pip install` (or pipx) puts in a venv
of its own gives an `nskit` command whose subcommands are the Makefile's
targets, and `python -m conformance` still works from the checkout.

No network: the wheel is built with the kit's own setuptools (pinned in
requirements.txt), and the fresh venv borrows sh and tabulate from the kit's
venv through a .pth file, as a venv with its dependencies installed has them
(the fixtures wheel and installed, in conftest.py).
"""
import ast
import shutil
import subprocess
import sys
import zipfile

import pytest

from conformance.catalog import ALL_STEPS
from helpers import ROOT, in_frame, step_path


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def test_the_wheel_holds_the_packages_the_steps_and_the_dependencies(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("nskit/cli.py", "conformance/cli.py", "demo/scenes.py",
                 "exercises/make_work.py", "gradescope/run_autograder",
                 f"steps/{step_path('04').name}", "skeleton/skeleton.py"):
        assert name in names, name
    assert not [n for n in names if n.startswith(("tests/", "tools/"))]
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:")]
    assert any(" sh" in r for r in requires) and any(" tabulate" in r for r in requires), requires


def test_nskit_help_names_the_makefile_targets(installed, tmp_path):
    done = run([installed / "nskit", "--help"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for command in ("step", "diff", "exercise", "grade", "merge", "gradescope-bundle"):
        assert f"    {command} " in done.stdout or f"    {command}\n" in done.stdout, command


def test_nskit_grade_passes_the_graders_options_through(installed, tmp_path):
    helped = run([installed / "nskit", "grade", "--help"], cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "--target DIR" in helped.stdout and "--submissions DIR" in helped.stdout
    # The installed grader, not the checkout's: the venv is outside the repo.
    where = run([installed / "python", "-c", "import conformance; print(conformance.__file__)"],
                cwd=tmp_path)
    assert where.stdout.startswith(str(installed.parent)), where
    wrong = run([installed / "nskit", "grade", "--step", "09"], cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.startswith("nskit: ")
    assert "Traceback" not in wrong.stderr


def test_nskit_grade_names_itself_in_its_usage_and_its_errors(installed, tmp_path):
    helped = run([installed / "nskit", "grade", "--help"], cwd=tmp_path)
    assert helped.stdout.startswith("usage: nskit grade "), helped.stdout
    assert "python -m conformance" not in helped.stdout
    wrong = run([installed / "nskit", "grade", "--step", "12"], cwd=tmp_path)
    assert wrong.returncode == 2 and wrong.stderr.endswith("; see nskit grade --help\n"), wrong
    nothing = run([installed / "nskit", "grade"], cwd=tmp_path)
    assert nothing.returncode == 2
    assert nothing.stderr == ("nskit: there is no work/ here to grade: nskit exercise writes "
                              "it, or give --target DIR.\n"), nothing


def test_nskit_merge_names_itself(installed, tmp_path):
    done = run([installed / "nskit", "merge"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("nskit: usage: nskit merge --out DIR SHARD_FOLDER..."), done
    none = run([installed / "nskit", "merge", "--out", "class", "nowhere"], cwd=tmp_path)
    assert none.returncode == 2 and none.stderr.startswith("nskit: nowhere holds no shard's "
                                                           "shard.json"), none


def test_nskit_exercise_then_nskit_grade_grades_work_by_default(installed, tmp_path):
    """What the installed command tells a learner to run, run: no Makefile
    is needed anywhere."""
    done = run([installed / "nskit", "exercise"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("then nskit grade --step 01."), done.stdout
    assert "make" not in done.stdout
    task = ast.get_docstring(ast.parse((tmp_path / "work" / step_path("03").name).read_text()))
    assert "Grade it:   nskit grade --step 03   (every step: nskit grade)" in task
    assert "make " not in task[task.index("Try it:"):]
    graded = run([installed / "nskit", "grade", "--step", "00", "--step", "01"], cwd=tmp_path)
    assert graded.returncode == 1, graded.stderr      # 00 passes; 01 is the untouched task
    assert "score: " in graded.stdout and "01 net" in graded.stdout and "hint:" in graded.stdout
    shutil.copy(step_path("01"), tmp_path / "work" / step_path("01").name)
    again = run([installed / "nskit", "grade", "--step", "01"], cwd=tmp_path)
    assert again.returncode == 0 and "points: 10/10" in again.stdout, again


def test_nskit_grade_starts_as_python_m_conformance_does(installed, tmp_path):
    """Its launcher is forked before anything of a learner is read, not a
    fresh interpreter started later (conformance/launcher.py)."""
    if not shutil.which("strace"):
        pytest.skip("no strace here to see which programs nskit grade starts")
    assert run([installed / "nskit", "exercise"], cwd=tmp_path).returncode == 0
    trace = tmp_path / "trace"
    done = run(["strace", "-f", "-qq", "-s", "400", "-e", "trace=execve", "-e", "signal=none",
                "-o", trace, installed / "nskit", "grade", "--step", "00"], cwd=tmp_path)
    assert done.returncode == 0 and "points: 10/10" in done.stdout, done
    started = trace.read_text()
    assert "nskit" in started and "conformance.launcher import serve" not in started


def test_nskit_exercise_and_diff_use_the_installed_files(installed, tmp_path):
    done = run([installed / "nskit", "exercise", "mine"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mine" / step_path("07").name).exists()
    assert done.stdout.strip().endswith("then nskit grade --target mine --step 01."), done.stdout
    diff = run([installed / "nskit", "diff", "03"], cwd=tmp_path)
    assert diff.returncode == 0 and "+CLONE_NEWUTS" in diff.stdout.replace(" ", ""), diff
    beyond = run([installed / "nskit", "diff", "08"], cwd=tmp_path)
    assert beyond.returncode == 0 and beyond.stdout.startswith(
        f"--- steps/{step_path('03').name}"), beyond


def test_nskit_refuses_what_is_not_a_step_in_one_line(installed, tmp_path):
    done = run([installed / "nskit", "step", "12"], cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"nskit: argument NN: '12' is not a step: choose from "
                                   f"{', '.join(ALL_STEPS)}; see nskit --help")


def test_python_m_conformance_still_works_in_the_checkout():
    done = run([sys.executable, "-m", "conformance", "--help"], cwd=ROOT)
    assert done.returncode == 0 and "--target DIR" in done.stdout


def test_nskit_step_runs_the_installed_demo_in_a_frame(installed):
    result = in_frame(f"cd / && {installed}/nskit step 03")
    assert result.code == 0, result
    assert f"through steps/{step_path('03').name}: hostname" in result.out
    assert "\nmyhostname\n" in result.out, result
