"""tools/as-user (make test-as-user): a command as uid 65534 on a copy of the
kit the user may read but not change, with the kit's interpreter reachable,
and nothing left on the machine afterwards."""
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT

pytestmark = pytest.mark.root("it becomes uid 65534 itself")

PROBE = ("id -u; touch nskit-probe 2>/dev/null && echo wrote || echo read-only; "
         ".venv/bin/python -c 'import conformance, sh, tabulate; print(\"imports\")'; pwd")


def test_as_user_runs_as_nobody_on_a_read_only_copy_and_leaves_nothing():
    done = subprocess.run([ROOT / "tools" / "as-user", "sh", "-c", PROBE],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == ["65534", "read-only", "imports", "/tmp/nskit"], done
    assert not Path("/tmp/nskit").exists()
    assert not (ROOT / "nskit-probe").exists()


def test_as_user_refuses_an_ordinary_user_in_one_sentence():
    done = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           "bash", ROOT / "tools" / "as-user"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("as-user: run it as root") and len(done.stderr.splitlines()) == 1
