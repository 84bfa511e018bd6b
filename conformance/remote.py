"""A part of a grading, run where the grader outside cannot run it (inside
a throwaway VM, vm.py): programs in, results out, both as JSON.

    python -m conformance vm-part PART RESULTS [TIMES]

The grader outside finds the programs and splits them into parts, one per
VM; each part's grader runs them as `--vm never` would (grade.grade) and
writes their StepResults back. The grader outside then writes every report
itself, from results it reads back as the same objects a grading on one
machine gives: a class or a single learner split across VMs reports what
one grading would, by construction. What comes back was written by the
VM's root: it is read as data of known shapes, never run (no pickle), and a
part that is not exactly the results of the programs it was given is not
taken.
"""
import json
import os
import sys
from dataclasses import asdict, fields
from pathlib import Path

from .discover import Program
from .grade import CheckResult, StepResult, grade
from .sandbox import Limits, Sandbox, Unavailable
from .text import write_whole

COMMAND = "vm-part"
STATUSES = ("passed", "failed", "skipped")


def part(targets, limits, jobs=None):
    """The JSON a VM's grader reads: the runs' limits, the runs at once
    (None: one per core the VM has), and {label: [Program]} as pairs, in order."""
    return json.dumps({
        "limits": asdict(limits), "jobs": jobs,
        "targets": [[label, [[p.step, p.path and os.fspath(p.path), p.problem] for p in programs]]
                    for label, programs in targets.items()]})


def read_part(text):
    data = json.loads(text)
    targets = {label: [Program(step, path and Path(path), problem) for step, path, problem in programs]
               for label, programs in data["targets"]}
    return targets, Limits(**data["limits"]), data["jobs"]


def results_data(results):
    # Field by field: dataclasses.asdict deep-copies every string on the way.
    return json.dumps([[label, [{**_fields(s), "checks": [_fields(c) for c in s.checks]}
                                for s in steps]] for label, steps in results.items()])


def _fields(data):
    return {f.name: getattr(data, f.name) for f in fields(data)}


def _typed(data, cls, types):
    """cls(**data) where data has exactly cls's fields, each of its type (or None)."""
    names = [f.name for f in fields(cls)]
    if not isinstance(data, dict) or sorted(data) != sorted(names):
        raise ValueError(f"not a {cls.__name__}")
    for name in names:
        if not (data[name] is None or isinstance(data[name], types.get(name, str))):
            raise ValueError(f"a {cls.__name__}'s {name} is not a {types.get(name, str)}")
    return cls(**data)


def read_results(text, targets):
    """{label: [StepResult]} from a part's RESULTS, for the programs of targets
    (that part's, as part() wrote them); ValueError where it is anything else."""
    try:
        results = {label: [_step(s) for s in steps] for label, steps in json.loads(text)}
    except (TypeError, ValueError) as error:
        raise ValueError(f"its results are not results ({error})") from None
    asked = {label: [p.step for p in programs] for label, programs in targets.items()}
    if {label: [s.step for s in steps] for label, steps in results.items()} != asked:
        raise ValueError("its results are not those of the programs it was given")
    return results


def _step(data):
    if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
        raise ValueError("a step's result without checks")
    checks = [_typed(c, CheckResult, {"passed": bool}) for c in data["checks"]]
    step = _typed({**data, "checks": checks}, StepResult, {"checks": list, "seconds": (int, float)})
    if any(c.step != step.step or c.status not in STATUSES for c in checks):
        raise ValueError("a check of another step, or of no status")
    return step


def main(argv):
    """Grade the part in PART and write its results to RESULTS, each run's
    timeout TIMES as long (a VM runs programs slower); 0 once written, 2
    with one line on stderr where this machine cannot grade."""
    source, out, times = (*argv, "1")[:3]
    targets, limits, jobs = read_part(Path(source).read_text())
    limits.timeout *= float(times)
    sandbox = Sandbox(limits, jobs)
    try:
        sandbox.probe_available()
        results = grade(targets, sandbox)
    except Unavailable as error:
        print(f"nskit: the grader cannot build its throwaway host here: {error}", file=sys.stderr)
        return 2
    finally:
        sandbox.close()
    write_whole(out, results_data(results))
    return 0
