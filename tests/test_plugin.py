"""The conformance plugin (`pytest conformance`) grades once per session,
however many xdist workers share the session."""
import os
import subprocess

import pytest

from helpers import PYTHON, ROOT

# Started before anything else in every Python process: notes each grader.
COUNT = """import os, sys
if sys.orig_argv[1:3] == ["-m", "conformance"]:
    with open(os.environ["NSKIT_GRADER_LOG"], "a") as fh:
        fh.write(" ".join(sys.orig_argv) + "\\n")
"""


@pytest.mark.slow  # a pytest session of two workers of its own
def test_two_workers_grade_once(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(COUNT)
    log = tmp_path / "graders.log"
    env = dict(os.environ, PYTHONPATH=str(tmp_path), NSKIT_GRADER_LOG=str(log),
               PYTEST_ADDOPTS="-p no:cacheprovider")
    done = subprocess.run([PYTHON, "-m", "pytest", "conformance", "-n", "2", "-m", "step00 or step03",
                           "--basetemp", str(tmp_path / "base")],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 workers" in done.stdout and " passed" in done.stdout, done.stdout
    graders = log.read_text().splitlines()
    assert len(graders) == 1, graders
    assert "--step 00 --step 03" in graders[0], graders
