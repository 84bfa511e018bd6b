"""Grade one Gradescope submission: python -m gradescope.autograde ROOT.

ROOT is /autograder: the learner's files are in ROOT/submission, and
Gradescope reads ROOT/results/results.json. The work is found where the
grader finds a learner's work everywhere (conformance.discover): work/, then
the top, then the same inside a single unzipped folder.

Graded or not, never a silent zero. A submission with no step programs
earns 0, and its results.json says why in one sentence. One that could not
be graded through no fault of the learner (this container refuses the
namespaces the grader needs and no VM can start, or the grader failed) gets
no results.json and a non-zero exit: Gradescope records no score and shows
the autograder as failed ("The autograder failed to execute correctly"),
and staff read why on this script's stdout, which Gradescope shows them
alone, fix it and regrade. Whether grading works here at all is found by
grading a known-good program first (the kit's step 00, in reference/):
where it does not pass, the submission is graded inside a throwaway VM
(setup.sh installs one). The output says which way it was graded, and how
long that took. The course file baked into the bundle (course.toml), if
any, sets the points and who reads this script's stdout.
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conformance import course as courses
from conformance import report, vm
from conformance.discover import NO_WORK, find_work, looks_like_the_kit

ROOT = Path(__file__).resolve().parent.parent
COURSE = ROOT / "course.toml"
STAFF = ("nskit runs every program in a throwaway host made of user namespaces, and this "
         "autograder's container refuses them; the VM that grades instead (setup.sh installs "
         "it: see its build log) cannot start either. Rebuild the autograder, or download the "
         "submissions and grade them on a Linux machine (python -m conformance --submissions "
         "DIR), or use GitHub Classroom (nskit's README).")
NOTHING_TO_GRADE = ("there are no step programs in your submission: upload the files of your "
                    "work/ folder (00_skeleton.py to 07_combined.py), the folder itself, or "
                    "your repository with work/ committed.")
REGRADE = ("No score was recorded: Gradescope shows this submission's autograder as failed. "
           "Once that is fixed, regrade it (Regrade All Submissions on the assignment's "
           "Manage Submissions page).")


class NotGraded(Exception):
    """The submission could not be graded, through no fault of the learner:
    the message says why, for staff."""


def _grader(*args):
    course = ["--course", COURSE] if COURSE.exists() else []
    return subprocess.run([sys.executable, "-m", "conformance", *map(str, args + tuple(course))],
                          cwd=ROOT, capture_output=True, text=True)


def _last_line(text):
    return (text.strip().splitlines() or ["(it said nothing)"])[-1]


def cannot_grade_here():
    """None when a known-good program passes here, else why it does not."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        done = subprocess.run([sys.executable, "-m", "conformance", "--target",
                               str(ROOT / "reference"), "--step", "00", "--json", str(out),
                               "--vm", "never"],
                              cwd=ROOT, capture_output=True, text=True)
        if done.returncode == 0:
            return None
        if done.returncode == 1 and out.exists():
            (steps,) = json.loads(out.read_text()).values()
            return next(c["seen"] for c in steps["steps"][0]["checks"] if not c["passed"])
        return _last_line(done.stderr)


def _no_vm():
    """None where a VM can grade instead, else why none can."""
    try:
        vm.find()
    except vm.NoVM as error:
        return f"A VM could grade instead, but {error}."
    return None


def grade(root, course):
    """(results.json for the learner, a note for staff); NotGraded where the
    submission could not be graded."""
    start = time.monotonic()
    submission = root / "submission"
    target = find_work(submission) if submission.is_dir() else None
    if target is None:
        kit = submission.is_dir() and looks_like_the_kit(submission)
        return (report.gradescope_nothing_to_grade(f"{NO_WORK}." if kit else NOTHING_TO_GRADE,
                                                   course, time.monotonic() - start),
                "No step programs in the submission: 0 points, and the learner was told why.")
    how, where = "natively", []
    why = cannot_grade_here()
    if why:
        no_vm = _no_vm()
        if no_vm:
            raise NotGraded(f"The grader could not run here: {why}\n{no_vm}\n\n{STAFF}")
        how, where = ("inside a throwaway VM, as this container refuses the namespaces the "
                      "grader needs"), ["--vm", "always"]
    out = root / "results" / "results.json"
    started = time.monotonic()
    done = _grader("--target", submission, "--gradescope", out, *where)
    how += f", in {time.monotonic() - started:.1f} s"
    if done.returncode not in (0, 1) or not out.exists():
        raise NotGraded(f"The grader failed (exit status {done.returncode}): "
                        f"{_last_line(done.stderr)}\nPlease report this to nskit's maintainers.")
    results = json.loads(out.read_text())
    where = target.relative_to(root)
    results["output"] = f"Graded: {where}\nGraded {how}\n{results['output']}"
    results["execution_time"] = round(time.monotonic() - start, 3)
    return results, f"Graded {where} {how}.\n{done.stdout}"


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m gradescope.autograde AUTOGRADER_ROOT", file=sys.stderr)
        return 2
    root = Path(args[0])
    results_file = root / "results" / "results.json"
    try:
        results_file.parent.mkdir(parents=True, exist_ok=True)
        # Only this run's grading may leave a results.json behind.
        results_file.unlink(missing_ok=True)
        course = courses.load(COURSE) if COURSE.exists() else courses.Course()
        results, staff = grade(root, course)
        report.write_json(results_file, results)
    except Exception as error:
        # Whatever went wrong is the grader's, never the learner's: no score.
        results_file.unlink(missing_ok=True)
        why = str(error) if isinstance(error, NotGraded) else (
            f"The autograder failed ({type(error).__name__}: {error}); please report this "
            f"to nskit's maintainers.")
        print(f"Not graded. {why}\n\n{REGRADE}")
        return 1
    print(staff)
    return 0


if __name__ == "__main__":
    sys.exit(main())
