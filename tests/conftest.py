"""pytest's hooks for the kit's tests: the `root` and `docker` markers, the
fixtures of the kit as a package that two modules share, and the guard that
every test leaves the machine as it found it (helpers.machine_traces). What
else tests share is in helpers.py."""
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from functools import cache
from pathlib import Path

import pytest

# pytest keeps the test modules it rewrites (tests/__pycache__, which git
# ignores) even where PYTHONDONTWRITEBYTECODE is set: else each of make
# test's workers rewrites every module anew, a second and a half of CPU each.
# The programs the tests start still follow the variable.
sys.dont_write_bytecode = False

from helpers import IS_ROOT, PYTHON, ROOT, left_behind, machine_traces  # noqa: E402

PIP = [PYTHON, "-m", "pip", "--disable-pip-version-check", "--no-input"]

# Prints from a clone child must survive a pipe without this crutch.
os.environ.pop("PYTHONUNBUFFERED", None)


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("root")
    if marker and not IS_ROOT:
        why = f": {marker.args[0]}" if marker.args else ""
        pytest.skip(f"needs the machine's root{why} (run it with sudo)")
    if item.get_closest_marker("docker") and (missing := docker_missing()):
        pytest.skip(f"needs a Docker daemon: {missing}")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    """The tests that use a module's own fixtures (a gallery graded) share
    one worker, and those that use the session's (the wheel, installed)
    another, so that each fixture is made once a session, not once for
    every worker that runs one of them."""
    for item in items:
        scopes = shared_fixtures(item)
        if "session" in scopes:
            item.add_marker(pytest.mark.xdist_group("session-fixtures"))
        elif "module" in scopes:
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}-fixtures"))


def shared_fixtures(item):
    """The scopes of the module fixtures and of this file's session fixtures
    a test asks for, itself or through others (not pytest's own, such as
    tmp_path_factory, nor the autouse ones: every test has those)."""
    defs = item._fixtureinfo.name2fixturedefs
    seen, todo = set(), list(item._fixtureinfo.argnames)
    while todo:
        name = todo.pop()
        if name not in seen and name in defs:
            seen.add(name)
            todo += defs[name][-1].argnames
    return {fixture.scope for fixture in (defs[name][-1] for name in seen)
            if fixture.scope == "module"
            or (fixture.scope == "session" and fixture.func.__module__ == __name__)}


@cache
def docker_missing():
    """Why no Docker daemon answers here, or None where one does."""
    if not shutil.which("docker"):
        return "Docker is missing (apt-get install docker.io, then start its daemon)"
    try:
        subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=True)
    except (subprocess.SubprocessError, OSError):
        return "none answers (sudo systemctl start docker, or dockerd & as root)"
    return None


# The kit as a package (tests/test_package.py, tests/test_ends.py), no network:
# the wheel built with the kit's own setuptools, and a fresh venv that
# borrows sh and tabulate from the kit's venv through a .pth file.

def _run(argv):
    return subprocess.run(argv, capture_output=True, text=True)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    # From a copy, so the build's own folders never land in the checkout.
    tmp = tmp_path_factory.mktemp("package")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "work", "*.egg-info", "__pycache__", ".pytest_cache"))
    done = _run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                "--wheel-dir", str(tmp / "dist"), str(source)])
    assert done.returncode == 0, done.stderr
    (built,) = (tmp / "dist").glob("nskit-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory):
    """A fresh venv with the wheel installed: its bin folder."""
    env = tmp_path_factory.mktemp("venv") / "env"
    # With a link to its interpreter, as `python -m venv` and pipx make one on Linux.
    venv.create(env, with_pip=False, symlinks=True)
    python = env / "bin" / "python"
    done = _run([*PIP, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)])
    assert done.returncode == 0, done.stderr
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    Path(site.stdout.strip(), "kit-dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n")
    return env / "bin"


@pytest.fixture(scope="session")
def machine_at_start():
    return machine_traces()


@pytest.fixture(autouse=True)
def machine_unchanged(machine_at_start):
    """After each test: nothing of the kit's is left on the machine. A run's
    processes may take a moment to die with their grader: a short grace."""
    yield
    deadline = time.monotonic() + 3
    while (changed := left_behind(machine_at_start, machine_traces())) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not changed, f"the test left this on the machine: {changed}"
