"""A class to grade, for the bench's class-throughput rows: N learners, each
a folder with a copy of the same step programs (bench/bench.py times
`python -m conformance --submissions` on it)."""
import shutil
from pathlib import Path

from conformance.catalog import STEP_NAMES

ROOT = Path(__file__).resolve().parent.parent


def build_class(folder, learners, source=ROOT / "steps"):
    """folder/learner-NNN/ for each learner, each a copy of the step programs
    in source (the kit's steps/ by default); how many programs each has."""
    programs = [p for nn in STEP_NAMES for p in sorted(Path(source).glob(f"{nn}_*"))]
    for n in range(learners):
        learner = folder / f"learner-{n:03d}"
        learner.mkdir(parents=True)
        for program in programs:
            shutil.copy(program, learner / program.name)
    return len(programs)
