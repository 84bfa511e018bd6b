"""One test per check of the step table (see checks.py)."""
import pytest

from .catalog import STEP_NAMES
from .checks import checks_for

CASES = [
    pytest.param(step, index, id=f"{step} {STEP_NAMES[step]}: {check.title}",
                 marks=getattr(pytest.mark, f"step{step}"))
    for step in STEP_NAMES
    for index, check in enumerate(checks_for(step))
]


@pytest.mark.parametrize("step, index", CASES)
def test_check(graded, step, index):
    check = graded[step]["checks"][index]
    if check.get("status") == "skipped":
        pytest.skip(check["seen"])
    assert check["passed"], f"{check['seen']}\nhint: {check['hint']}"
