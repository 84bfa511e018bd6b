"""The Gradescope autograder zip, and its run_autograder run against sample
submissions in a tmp tree laid out as Gradescope's /autograder (never the
real /autograder: AUTOGRADER_ROOT points the scripts at the tmp tree).
"""
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import zipfile
from shlex import quote

import pytest

from conftest import PYTHON, ROOT, step_path

sys.path.insert(0, str(ROOT))
from conformance.checks import STEPS, checks_for  # noqa: E402
from exercises.tasks import file_name  # noqa: E402

OUT_OF = sum(len(checks_for(nn)) for nn in STEPS)


def bundle(out):
    return subprocess.run([PYTHON, "-m", "gradescope.bundle", str(out)], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    done = bundle(out)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def autograder(built, tmp_path):
    """A fresh /autograder-like tree: the zip unpacked in source/ as Gradescope
    does, an empty submission/, and a function that runs run_autograder there
    (with the kit's Python unless told otherwise) and returns results.json."""
    subprocess.run(["unzip", "-q", str(built), "-d", str(tmp_path / "source")], check=True)
    (tmp_path / "submission").mkdir()

    def run(python=PYTHON, wrap=""):
        env = dict(os.environ, AUTOGRADER_ROOT=str(tmp_path))
        env.pop("NSKIT_PYTHON", None)
        if python:
            env["NSKIT_PYTHON"] = python
        script = quote(str(tmp_path / "source" / "run_autograder"))
        done = subprocess.run(["bash", "-c", wrap + script], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads((tmp_path / "results" / "results.json").read_text())

    run.root = tmp_path
    return run


def test_the_bundle_holds_the_scripts_and_the_grader(built, tmp_path):
    with zipfile.ZipFile(built) as zf:
        modes = {i.filename: i.external_attr >> 16 for i in zf.infolist()}
    for script in ("setup.sh", "run_autograder"):
        assert modes[script] & stat.S_IXUSR, f"{script} is not executable in the zip"
    assert {"nskit/requirements.txt", "nskit/conformance/cli.py",
            "nskit/conformance/sandbox.py", "nskit/gradescope/autograde.py"} <= set(modes)
    assert not [n for n in modes if "__pycache__" in n or n.startswith((".venv", "nskit/tests"))]
    again = tmp_path / "again.zip"
    assert bundle(again).returncode == 0 and again.read_bytes() == built.read_bytes()


def test_the_bundle_refuses_a_name_that_is_not_a_zip(tmp_path):
    done = bundle(tmp_path / "autograder.tar")
    assert done.returncode == 2 and "usage: python -m gradescope.bundle OUT.zip" in done.stderr


def test_a_submission_is_graded_check_by_check(autograder):
    work = autograder.root / "submission" / "my-repo" / "work"
    work.mkdir(parents=True)
    for nn in STEPS:
        shutil.copy(step_path(nn if nn != "05" else "00"), work / file_name(nn))
    results = autograder()
    failing = [t for t in results["tests"] if t["score"] == 0]
    assert len(results["tests"]) == OUT_OF
    assert {t["name"][:6] for t in failing} == {"05 pid"}
    assert results["score"] == OUT_OF - len(failing) > 0
    assert all(t["max_score"] == 1 for t in results["tests"])
    assert all("Hint:" in t["output"] for t in failing)
    assert results["output"].startswith("Graded: submission/my-repo/work\n")
    assert f"score: {results['score']}/{OUT_OF} checks passed" in results["output"]


def test_an_empty_submission_says_what_to_upload(autograder):
    (autograder.root / "submission" / "notes.txt").write_text("hello")
    results = autograder()
    assert results["score"] == 0 and results["tests"] == []
    assert "no step programs in your submission" in results["output"]


# Containers that cannot grade, as Gradescope's may be: one whose limit of
# user namespaces is 0 (a user namespace of the test's own), and, for root,
# Docker's default: root without CAP_SYS_ADMIN.
REFUSING = {
    "no user namespaces": "unshare --user --map-root-user --mount --pid --fork --mount-proc "
                          "bash -c 'echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\"' ",
    "root without CAP_SYS_ADMIN": "setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin ",
}


@pytest.mark.parametrize("wrap", REFUSING.values(), ids=REFUSING.keys())
def test_a_container_that_cannot_grade_is_explained_not_scored_silently(autograder, wrap):
    if "CAP_SYS_ADMIN" in wrap and os.geteuid() != 0:
        pytest.skip("an ordinary user has no CAP_SYS_ADMIN to drop")
    for nn in STEPS:
        shutil.copy(step_path(nn), autograder.root / "submission" / file_name(nn))
    results = autograder(wrap="NSKIT_VM=never " + wrap)  # no VM either: test_vm's case
    assert results["score"] == 0 and results["tests"] == []
    head, _, rest = results["output"].partition("\n")
    assert head == "Not graded: the grader could not run here."
    assert rest.split("\n")[0].strip(), "the reason the grader gave is missing"
    assert "Course staff:" in results["output"]


def test_an_autograder_whose_setup_failed_still_writes_results(autograder):
    results = autograder(python=str(autograder.root / "no-such-python"))
    assert results["score"] == 0 and "setup.sh did not finish" in results["output"]


def _pypi_reachable():
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


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
    for nn in STEPS:
        shutil.copy(step_path(nn), autograder.root / "submission" / file_name(nn))
    results = autograder(python=None)          # the Python that setup.sh installed
    assert results["score"] == OUT_OF
