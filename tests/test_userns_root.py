"""Root of a user namespace that does not own the machine's namespaces (as
`unshare -r` or a rootless container makes it) grades as an ordinary user
does: the whole class, full marks for the kit's steps, never "cannot return
to the grader's namespace"."""
import json
import shutil
from shlex import quote

import pytest

from helpers import IS_ROOT, PYTHON, STEPS_DIR, in_frame

# A user namespace whose maps are the machine's whole range, one to one: its
# root looks like the machine's by its maps, yet owns none of its namespaces.
FULL_MAP = """
import ctypes, os, sys
go_r, go_w = os.pipe()
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:
    if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:
        sys.exit("unshare(CLONE_NEWUSER) failed")
    os.write(ready_w, b"u")
    os.read(go_r, 1)
    os.execvp(sys.argv[1], sys.argv[1:])
os.read(ready_r, 1)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{name}", "w") as fh:
        fh.write("0 0 4294967295")
os.write(go_w, b"g")
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def a_class(folder, learners=3):
    for n in range(learners):
        learner = folder / f"learner{n}"
        learner.mkdir(parents=True)
        for step in ("01", "03", "05"):
            shutil.copy(next(STEPS_DIR.glob(f"{step}_*.py")), learner)
    return folder


def grade_in(tmp_path, wrapper):
    folder = a_class(tmp_path / "class")
    report = tmp_path / "report.json"
    command = (f"{wrapper} {quote(PYTHON)} -m conformance --submissions {quote(str(folder))} "
               f"--step 01 --step 03 --step 05 --json {report} --csv {tmp_path / 'scores.csv'}")
    done = in_frame(command)
    assert "cannot return" not in done.err and done.code == 0, done
    results = json.loads(report.read_text())
    assert len(results) == 3, done
    for label, result in results.items():
        for step in result["steps"]:
            assert all(c["passed"] for c in step["checks"]), (label, step)


def test_root_of_unshare_r_grades_a_class(tmp_path):
    grade_in(tmp_path, "unshare -r")


@pytest.mark.skipif(not IS_ROOT, reason="only the machine's root may map its whole range")
def test_root_of_a_namespace_mapped_like_the_machine_s_grades_a_class(tmp_path):
    grade_in(tmp_path, f"{quote(PYTHON)} -c {quote(FULL_MAP)}")
