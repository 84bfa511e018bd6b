"""Reports of a grading run: a table for people; JSON, JUnit XML and CSV for
machines; each platform's results file (Gradescope, PrairieLearn, GitHub
Classroom). Each takes {label: [StepResult]} (one label per learner), or one
learner's [StepResult], and a course.Course for the points.

Whatever a program printed reaches a report bounded: a check's "seen" text
and each output keep their head and tail, so one learner's 700 KB hostname
or megabyte of binary cannot swell or slow anyone's report. Every name and
text is shown() (text.py) on its way out, so no byte a learner chose can
stop a report from being written or parsed; and each file is written whole
or not at all (text.write_whole).
"""
import csv
import io
import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

from tabulate import tabulate

from .catalog import ALL_STEPS, file_name
from .checks import skipped_for
from .course import Course, number, status
from .text import shown, shown_data, write_whole

SEEN = 2048            # characters of a check's "seen" or output kept in results files
OUTPUT = 8192          # characters of a run's output kept in --json
TABLE_NOTE = 600       # characters of seen + hint shown in the table, before wrapping
RESULTS_MAX = 1 << 20  # a learner's results.json, in bytes


def bound(text, limit=SEEN):
    """text with its middle cut to keep it within limit characters."""
    text = text or ""
    if len(text) <= limit:
        return text
    head, tail = limit * 3 // 4, limit // 4
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:]}"


def relative(text, base):
    """text with base's absolute path written as base's own name: a learner's
    results name their files, never the machine's folders."""
    if not base or not text:
        return text or ""
    base = str(base).rstrip("/")
    return text.replace(base + "/", Path(base).name + "/").replace(base, Path(base).name)


def _mark(check):
    return {"passed": "passed", "skipped": "skipped"}.get(status(check), "FAILED")


def score(steps):
    """(checks passed, checks) over StepResults."""
    checks = [c for s in steps for c in s.checks]
    return sum(status(c) == "passed" for c in checks), len(checks)


def _note(check):
    if status(check) == "passed":
        return ""
    # Stripped: tabulate takes a cell of a lone newline for a number, and fails.
    return shown(bound(check.seen, TABLE_NOTE) + (f"\nhint: {check.hint}" if check.hint else ""),
                 lines=True).strip()


def _skipped_for(check):
    """The title of the check a skipped check waits for, or None."""
    return skipped_for(check.seen) if status(check) == "skipped" else None


def _rows(step):
    """A row per check that passed or failed; the checks skipped for one
    failure fold into one line under it: "4 more checks need: <its title>"."""
    name = f"{step.step} {ALL_STEPS[step.step]}"
    waiting = {}
    for check in step.checks:
        if (cause := _skipped_for(check)) is not None:
            waiting[cause] = waiting.get(cause, 0) + 1
    rows = []
    for check in step.checks:
        if _skipped_for(check) is not None:
            continue
        rows.append([name, _wrap(check.title, 38), _mark(check), _wrap(_note(check), 70)])
        if n := waiting.pop(check.title, 0):
            rows.append([name, "", "skipped", _wrap(_more(n, check.title), 70)])
    # Skipped for a check that is not in the step (none should be): said all the same.
    rows += [[name, "", "skipped", _wrap(_more(n, cause), 70)] for cause, n in waiting.items()]
    return rows


def _wrap(text, width):
    """Each line of text wrapped to width: the table's cells keep the lines
    a note was written in."""
    return "\n".join(textwrap.fill(line, width) or line for line in text.split("\n"))


def _more(n, title):
    return f"{n} more checks need: {title}" if n > 1 else f"1 more check needs: {title}"


def table(steps, course=None):
    """A row per check, with what was seen and a hint when it failed; the
    checks skipped for one failure fold into one line under it."""
    course = course or Course()
    rows = [row for step in steps for row in _rows(step)]
    got, out_of = score(steps)
    earned, possible = course.earned(steps)
    body = tabulate(rows, headers=["step", "check", "result", "seen / hint"],
                    tablefmt="simple", disable_numparse=True)
    return (f"{body}\n\npoints: {number(earned)}/{number(possible)}\n"
            f"score: {got}/{out_of} checks passed")


