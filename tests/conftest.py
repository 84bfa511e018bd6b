"""Fixtures for the kit's own tests.

Everything that creates namespaces runs inside a throwaway frame, so a bug in
a step or a test cannot change the real machine's hostname, mounts, IPC
objects or network links.
"""
import json
import os
import sys
from shlex import quote as sh_quote
from pathlib import Path

import pytest
import sh

from tools.frame import expose_to_users, own_root as own_root_prelude

# Prints from a clone child must survive a pipe without this crutch.
os.environ.pop("PYTHONUNBUFFERED", None)

ROOT = Path(__file__).resolve().parent.parent
STEPS = ROOT / "steps"
PYTHON = sys.executable

_unshare = sh.Command("unshare").bake(
    "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "--mount-proc",
    "--propagation", "private",
    _ok_code=range(256), _return_cmd=True, _cwd=str(ROOT), _timeout=120,
)


class Framed:
    """What a script printed in its frame, and how it exited."""

    def __init__(self, cmd):
        self.code = cmd.exit_code
        self.out = cmd.stdout.decode(errors="replace")
        self.err = cmd.stderr.decode(errors="replace")

    def __repr__(self):
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


def in_frame(script, rshared=False, user=None, own_root=False, mytmp=False, keep=(), setup="",
             timeout=120):
    """Run a bash script in a throwaway frame, from the repo's folder. With
    own_root, on a root of its own in memory (and /mytmp in it if mytmp,
    and the folders in keep where they are);
    with rshared, its / propagates mounts the way a systemd host's does;
    setup is bash run as root first; with user (a uid), the script runs as
    that ordinary user, with no capabilities; it is stopped after timeout seconds."""
    prelude = own_root_prelude(mytmp, keep) if own_root else ""
    prelude += "mount --make-rshared / && " if rshared else ""
    prelude += setup
    if user is not None:
        prelude += expose_to_users()
        script = (f"exec setpriv --reuid {user} --regid {user} --clear-groups "
                  f"--inh-caps=-all bash -c {sh_quote(script)}")
    return Framed(_unshare("bash", "-c", prelude + script, _timeout=timeout))


def step_path(nn):
    """steps/NN_name.py for a two-digit step number."""
    (path,) = STEPS.glob(f"{nn}_*.py")
    return path


@pytest.fixture
def frame():
    return in_frame


class Graded:
    """What `python -m conformance` said of a folder: exit code, table, and
    every check's verdict as {step: {title: check}}."""

    def __init__(self, done, report):
        self.code, self.out, self.err = done.exit_code, done.stdout.decode(), done.stderr.decode()
        self.steps = {}
        if report.exists():
            for label in json.loads(report.read_text()).values():
                for step in label["steps"]:
                    self.steps[step["step"]] = {c["title"]: c for c in step["checks"]}

    def failed(self, step):
        """Titles of the checks of a step that failed."""
        return {title for title, check in self.steps[step].items() if not check["passed"]}

    def __repr__(self):
        return f"<grader exit {self.code}\n{self.out}\n{self.err}>"


_grader = sh.Command(PYTHON).bake("-m", "conformance", _ok_code=range(256), _return_cmd=True,
                                  _cwd=str(ROOT), _timeout=300)


def grade(*args, tmp):
    """Run the grader with these arguments (e.g. "--target", dir), its JSON
    report written under the folder tmp."""
    report = Path(tmp) / "grader-report.json"
    report.unlink(missing_ok=True)
    return Graded(_grader(*args, "--json", str(report)), report)


def pytest_configure(config):
    # Until the project's configuration lists them, so --strict-markers accepts them.
    for name, what in (("slow", "takes more than a few seconds (e.g. boots a VM)"),
                       ("network", "needs the network"), ("docker", "needs Docker"),
                       ("root", "needs root")):
        config.addinivalue_line("markers", f"{name}: {what}")
