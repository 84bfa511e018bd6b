"""The conformance checks as a pytest plugin.

    pytest conformance --target DIR [-m step04] [-k hostname] [--junitxml FILE] [-n 2]

One test per check; a marker per step (step00 ... step07). The selected
steps are graded once per session (once in all, under xdist's -n), in
parallel, by the grader's own command (`python -m conformance`) in a process
of its own: the grader forks, and pytest plugins such as xdist run threads,
which a fork must not inherit.
"""
import fcntl
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .catalog import STEP_NAMES
from .sandbox import Limits

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TARGET = ROOT / "steps"


def pytest_addoption(parser):
    group = parser.getgroup("nskit", "nskit conformance")
    group.addoption("--target", metavar="DIR", default=str(DEFAULT_TARGET),
                    help="folder of step programs to grade (default: the kit's steps/)")
    group.addoption("--run-timeout", metavar="S", type=float, default=Limits().timeout,
                    help="seconds each program run may take (default %(default)g)")


def pytest_configure(config):
    for step, name in STEP_NAMES.items():
        config.addinivalue_line("markers", f"step{step}: checks of step {step} ({name})")


def _shared_folder(config, tmp_path_factory):
    """A folder every process of this pytest session sees: under xdist the
    workers' own temporary folders are siblings in it."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


def _grade(argv, report):
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode == 2:
        return {"error": done.stderr.strip()}
    return {"steps": json.loads(report.read_text())}


@pytest.fixture(scope="session")
def graded(request, tmp_path_factory):
    """step -> its result (as the grader's --json writes it), for every selected step.
    Graded once per session: under xdist the first worker grades, the others
    wait on the lock and read what it wrote."""
    config = request.config
    wanted = sorted({item.callspec.params["step"] for item in request.session.items
                     if hasattr(item, "callspec") and "step" in item.callspec.params})
    target = config.getoption("--target")
    timeout = str(config.getoption("--run-timeout"))
    key = hashlib.sha256(json.dumps([target, timeout, wanted]).encode()).hexdigest()[:16]
    shared = _shared_folder(config, tmp_path_factory)
    cached = shared / f"conformance-{key}.json"
    with open(shared / "conformance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not cached.exists():
            report = shared / f"conformance-{key}-report.json"
            argv = [sys.executable, "-m", "conformance", "--target", target,
                    "--json", str(report), "--timeout", timeout]
            for step in wanted:
                argv += ["--step", step]
            cached.write_text(json.dumps(_grade(argv, report)))
    outcome = json.loads(cached.read_text())
    if "error" in outcome:
        pytest.exit(outcome["error"], returncode=2)
    steps = outcome["steps"][target]["steps"]
    return {result["step"]: result for result in steps}
