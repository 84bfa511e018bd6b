"""The grader always ends: every way to start it (`python -m conformance`,
`make grade`, the installed `nskit grade` and `python -m conformance` of a
fresh venv), with one step and with all, returns within a time limit; so
does a grader stopped by a signal, and one whose run times out. Each ends
its launcher and every setup on its way out: nothing of it is left running.
"""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conformance.catalog import STEP_NAMES
from helpers import PYTHON, ROOT, STEPS_DIR, without_notices

LIMIT = 60  # seconds: grading steps/ takes about one


def ended(argv, limit=LIMIT, **kw):
    """Run argv in a session of its own; a run past limit seconds is killed
    with everything it started, and fails the test as a hang."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{argv} still ran after {limit} s:\n{out}\n{err}")
    return proc.returncode, out, without_notices(err)


def entry_point(name, bin_dir, tmp_path):
    """A way to start the grader: argv before its options, and the folder
    it is started in (the checkout, or anywhere for the installed kit)."""
    return {
        "python -m conformance": ([PYTHON, "-m", "conformance"], ROOT),
        "installed nskit grade": ([str(bin_dir / "nskit"), "grade"], tmp_path),
        "installed python -m conformance": ([str(bin_dir / "python"), "-m", "conformance"],
                                            tmp_path),
    }[name]


@pytest.mark.parametrize("entry", ["python -m conformance", "installed nskit grade",
                                   "installed python -m conformance"])
@pytest.mark.parametrize("steps", [["--step", "03"], []], ids=["one step", "every step"])
def test_every_entry_point_ends(installed, tmp_path, entry, steps):
    argv, cwd = entry_point(entry, installed, tmp_path)
    code, out, err = ended([*argv, "--target", str(STEPS_DIR), *steps], cwd=cwd)
    assert code == 0, (out, err)
    graded = {line.split()[0] for line in out.splitlines() if line[:2].isdigit()}
    assert graded == ({"03"} if steps else set(STEP_NAMES)), out
    assert "Traceback" not in err


# Not named "step": the conformance plugin reads that parameter as a step of its own.
@pytest.mark.parametrize("only", ["03", None], ids=["one step", "every step"])
def test_make_grade_ends_and_takes_a_folder_with_a_space(tmp_path, only):
    folder = tmp_path / "class" / "ns-lab-grace hopper"
    folder.mkdir(parents=True)
    for program in STEPS_DIR.glob("0[0-7]_*.py"):
        (folder / program.name).write_bytes(program.read_bytes())
    code, out, err = ended(["make", "-s", "--no-print-directory", "grade", f"TARGET={folder}",
                            *([f"STEP={only}"] if only else [])], cwd=ROOT)
    assert code == 0, (out, err)
    got, _, out_of = out.splitlines()[-1].removeprefix("score: ").split()[0].partition("/")
    assert got == out_of and (int(got) == 7 if only else int(got) > 7), out


# A step that never runs its command: its run lasts until the grader ends it.
SLEEPER = "import time\ntime.sleep(600)\n"


def descendants(pid):
    """Pids of the processes below pid, by their parents in /proc."""
    parents = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                          if ":" in line)
            parents[int(status.parent.name)] = int(fields["PPid"])
        except (OSError, ValueError, KeyError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def running_program(pid, name):
    """Whether a process below pid runs the program name (its run has started)."""
    for child in descendants(pid):
        try:
            if name.encode() in Path(f"/proc/{child}/cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def alive(pids):
    left = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b") ", 1)[1][:1]
        except OSError:
            continue
        if state not in b"ZX":
            left.append(pid)
    return left


@pytest.mark.parametrize("entry", ["python -m conformance", "installed nskit grade"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=lambda s: signal.Signals(s).name)
def test_a_signal_ends_the_grader_its_launcher_and_its_runs(installed, tmp_path, entry,
                                                            signum):
    target = tmp_path / "target"
    target.mkdir()
    (target / "03_uts.py").write_text(SLEEPER)
    argv, cwd = entry_point(entry, installed, tmp_path)
    proc = subprocess.Popen([*argv, "--target", str(target), "--step", "03", "--timeout", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=cwd)
    try:
        deadline = time.monotonic() + LIMIT
        while not running_program(proc.pid, "/nskit/program/03_uts.py"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        below = descendants(proc.pid)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=LIMIT)
    except BaseException:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise
    assert proc.returncode == 128 + signum, (out, err)
    assert without_notices(err).strip() == (
        f"nskit: stopped by {signal.Signals(signum).name} before the grading ended."), err
    # Its launcher, the run's setup, PID 1 and the program: all gone with it.
    deadline = time.monotonic() + 5
    while alive(below) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(below)


def test_a_run_that_times_out_ends_the_grader(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "03_uts.py").write_text(SLEEPER)
    started = time.monotonic()
    code, out, err = ended([PYTHON, "-m", "conformance", "--target", str(target), "--step", "03",
                            "--timeout", "1"], cwd=ROOT)
    assert code == 1, (out, err)
    assert "timed out after 1 s" in out
    assert time.monotonic() - started < 30



@pytest.mark.parametrize("mode", ["--target", "--submissions"])
def test_a_reader_that_stops_reading_costs_no_report_and_no_traceback(tmp_path, mode):
    """`| head` and friends: the reader is gone before the table is printed,
    and every report is written all the same, without a traceback."""
    target = STEPS_DIR
    if mode == "--submissions":
        target = tmp_path / "class"
        (target / "ada").mkdir(parents=True)
        (target / "ada" / "00_skeleton.py").write_bytes((STEPS_DIR / "00_skeleton.py").read_bytes())
    junit, csv = tmp_path / "junit.xml", tmp_path / "scores.csv"
    r, w = os.pipe()
    os.close(r)  # nobody reads: the first print meets a closed pipe
    proc = subprocess.Popen([PYTHON, "-m", "conformance", mode, str(target), "--step", "00",
                             "--junit", str(junit), "--csv", str(csv)],
                            stdout=w, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    os.close(w)
    _, err = proc.communicate(timeout=LIMIT)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert junit.stat().st_size > 0
    assert csv.exists() == (mode == "--submissions")
