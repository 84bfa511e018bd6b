"""The conformance checks as a pytest plugin.

    pytest conformance --target DIR [-m step04] [-k hostname] [--junitxml FILE] [-n 2]

One test per check; a marker per step (step00 ... step07). The selected
steps are graded once per session, in parallel, by the grader's own command
(`python -m conformance`) in a process of its own: the grader forks, and
pytest plugins such as xdist run threads, which a fork must not inherit.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .checks import STEPS
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
    for step, name in STEPS.items():
        config.addinivalue_line("markers", f"step{step}: checks of step {step} ({name})")


@pytest.fixture(scope="session")
def graded(request, tmp_path_factory):
    """step -> its result (as the grader's --json writes it), for every selected step."""
    config = request.config
    wanted = sorted({item.callspec.params["step"] for item in request.session.items
                     if hasattr(item, "callspec") and "step" in item.callspec.params})
    report = tmp_path_factory.mktemp("conformance") / "results.json"
    target = config.getoption("--target")
    argv = [sys.executable, "-m", "conformance", "--target", target, "--json", str(report),
            "--timeout", str(config.getoption("--run-timeout"))]
    for step in wanted:
        argv += ["--step", step]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if done.returncode == 2:
        pytest.exit(done.stderr.strip(), returncode=2)
    steps = json.loads(report.read_text())[target]["steps"]
    return {result["step"]: result for result in steps}
