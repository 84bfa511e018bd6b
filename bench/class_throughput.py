"""How fast a whole class is graded: N learners (copies of steps/, 8 steps
each) through `python -m conformance --submissions`, timed from outside.

    python bench/class_throughput.py [--learners 100] [--budget 180] [--jobs N]

Prints one line (learners, programs, seconds, programs per second) and exits
1 when the batch took longer than the budget, or did not grade every learner
in full.
"""
import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_class(folder, learners, source=ROOT / "steps"):
    """folder/learner-NNN/ for each learner, each a copy of the step programs
    in source (the kit's steps/ by default); how many programs each has."""
    programs = sorted(Path(source).glob("0[0-7]_*"))
    for n in range(learners):
        learner = folder / f"learner-{n:03d}"
        learner.mkdir(parents=True)
        for program in programs:
            shutil.copy(program, learner / program.name)
    return len(programs)


def measure(learners, jobs=None):
    """(seconds, programs graded, learners scoring full marks) for one batch."""
    with tempfile.TemporaryDirectory(prefix="nskit-class-") as tmp:
        tmp = Path(tmp)
        steps = build_class(tmp / "class", learners)
        argv = [sys.executable, "-m", "conformance", "--submissions", str(tmp / "class"),
                "--csv", str(tmp / "scores.csv")] + (["--jobs", str(jobs)] if jobs else [])
        start = time.monotonic()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        seconds = time.monotonic() - start
        if done.returncode != 0:
            sys.exit(f"nskit: the grader refused the batch: {done.stderr.strip()}")
        with open(tmp / "scores.csv") as fh:
            full = sum(row["total"] == row["out_of"] for row in csv.DictReader(fh))
    return seconds, learners * steps, full


def main(argv=None):
    p = argparse.ArgumentParser(prog="python bench/class_throughput.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--learners", type=int, default=100, help="learners in the class (default %(default)s)")
    p.add_argument("--budget", type=float, default=180, help="seconds allowed (default %(default)g)")
    p.add_argument("--jobs", type=int, help="the grader's --jobs (default: its own, the number of cores)")
    args = p.parse_args(argv)
    if args.learners < 1:
        p.error("--learners must be at least 1")
    seconds, programs, full = measure(args.learners, args.jobs)
    print(f"{args.learners} learners x 8 steps = {programs} programs graded in {seconds:.1f} s "
          f"on {os.cpu_count()} cores ({programs / seconds:.1f} programs/s, budget {args.budget:g} s); "
          f"{full}/{args.learners} scored full marks")
    return 0 if seconds <= args.budget and full == args.learners else 1


if __name__ == "__main__":
    sys.exit(main())
