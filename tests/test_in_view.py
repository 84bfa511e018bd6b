"""Nothing of the grader in view: a run's PID 1 shows a name, never the
grader's command line (its class folder, --roster, --csv and their paths),
so neither `ps aux` nor /proc/1/cmdline shows it to a program, and no report
keeps it. A copy of the witness that ran unobserved (through a copy of its
shell) is said to be one; its output is not the program's last words.
"""
import json
import shutil
import subprocess

from conformance.checks import RAN
from helpers import PYTHON, ROOT, step_path

# Step 00 done right, which first prints what it sees of its run's PID 1.
PEEK = '''import sys
for name in ("cmdline", "comm", "environ"):
    try:
        with open("/proc/1/" + name, "rb") as fh:
            print(name, repr(fh.read()))
    except OSError as error:
        print(name, error.strerror)
sys.stdout.flush()
'''

# Runs its command through a copy of the witness's shell: the copy's
# output is the article's commands, but no kernel fact is about the command.
THROUGH_A_COPY = '''import os, sys
fd = os.memfd_create("sh", 0)
with open("/nskit/sh", "rb") as shell:
    os.write(fd, shell.read())
pid = os.fork()
if pid == 0:
    os.execv(f"/proc/self/fd/{fd}", ["sh", *sys.argv[1:]])
os.waitpid(pid, 0)
'''


def test_the_run_sees_a_pid_1_with_a_name_and_no_command_line_of_the_graders(tmp_path):
    cls = tmp_path / "secret-class-folder"
    ann = cls / "ann"
    ann.mkdir(parents=True)
    (ann / "00_skeleton.py").write_text(PEEK + step_path("00").read_text())
    # 05 without its PID namespace: its ps aux shows the run's own PID 1.
    shutil.copy(step_path("00"), ann / "05_pid.py")
    roster = tmp_path / "roster.csv"
    roster.write_text("student_repository_name,roster_identifier,email\nann,a1,ann@example.edu\n")
    report = tmp_path / "full.json"
    done = subprocess.run(
        [PYTHON, "-m", "conformance", "--submissions", cls, "--step", "00", "--step", "05",
         "--roster", roster, "--csv", tmp_path / "scores.csv", "--json", report],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done
    steps = {s["step"]: s for s in json.loads(report.read_text())["ann"]["steps"]}
    seen = steps["00"]["output"]
    assert "cmdline b'nskit-init\\x00'" in seen, seen
    assert "comm b'nskit-init\\n'" in seen, seen
    assert "environ b'" not in seen, seen  # not the program's to read
    ps = steps["05"]["output"]
    (pid_1,) = [line for line in ps.splitlines() if line.split()[1:2] == ["1"]]
    assert pid_1.endswith(" nskit-init"), ps
    assert steps["00"]["points"] == steps["00"]["max_points"]
    text = report.read_text()
    for grader_s in ("--submissions", "--roster", "--csv", "-m conformance", str(roster)):
        assert grader_s not in text, grader_s


def test_a_copy_of_the_witness_is_not_taken_for_last_words(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "00_skeleton.py").write_text(THROUGH_A_COPY)
    report = tmp_path / "full.json"
    done = subprocess.run([PYTHON, "-m", "conformance", "--target", target, "--step", "00",
                           "--json", report], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done
    (label,) = json.loads(report.read_text()).values()
    (step,) = label["steps"]
    ran = step["checks"][0]
    assert ran["title"] == RAN and ran["status"] == "failed"
    assert "$ hostname" in step["output"]  # the copy did run the article's commands
    assert ran["seen"] == ("the command never ran as given: a copy of it ran instead (its "
                           "output shows the article's commands), and a copy cannot be observed")
    assert "last words" not in ran["seen"]
