"""Reports of a grading run: a table for people, JSON, JUnit XML and CSV for
machines. Each takes {label: [StepResult]} (one label per learner)."""
import csv
import json
import xml.etree.ElementTree as ET

from tabulate import tabulate

from .checks import STEPS


def _mark(check):
    return {"passed": "passed", "skipped": "skipped"}.get(check.status, "FAILED")


def score(steps):
    checks = [c for s in steps for c in s.checks]
    return sum(c.passed for c in checks), len(checks)


def table(steps):
    """One row per check, with what was seen and a hint when it failed."""
    rows = []
    for step in steps:
        for check in step.checks:
            note = "" if check.passed else f"{check.seen}" + (f"\nhint: {check.hint}" if check.hint else "")
            rows.append([f"{step.step} {STEPS[step.step]}", check.title, _mark(check), note])
    got, out_of = score(steps)
    body = tabulate(rows, headers=["step", "check", "result", "seen / hint"],
                    tablefmt="simple", maxcolwidths=[None, 38, None, 70])
    return f"{body}\n\nscore: {got}/{out_of} checks passed"


def _by_learner(results):
    """The steps graded, and per learner: checks passed per step (None where
    the step was not graded), and the total as (passed, out of)."""
    steps = sorted({s.step for r in results.values() for s in r})
    rows = []
    for label, learner in results.items():
        by_step = {s.step: score([s]) for s in learner}
        rows.append((label, [by_step.get(nn) for nn in steps], score(learner)))
    return steps, rows


def class_table(results):
    """Learner x step: checks passed per step, and the total."""
    def fraction(cell):
        return f"{cell[0]}/{cell[1]}" if cell else "-"
    steps, rows = _by_learner(results)
    table = [[label, *map(fraction, cells), fraction(total)] for label, cells, total in rows]
    return tabulate(table, headers=["learner", *steps, "total"], tablefmt="simple")


def gradescope(steps):
    """Gradescope's results.json: one test per check, a point each."""
    tests = []
    for step in steps:
        for check in step.checks:
            output = "" if check.passed else check.seen + (f"\nHint: {check.hint}" if check.hint else "")
            tests.append({"name": check.name, "score": int(check.passed), "max_score": 1,
                          "status": "passed" if check.passed else "failed", "output": output})
    got, _ = score(steps)
    return {"score": got, "tests": tests}


def full(results):
    """Everything, for tools: per label, every step with its checks and output."""
    return {label: {"score": score(steps)[0], "out_of": score(steps)[1], "steps": [
        {"step": s.step, "program": s.program, "problem": s.problem, "seconds": round(s.seconds, 3),
         "output": s.output,
         "checks": [{"name": c.name, "title": c.title, "passed": c.passed, "status": c.status,
                     "seen": c.seen, "hint": c.hint} for c in s.checks]}
        for s in steps]} for label, steps in results.items()}


def junit(results):
    """JUnit XML: a testsuite per learner (or target), a testcase per check."""
    suites = ET.Element("testsuites", name="nskit conformance")
    for label, steps in results.items():
        checks = [c for s in steps for c in s.checks]
        suite = ET.SubElement(suites, "testsuite", name=str(label), tests=str(len(checks)),
                              failures=str(sum(c.status == "failed" for c in checks)),
                              skipped=str(sum(c.status == "skipped" for c in checks)),
                              time=f"{sum(s.seconds for s in steps):.3f}")
        for step in steps:
            for check in step.checks:
                case = ET.SubElement(suite, "testcase", classname=f"{label}.{step.step}_{STEPS[step.step]}",
                                     name=check.title)
                if check.status == "skipped":
                    ET.SubElement(case, "skipped", message=check.seen)
                elif not check.passed:
                    failure = ET.SubElement(case, "failure", message=check.seen)
                    failure.text = check.hint
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def write_json(path, data):
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")


def write_scores_csv(path, results):
    """learner, one column per step (checks passed), total, out_of."""
    steps, rows = _by_learner(results)
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["learner", *[f"{s}_{STEPS[s]}" for s in steps], "total", "out_of"])
        for label, cells, total in rows:
            out.writerow([label, *[cell[0] if cell else 0 for cell in cells], *total])
