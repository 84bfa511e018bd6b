"""Grade one Gradescope submission: python -m gradescope.autograde ROOT.

ROOT is /autograder: the learner's files are in ROOT/submission (at its top,
or in one folder of it such as work/), and Gradescope reads
ROOT/results/results.json. A results.json is written whatever happens, its
`output` saying why when the submission could not be graded: no step
programs, or a container that refuses the user namespaces every run needs.
That last is found by grading a known-good program first (the kit's step 00,
in reference/): if it does not pass here, the submission is graded inside
a throwaway VM (setup.sh installs one), or, where none can start, not at all.
The output says which way it was graded, and how long that took.
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conformance import vm
from conformance.discover import STEP_FILE

ROOT = Path(__file__).resolve().parent.parent
STAFF = ("Course staff: nskit runs every program in a throwaway host made of user "
         "namespaces, and this autograder's container refuses them; the VM that grades "
         "instead (setup.sh installs it: see its build log) cannot start either. Rebuild the "
         "autograder, or download the submissions and grade them on a Linux machine "
         "(python -m conformance --submissions DIR), or use GitHub Classroom (nskit's README).")


def _has_steps(folder):
    return any(STEP_FILE.match(p.name) for p in folder.iterdir() if p.is_file())


def find_target(submission):
    """The folder of the submission holding step programs: its top, else the
    shallowest one (work/ wins a tie), else None."""
    folders = [submission, *sorted(p for p in submission.rglob("*") if p.is_dir()
                                   and not any(part.startswith(".") for part in p.parts))]
    found = [f for f in folders if _has_steps(f)]
    if not found:
        return None
    return min(found, key=lambda f: (len(f.parts), f.name != "work", str(f)))


def not_graded(why):
    return {"score": 0, "tests": [], "output": f"Not graded: {why}"}


def _grader(*args):
    return subprocess.run([sys.executable, "-m", "conformance", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


def _last_line(text):
    return (text.strip().splitlines() or ["(it said nothing)"])[-1]


def cannot_grade_here():
    """None when a known-good program passes here, else why it does not."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        done = _grader("--target", ROOT / "reference", "--step", "00", "--json", report,
                       "--vm", "never")
        if done.returncode == 0:
            return None
        if done.returncode == 1 and report.exists():
            (steps,) = json.loads(report.read_text()).values()
            return next(c["seen"] for c in steps["steps"][0]["checks"] if not c["passed"])
        return _last_line(done.stderr)


def _no_vm():
    """None where a VM can grade instead, else why none can."""
    try:
        vm.Machine.find()
    except vm.NoVM as error:
        return f"A VM could grade instead, but {error}."
    return None


def grade(root):
    submission = root / "submission"
    if not submission.is_dir() or (target := find_target(submission)) is None:
        return not_graded("no step programs in your submission. Upload the files of your "
                          "work/ folder (00_skeleton.py to 07_combined.py), or the folder.")
    how, where = "natively", []
    why = cannot_grade_here()
    if why:
        no_vm = _no_vm()
        if no_vm:
            return not_graded(f"the grader could not run here.\n{why}\n{no_vm}\n\n{STAFF}")
        how, where = ("inside a throwaway VM, as this container refuses the namespaces the "
                      "grader needs"), ["--vm", "always"]
    report = root / "results" / "results.json"
    started = time.monotonic()
    done = _grader("--target", target, "--gradescope", report, *where)
    how += f", in {time.monotonic() - started:.1f} s"
    if done.returncode not in (0, 1) or not report.exists():
        return not_graded(f"the grader failed (exit status {done.returncode}): "
                          f"{_last_line(done.stderr)}\n\n"
                          f"Course staff: please report this to nskit's maintainers.")
    results = json.loads(report.read_text())
    results["output"] = f"Graded: {target.relative_to(root)}\nGraded {how}\n\n{done.stdout}"
    return results


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m gradescope.autograde AUTOGRADER_ROOT", file=sys.stderr)
        return 2
    root = Path(args[0])
    (root / "results").mkdir(parents=True, exist_ok=True)
    results = grade(root)
    with open(root / "results" / "results.json", "w") as fh:
        json.dump(results, fh, indent=2)
        fh.write("\n")
    print(results.get("output", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
