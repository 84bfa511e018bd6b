"""pytest's hooks for the kit's tests: the `root` and `docker` markers, and
the guard that every test leaves the machine as it found it
(helpers.machine_traces). What tests share is in helpers.py."""
import os
import shutil
import subprocess
import sys
import time
from functools import cache

import pytest

# pytest keeps the test modules it rewrites (tests/__pycache__, which git
# ignores) even where PYTHONDONTWRITEBYTECODE is set: else each of make
# test's workers rewrites every module anew, a second and a half of CPU each.
# The programs the tests start still follow the variable.
sys.dont_write_bytecode = False

from helpers import IS_ROOT, left_behind, machine_traces  # noqa: E402

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
    """The tests that use a module's own fixtures (a gallery graded, a wheel
    built) share one worker, so that each fixture is made once a session,
    not once for every worker that runs one of them."""
    for item in items:
        if module_fixtures(item):
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}-fixtures"))


def module_fixtures(item):
    """The module-scoped fixtures a test asks for, itself or through others
    (not the autouse ones: every test of the module has those)."""
    defs = item._fixtureinfo.name2fixturedefs
    seen, todo = set(), list(item._fixtureinfo.argnames)
    while todo:
        name = todo.pop()
        if name not in seen and name in defs:
            seen.add(name)
            todo += defs[name][-1].argnames
    return {name for name in seen if defs[name][-1].scope == "module"}


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