def _by_learner(results, course):
    """The steps graded, and per learner: points per step (None where the
    step was not graded), and the total as (points, out of)."""
    steps = sorted({s.step for r in results.values() for s in r})
    rows = []
    for label, learner in results.items():
        by_step = {s.step: course.earned([s])[0] for s in learner}
        total = course.earned(learner)
        rows.append((label, [by_step.get(nn) for nn in steps], total))
    return steps, rows


def class_table(results, course=None):
    """Learner x step: points per step, and the total."""
    course = course or Course()
    steps, rows = _by_learner(results, course)
    table = [[shown(label), *["-" if cell is None else number(cell) for cell in cells],
              f"{number(total[0])}/{number(total[1])}"] for label, cells, total in rows]
    return tabulate(table, headers=["learner", *steps, "total"], tablefmt="simple",
                    disable_numparse=True)


def _test_output(check, base):
    if status(check) == "passed":
        return ""
    return relative(bound(check.seen) + (f"\nHint: {check.hint}" if check.hint else ""), base)


def summary(steps, course=None, base=None):
    """A few lines for the learner: points per step and the total."""
    course = course or Course()
    earned, possible = course.earned(steps)
    lines = [f"{number(earned)}/{number(possible)} points"]
    lines += [f"  {s.step} {ALL_STEPS[s.step]}: {number(course.earned([s])[0])}/"
              f"{number(course.step_points(s.step))}"
              + (f" ({relative(bound(s.problem, 200), base)})" if s.problem else "") for s in steps]
    return "\n".join(lines)


def gradescope(steps, course=None, base=None):
    """Gradescope's results.json: one test per check, each worth its share of
    its step's points, with the visibility the course gives it."""
    course = course or Course()
    tests = []
    for step in steps:
        for index, (check, earned, worth) in enumerate(course.checks(step), 1):
            tests.append({"name": check.name, "number": f"{step.step}.{index}",
                          "score": earned, "max_score": worth,
                          # Gradescope knows only these two: a skipped check failed.
                          "status": "passed" if status(check) == "passed" else "failed",
                          "output": _test_output(check, base),
                          "visibility": course.visibility_of(step.step, check.title)})
    results = {"score": course.earned(steps)[0],
               "execution_time": round(sum(s.seconds for s in steps), 3),
               "output": summary(steps, course, base),
               "stdout_visibility": course.stdout_visibility,
               "tests": tests}
    return fit(results)


def gradescope_nothing_to_grade(why, course=None, seconds=0.0):
    """Gradescope's results.json for a submission with no step programs: it
    earns 0, and its one sentence says why. A submission that could not be
    graded gets no results.json at all (gradescope.autograde): Gradescope
    records a 0 it is given as a grade."""
    course = course or Course()
    return {"score": 0, "execution_time": round(seconds, 3),
            "output": f"0 points: {why}", "stdout_visibility": course.stdout_visibility,
            "tests": []}


def prairielearn(steps, course=None, base=None):
    """A PrairieLearn external grader's results.json: score 0-1, a test per check."""
    course = course or Course()
    earned, possible = course.earned(steps)
    tests = [{"name": check.name, "description": f"step {step.step} {ALL_STEPS[step.step]}",
              "points": got, "max_points": worth, "message": _test_output(check, base),
              "output": ""}
             for step in steps for check, got, worth in course.checks(step)]
    return fit({"gradable": True, "score": round(earned / possible, 4) if possible else 0.0,
                "message": summary(steps, course, base), "tests": tests})


def prairielearn_not_graded(learner, staff=""):
    """Not gradable: PrairieLearn then awards nothing and takes no attempt,
    where a 0 would count against the learner."""
    return {"gradable": False, "message": f"Not graded: {learner}", "output": staff}


def classroom(steps, course=None):
    """What GitHub Classroom's grading reporter reads from a runner's
    `result` output (base64 of this JSON): a test per check, with points."""
    course = course or Course()
    tests = [{"name": check.name, "status": "pass" if status(check) == "passed" else "fail",
              "score": got, "message": _test_output(check, None), "line_no": 0,
              "execution_time": f"{step.seconds:.2f}s", "test_code": ""}
             for step in steps for check, got, worth in course.checks(step)]
    _, possible = course.earned(steps)
    everything = all(t["status"] == "pass" for t in tests)
    return {"version": 1, "status": "pass" if everything else "fail", "max_score": possible,
            "tests": tests}


