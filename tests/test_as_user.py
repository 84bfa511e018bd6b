"""The kit's tests for an ordinary user: tools/as-user (make test-as-user)
runs a command as uid 65534 on a copy of the kit the user may read but not
change, with the kit's interpreter reachable, and leaves nothing on the
machine; where user namespaces are refused, the tests that need a frame skip
and say so."""
import subprocess
from pathlib import Path
from shlex import quote

import pytest

from helpers import PYTHON, ROOT, in_frame, refused

AS_USER = pytest.mark.root("it becomes uid 65534 itself")

PROBE = ("id -u; touch nskit-probe 2>/dev/null && echo wrote || echo read-only; "
         ".venv/bin/python -c 'import conformance, sh, tabulate; print(\"imports\")'; pwd; "
         "echo $PATH")


@AS_USER
def test_as_user_runs_as_nobody_on_a_read_only_copy_and_leaves_nothing():
    done = subprocess.run([ROOT / "tools" / "as-user", "sh", "-c", PROBE],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == ["65534", "read-only", "imports", "/tmp/nskit",
                                            "/usr/local/bin:/usr/bin:/bin"], done
    assert not Path("/tmp/nskit").exists()
    assert not (ROOT / "nskit-probe").exists()


@AS_USER
def test_as_user_refuses_an_ordinary_user_in_one_sentence():
    # In a frame that lets the user reach the checkout, wherever the clone is
    # (a 0700 folder such as mktemp -d's shuts every other user out).
    done = in_frame("bash tools/as-user", user=65534, timeout=60)
    assert done.code == 2, done
    assert done.err.startswith("as-user: run it as root") and len(done.err.splitlines()) == 1


@pytest.mark.slow  # a pytest session of its own, in a frame
def test_where_user_namespaces_are_refused_framed_tests_skip_saying_why():
    inner = (f"{quote(PYTHON)} -m pytest -q -p no:cacheprovider -p no:xdist "
             f"--basetemp /tmp/inner tests/test_guard.py")
    result = in_frame(refused(inner), own_root=True, user=65534)
    assert "1 skipped" in result.out or "2 skipped" in result.out, result
    assert "needs a frame: root, or user namespaces, which this machine refuses" in result.out
    assert " failed" not in result.out and " error" not in result.out, result
