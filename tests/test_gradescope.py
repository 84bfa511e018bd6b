"""The Gradescope autograder zip, and its run_autograder run against sample
submissions in a tmp tree laid out as Gradescope's /autograder (never the
real /autograder: AUTOGRADER_ROOT points the scripts at the tmp tree): the
Classroom-shaped class of test_class, one repository at a time, with the
same course file baked into the bundle.
"""
import json
import os
import shutil
import socket
import stat
import subprocess
import zipfile
from shlex import quote

import pytest

from helpers import PYTHON, ROOT, step_path
from conformance.catalog import STEP_NAMES
from conformance.checks import checks_for
from conformance.discover import NO_WORK
from gradescope.autograde import NOTHING_TO_GRADE
from exercises.tasks import file_name
from test_class import WEIGHT, build_class, course_file, points

OUT_OF = sum(len(checks_for(nn)) for nn in STEP_NAMES)


def bundle(out, *args):
    return subprocess.run([PYTHON, "-m", "gradescope.bundle", str(out), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    done = bundle(out)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def built_for_the_course(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle")
    done = bundle(tmp / "autograder.zip", "--course", course_file(tmp / "course.toml"))
    assert done.returncode == 0, done.stderr
    return tmp / "autograder.zip"


def unpacked(zip_file, tmp_path):
    """A fresh /autograder-like tree: the zip unpacked in source/ as Gradescope
    does, an empty submission/, and a function that runs run_autograder there
    (with the kit's Python unless told otherwise) and returns results.json;
    what it printed (for staff alone) is in run.stdout."""
    subprocess.run(["unzip", "-q", str(zip_file), "-d", str(tmp_path / "source")], check=True)
    (tmp_path / "submission").mkdir()

    def run(python=PYTHON, wrap="", status=0):
        """results.json, or None where run_autograder wrote none; it must
        exit with status."""
        env = dict(os.environ, AUTOGRADER_ROOT=str(tmp_path))
        env.pop("NSKIT_PYTHON", None)
        if python:
            env["NSKIT_PYTHON"] = python
        script = quote(str(tmp_path / "source" / "run_autograder"))
        done = subprocess.run(["bash", "-c", wrap + script], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == status, (done.stdout, done.stderr)
        run.stdout = done.stdout
        results = tmp_path / "results" / "results.json"
        return json.loads(results.read_text()) if results.exists() else None

    run.root = tmp_path
    return run


@pytest.fixture
def autograder(built, tmp_path):
    return unpacked(built, tmp_path)


def test_the_bundle_holds_the_scripts_and_the_grader(built, tmp_path):
    with zipfile.ZipFile(built) as zf:
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    for script in ("setup.sh", "run_autograder"):
        assert modes[script] & stat.S_IXUSR, f"{script} is not executable in the zip"
    assert {"nskit/requirements.txt", "nskit/conformance/cli.py",
            "nskit/conformance/sandbox.py", "nskit/gradescope/autograde.py"} <= set(modes)
    assert "nskit/course.toml" not in modes
    assert not [n for n in modes if "__pycache__" in n or n.startswith((".venv", "nskit/tests"))]
    again = tmp_path / "again.zip"
    assert bundle(again).returncode == 0 and again.read_bytes() == built.read_bytes()


def test_the_bundle_refuses_a_name_that_is_not_a_zip(tmp_path):
    done = bundle(tmp_path / "autograder.tar")
    assert done.returncode == 2 and "usage: python -m gradescope.bundle OUT.zip" in done.stderr


def test_the_bundle_bakes_in_a_course_file_and_refuses_a_wrong_one(built_for_the_course, tmp_path):
    with zipfile.ZipFile(built_for_the_course) as zf:
        assert zf.read("nskit/course.toml").decode() == course_file(tmp_path / "c.toml").read_text()
    (tmp_path / "wrong.toml").write_text("[points]\n01 = 'ten'\n")
    done = bundle(tmp_path / "autograder.zip", "--course", tmp_path / "wrong.toml")
    assert done.returncode == 2 and "give a number" in done.stderr
    assert not (tmp_path / "autograder.zip").exists()
    made = subprocess.run(["make", "-s", "gradescope-bundle", f"COURSE={tmp_path / 'c.toml'}",
                           f"BUNDLE={tmp_path / 'made.zip'}"], cwd=ROOT, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    with zipfile.ZipFile(tmp_path / "made.zip") as zf:
        assert "nskit/course.toml" in zf.namelist()


# The Classroom-shaped class of test_class, each repository submitted on its
# own, as Gradescope's GitHub or upload submission puts it in submission/.

@pytest.fixture(scope="module")
def repositories(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    return root, build_class(root)


@pytest.mark.slow
@pytest.mark.parametrize("learner", ["nskit-ann", "nskit-cy", "nskit-dee", "nskit-eve",
                                     "nskit-cee"])
def test_the_class_through_the_autograder(built_for_the_course, repositories, tmp_path, learner):
    root, expected = repositories
    run = unpacked(built_for_the_course, tmp_path)
    (run.root / "submission").rmdir()
    shutil.copytree(root / learner, run.root / "submission")
    results = run()
    assert str(root) not in json.dumps(results) and str(tmp_path) not in json.dumps(results)
    assert results["stdout_visibility"] == "hidden"
    if learner == "nskit-cy":
        assert results["score"] == 0 and results["tests"] == []
        assert results["output"] == f"0 points: {NO_WORK}."
        return
    assert results["score"] == sum(points(expected[learner]).values())
    assert isinstance(results["execution_time"], float)
    where = {"nskit-dee": "submission/nskit-main/work", "nskit-eve": "submission"}.get(
        learner, "submission/work")
    assert results["output"].startswith(f"Graded: {where}\n")
    assert len(results["tests"]) == OUT_OF
    for test in results["tests"]:
        assert test["max_score"] == WEIGHT[test["name"][:2]]
        assert test["visibility"] in ("visible", "hidden", "after_due_date")
    failing = [t for t in results["tests"] if t["status"] != "passed"]
    assert all(t["score"] == 0 and t["output"] for t in failing)
    assert f"Graded {where} natively, in " in run.stdout


def test_an_empty_submission_earns_0_and_says_what_to_upload(autograder):
    (autograder.root / "submission" / "notes.txt").write_text("hello")
    results = autograder()
    assert results["score"] == 0 and results["tests"] == []
    assert results["output"] == "0 points: " + NOTHING_TO_GRADE
    assert results["stdout_visibility"] == "hidden"
    assert autograder.stdout.startswith("No step programs in the submission: 0 points")


def test_the_course_file_shows_the_autograders_stdout_to_learners(built, tmp_path):
    run = unpacked(built, tmp_path)
    (run.root / "source" / "nskit" / "course.toml").write_text(
        '[visibility]\nstdout = "after_published"\n')
    assert run()["stdout_visibility"] == "after_published"


def _not_graded(autograder, *, status=1, **how):
    """run_autograder where it cannot grade: no results.json, so that
    Gradescope records no score and shows the autograder as failed; staff
    read why, and that nothing was recorded, on its stdout."""
    (autograder.root / "results").mkdir(exist_ok=True)
    (autograder.root / "results" / "results.json").write_text('{"score": 0}')  # stale
    assert autograder(status=status, **how) is None
    assert autograder.stdout.startswith("Not graded")
    assert "no score was recorded" in autograder.stdout.lower()
    return autograder.stdout


# Containers that cannot grade, as Gradescope's may be: one whose limit of
# user namespaces is 0 (a user namespace of the test's own), and, for root,
# Docker's default: root without CAP_SYS_ADMIN.
REFUSING = {
    "no user namespaces": "unshare --user --map-root-user --mount --pid --fork --mount-proc "
                          "bash -c 'echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\"' ",
    "root without CAP_SYS_ADMIN": "setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin ",
}


@pytest.mark.parametrize("wrap", REFUSING.values(), ids=REFUSING.keys())
def test_a_container_that_cannot_grade_records_no_score(autograder, wrap):
    if "sys_admin" in wrap and os.geteuid() != 0:
        pytest.skip("an ordinary user has no CAP_SYS_ADMIN to drop")
    for nn in STEP_NAMES:
        shutil.copy(step_path(nn), autograder.root / "submission" / file_name(nn))
    # No VM either (test_vm grades inside one).
    stdout = _not_graded(autograder, wrap="NSKIT_VM=never " + wrap)
    assert stdout.startswith("Not graded. The grader could not run here: ")
    assert "A VM could grade instead, but" in stdout and "Rebuild the autograder" in stdout


def test_a_grader_that_fails_records_no_score(autograder):
    for nn in STEP_NAMES:
        shutil.copy(step_path(nn), autograder.root / "submission" / file_name(nn))
    main = autograder.root / "source" / "nskit" / "conformance" / "__main__.py"
    main.write_text('import sys\nif "--gradescope" in sys.argv:\n'
                    '    sys.exit("RuntimeError: the grader broke")\n' + main.read_text())
    stdout = _not_graded(autograder)
    assert "The grader failed (exit status 1): RuntimeError: the grader broke" in stdout


def test_a_broken_course_file_records_no_score(autograder):
    (autograder.root / "submission" / file_name("00")).write_text("")
    (autograder.root / "source" / "nskit" / "course.toml").write_text("[points]\n01 = 'ten'\n")
    assert "give a number" in _not_graded(autograder)


def test_an_autograder_whose_setup_failed_records_no_score(autograder):
    stdout = _not_graded(autograder, python=str(autograder.root / "no-such-python"))
    assert "setup.sh did not finish" in stdout


def _pypi_reachable():
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.network
def test_setup_sh_installs_the_grader(autograder):
    if not _pypi_reachable():
        pytest.skip("setup.sh installs nskit's requirements from PyPI, which is out of reach")
    fake = autograder.root / "fake-bin"
    fake.mkdir()
    (fake / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {quote(str(fake / "apt.log"))}\n')
    (fake / "apt-get").chmod(0o755)
    env = dict(os.environ, AUTOGRADER_ROOT=str(autograder.root),
               PATH=f"{fake}:{os.path.dirname(PYTHON)}:{os.environ['PATH']}")
    done = subprocess.run(["bash", str(autograder.root / "source" / "setup.sh")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "install -y -qq python3 python3-venv iproute2 procps util-linux" in (
        fake / "apt.log").read_text()
    for nn in STEP_NAMES:
        shutil.copy(step_path(nn), autograder.root / "submission" / file_name(nn))
    results = autograder(python=None)          # the Python that setup.sh installed
    assert results["score"] == 10 * len(STEP_NAMES)  # every step, 10 points each