def fit(results, limit=RESULTS_MAX):
    """results whose JSON stays within limit bytes: test outputs are cut
    further where the tests are many."""
    while len(dumps(results).encode()) > limit:
        tests = results.get("tests") or []
        longest = max((len(t.get("output", "")) + len(t.get("message", "")) for t in tests),
                      default=0)
        if longest < 64:
            results["output"] = bound(results.get("output", ""), 1024)
            break
        for test in tests:
            for key in ("output", "message"):
                if key in test:
                    test[key] = bound(test[key], longest // 2)
    return results


def full(results, course=None):
    """Everything, for tools: per label, every step with its points, its checks
    and its output."""
    course = course or Course()

    def step(s):
        earned, possible = course.earned([s])
        return {"step": s.step, "program": s.program, "problem": s.problem,
                "seconds": round(s.seconds, 3), "points": earned, "max_points": possible,
                "output": bound(s.output, OUTPUT),
                "checks": [{"name": c.name, "title": c.title, "passed": c.passed,
                            "status": status(c), "seen": bound(c.seen), "hint": c.hint,
                            "points": got, "max_points": worth}
                           for c, got, worth in course.checks(s)]}

    return {label: {"score": score(steps)[0], "out_of": score(steps)[1],
                    "points": course.earned(steps)[0], "max_points": course.earned(steps)[1],
                    "steps": [step(s) for s in steps]}
            for label, steps in results.items()}


def _xml(text):
    return shown(text, lines=True)


def junit_label(label):
    """A learner's label as a JUnit class name part: the folder's own name,
    never a path (../work), and no dots (they separate packages)."""
    path = Path(label)
    name = path.name if path.name not in ("", ".", "..") else path.resolve().name
    return shown(name or "target").replace(".", "_")


def junit(results):
    """JUnit XML: a testsuite per learner (or target), a testcase per check,
    classname <learner>.<NN_name>."""
    suites = ET.Element("testsuites", name="nskit conformance")
    for label, steps in results.items():
        checks = [c for s in steps for c in s.checks]
        suite = ET.SubElement(suites, "testsuite", name=_xml(junit_label(label)),
                              tests=str(len(checks)),
                              failures=str(sum(status(c) == "failed" for c in checks)),
                              skipped=str(sum(status(c) == "skipped" for c in checks)),
                              time=f"{sum(s.seconds for s in steps):.3f}")
        for step in steps:
            for check in step.checks:
                case = ET.SubElement(suite, "testcase", name=_xml(check.title),
                                     classname=_xml(f"{junit_label(label)}.{file_name(step.step)}"))
                if status(check) == "skipped":
                    ET.SubElement(case, "skipped", message=_xml(bound(check.seen)))
                elif status(check) != "passed":
                    failure = ET.SubElement(case, "failure", message=_xml(bound(check.seen)))
                    failure.text = _xml(check.hint)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def dumps(data):
    # Not ASCII-escaped: a byte the program printed that is not UTF-8 is
    # already one replacement character, three bytes, not a six-byte escape.
    return json.dumps(shown_data(data), indent=2, ensure_ascii=False)


def write_json(path, data):
    write_whole(path, dumps(data) + "\n")


def write_junit(path, results):
    write_whole(path, junit(results))


def write_scores_csv(path, results, course=None, roster=None, notes=None):
    """learner, [id, email,] points per step, total, out_of, note. With a
    roster, its learners without a folder get a row of zeros marked "no
    submission"."""
    course = course or Course()
    notes = notes or {}
    steps, rows = _by_learner(results, course)
    steps = steps or course.steps
    possible = sum(course.step_points(nn) for nn in steps)
    text = io.StringIO()
    out = csv.writer(text)

    def row(cells):
        out.writerow([shown(cell) for cell in cells])

    ids = ["id", "email"] if roster is not None else []
    row(["learner", *ids, *[f"{s}_{ALL_STEPS[s]}" for s in steps], "total", "out_of", "note"])
    for label, cells, total in rows:
        who = roster.get(label) if roster is not None else None
        extra = [who.id, who.email] if who else ([""] * len(ids))
        row([label, *extra, *[number(cell or 0) for cell in cells],
             number(total[0]), number(total[1]), notes.get(label, "")])
    for label, who in sorted((roster or {}).items()):
        if label not in results:
            row([label, who.id, who.email, *[0] * len(steps), 0, number(possible), "no submission"])
    write_whole(path, text.getvalue())
