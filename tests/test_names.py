"""Names are bytes: whatever a learner names their folder or their step
files, and whatever a report carries, every report is written whole and
parses (JSON, JUnit XML, CSV, each platform's results file, the table), and
one name never costs anyone else their grade.

The report writers are fuzzed with Hypothesis on names made of every byte
1-255, newlines, quotes, `]]>`, 4,096 bytes and nothing; the grader itself
grades a class whose names are not UTF-8, and one whose programs make such
names where the grader reads them (a mount point, links, a hostname, the
command's own name).
"""
import csv
import io
import json
import subprocess
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from conformance import report
from conformance.catalog import file_name
from conformance.checks import checks_for
from conformance.course import Course
from conformance.grade import CheckResult, StepResult
from conformance.scheduler import UNOBSERVED
from conformance.text import shown, write_whole
from helpers import PYTHON, ROOT, step_path

# Bounded: a few dozen examples, each within a deadline, and no shrinking,
# which can take minutes on names of 4,096 bytes (a failure shows its example).
FUZZ = settings(max_examples=40, deadline=timedelta(seconds=5),
                phases=[Phase.explicit, Phase.reuse, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow])


def fs(raw):
    """A name as Python hands a file name over: bytes that are not UTF-8 as lone surrogates."""
    return raw.decode("utf-8", "surrogateescape")


# Names a learner or a run could make: any byte but NUL, and the hard cases.
raw_names = st.one_of(
    st.lists(st.integers(1, 255), max_size=40).map(bytes),
    st.sampled_from([b"", b"\n", b"a\nb", b"'\"", b"]]>", b"<x/>&amp;", b"\r\n", b"\x1b[2J",
                     b"\xff" * 4096, b"n" * 4096, b"\xef\xbf\xbe", b"\xed\xa0\x80", b"a,b",
                     bytes(range(1, 256))]),
)
names = raw_names.map(fs)
texts = st.one_of(names, st.text(max_size=200))


def results_of(labels, seen, hint, output, program):
    """{label: [StepResult]}: every check of step 03, each failing with
    these words, and step 05 passing."""
    results = {}
    for label in labels:
        failing = [CheckResult("03", c.title, False, seen, hint) for c in checks_for("03")]
        passing = [CheckResult("05", c.title, True, "", "") for c in checks_for("05")]
        results[label] = [StepResult("03", program, failing, output, 0.25, problem=seen or None),
                          StepResult("05", program, passing, output, 0.5)]
    return results


def assert_printable(text):
    """Nothing a terminal or a parser could choke on: no byte that is not
    UTF-8, no control character but newlines and tabs."""
    text.encode("utf-8")
    assert shown(text, lines=True) == text


def test_shown_escapes_what_is_not_printable_and_keeps_the_rest():
    assert shown(fs(b"ns-lab-iv\xe1n")) == "ns-lab-iv\\xe1n"
    assert shown(b"t\xe9st") == "t\\xe9st"
    assert shown("grace hopper, Iván") == "grace hopper, Iván"
    assert shown("a\nb\tc\x1b") == "a\\x0ab\\x09c\\x1b"
    assert shown("a\nb\tc\x1b", lines=True) == "a\nb\tc\\x1b"
    assert shown("\ud800\uffff\x85") == "\\ud800\\uffff\\x85"
    assert shown(Path(fs(b"/x/\xff"))) == "/x/\\xff"
    assert shown(None) == ""


@FUZZ
@given(st.lists(st.integers(0, 255), max_size=300).map(bytes))
def test_shown_of_any_bytes_is_printable_and_keeps_utf_8_text(raw):
    text = shown(raw, lines=True)
    assert_printable(text)
    assert "\n" not in shown(raw)
    decoded = raw.decode("utf-8", "replace")
    if "\ufffd" not in decoded and decoded == shown(decoded, lines=True):
        assert text == decoded  # printable UTF-8 comes out as it went in


@FUZZ
@given(labels=st.lists(names, min_size=1, max_size=3, unique=True), seen=texts, hint=texts,
       output=texts, program=names)
def test_every_report_parses_whatever_the_names(tmp_path_factory, labels, seen, hint, output,
                                                program):
    tmp = tmp_path_factory.mktemp("reports")
    results = results_of(labels, seen, hint, output, program)
    course = Course()
    steps = next(iter(results.values()))
    base = Path(fs(b"/class/t\xe9st"))

    report.write_json(tmp / "full.json", report.full(results, course))
    full = json.loads((tmp / "full.json").read_text(encoding="utf-8"))
    assert list(full) == [shown(label) for label in labels]
    for label in full.values():
        assert label["steps"][0]["checks"][0]["seen"] == shown(report.bound(seen), lines=True)

    for name, data in [("gradescope", report.gradescope(steps, course, base)),
                       ("prairielearn", report.prairielearn(steps, course, base)),
                       ("classroom", report.classroom(steps, course))]:
        report.write_json(tmp / f"{name}.json", data)
        parsed = json.loads((tmp / f"{name}.json").read_bytes().decode("utf-8"))
        assert len(parsed["tests"]) == len(checks_for("03")) + len(checks_for("05")), name
    assert len((tmp / "gradescope.json").read_bytes()) <= report.RESULTS_MAX

    report.write_junit(tmp / "junit.xml", results)
    suites = ET.parse(tmp / "junit.xml").getroot()
    assert len(suites.findall("testsuite")) == len(labels)
    failures = [f.get("message") for f in suites.iter("failure")]
    assert failures and set(failures) == {shown(report.bound(seen), lines=True)}

    report.write_scores_csv(tmp / "scores.csv", results, course, notes={labels[0]: seen})
    with open(tmp / "scores.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert [row[0] for row in rows[1:]] == [shown(label) for label in labels]
    assert rows[1][-1] == shown(seen)
    assert all(len(row) == len(rows[0]) for row in rows)

    for text in (report.table(steps, course), report.class_table(results, course)):
        assert_printable(text)
    assert not [p for p in tmp.iterdir() if p.name.endswith(".part")]


def test_a_report_is_written_whole_or_not_at_all(tmp_path):
    """A grader that breaks while it writes leaves the last whole file, or
    none: never half a scores.csv."""
    results = results_of(["ann", "bob"], "seen", "hint", "", "/x/03_uts.py")
    target = tmp_path / "scores.csv"
    report.write_scores_csv(target, results)
    before = target.read_bytes()

    class Broken:
        def __str__(self):
            raise RuntimeError("the grader broke")

    with pytest.raises(RuntimeError):
        report.write_scores_csv(target, results, notes={"bob": Broken()})
    assert target.read_bytes() == before
    with pytest.raises(RuntimeError):
        report.write_scores_csv(tmp_path / "new.csv", results, notes={"bob": Broken()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]

    def fails_halfway(text):
        yield text[:10]
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_whole(target, "".join(fails_halfway("learner,total\n" * 100)))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]


# -- the grader, on names that are not UTF-8 --------------------------------------

def grader(*args, cwd=ROOT, timeout=300):
    """python -m conformance with these arguments, which may be bytes."""
    return subprocess.run([PYTHON, "-m", "conformance", *args], cwd=cwd, capture_output=True,
                          timeout=timeout)


def parses(folder):
    """Every report in folder, parsed: {file name: what it holds}."""
    found = {}
    for path in folder.iterdir():
        if path.suffix == ".json":
            found[path.name] = json.loads(path.read_bytes().decode("utf-8"))
        elif path.suffix == ".xml":
            found[path.name] = ET.parse(path).getroot()
        elif path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as fh:
                found[path.name] = list(csv.reader(fh))
    return found


def test_a_class_named_in_bytes_is_graded_and_reported(tmp_path):
    cls = tmp_path / "class"
    ivan = cls / fs(b"ns-lab-iv\xe1n")
    ivan.mkdir(parents=True)
    (ivan / fs(b"03_u\xfft.py")).write_bytes(step_path("03").read_bytes())
    (ivan / "04_ipc.py").write_bytes(step_path("04").read_bytes())
    ann = cls / "ann"
    ann.mkdir()
    for nn in ("03", "04"):
        (ann / f"{file_name(nn)}.py").write_bytes(step_path(nn).read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    done = grader("--submissions", cls, "--step", "03", "--step", "04",
                  "--csv", out / "scores.csv", "--json", out / "full.json",
                  "--junit", out / "junit.xml", "--gradescope-dir", tmp_path / "gradescope")
    assert done.returncode == 0, done
    assert b"Traceback" not in done.stderr
    assert b"\nns-lab-iv\\xe1n  10    10    20/20\n" in done.stdout, done.stdout
    reports = parses(out)
    assert set(reports) == {"scores.csv", "full.json", "junit.xml"}
    assert reports["scores.csv"][1:] == [["ann", "10", "10", "20", "20", ""],
                                         ["ns-lab-iv\\xe1n", "10", "10", "20", "20", ""]]
    assert reports["full.json"]["ns-lab-iv\\xe1n"]["points"] == 20
    assert {s.get("name") for s in reports["junit.xml"].iter("testsuite")} == {
        "ann", "ns-lab-iv\\xe1n"}
    # Each learner's own results.json lands in a folder of their own name.
    results = json.loads((tmp_path / "gradescope" / ivan.name / "results.json").read_text())
    assert results["score"] == 20


def test_a_target_named_in_bytes_writes_every_report(tmp_path):
    target = tmp_path / fs(b"t\xe9st")
    target.mkdir()
    (target / fs(b"03_u\xfft.py")).write_bytes(step_path("03").read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    done = grader("--target", target, "--step", "03", "--json", out / "full.json",
                  "--junit", out / "junit.xml", "--gradescope", out / "gradescope.json",
                  "--prairielearn", out / "prairielearn.json", "--classroom",
                  out / "classroom.json")
    assert done.returncode == 0, done
    reports = parses(out)
    assert len(reports) == 5
    assert reports["gradescope.json"]["score"] == 10
    assert reports["prairielearn.json"]["score"] == 1
    assert reports["classroom.json"]["status"] == "pass"
    (label,) = reports["full.json"]
    assert label.endswith("t\\xe9st")
    assert reports["full.json"][label]["steps"][0]["program"].endswith("t\\xe9st/03_u\\xfft.py")


def test_a_missing_step_names_the_folder_escaped(tmp_path):
    target = tmp_path / fs(b"t\xe9st\n")
    target.mkdir()
    done = grader("--target", target, "--step", "03", "--json", tmp_path / "full.json")
    assert done.returncode == 1, done
    assert b"no file named 03_uts.py (or 03_<name>) in " in done.stdout
    (label,) = json.loads((tmp_path / "full.json").read_text()).values()
    assert label["steps"][0]["problem"] == (
        f"not found: no file named 03_uts.py (or 03_<name>) in {tmp_path}/t\\xe9st\\x0a")


# -- one run fails alone -------------------------------------------------------------

# The grader broken on purpose for four learners: looking for one's programs,
# preparing one's run, observing another's, judging a fourth's. Everyone
# else is graded.
BREAK_THE_GRADER = r'''
import sys
from conformance import grade, launcher, sandbox

launcher.start_early()

def breaks(real, learner):
    def broken(program, *args, **kwargs):
        if program.path.parent.name == learner:
            raise RuntimeError(f"broken on purpose for {learner}")
        return real(program, *args, **kwargs)
    return broken

real_find = grade.find_programs

def find_programs(folder, steps=None):
    if folder.name == "find":
        raise PermissionError(13, "Permission denied")
    return real_find(folder, steps)

grade.find_programs = find_programs
grade.request_for = breaks(grade.request_for, "prep")
grade.judge = breaks(grade.judge, "judge")
real_launch = sandbox.Sandbox.launch

def launch(self, request):
    run = real_launch(self, request)
    if request.tag and request.tag[0] == "observe" and run.watch:
        def result():
            raise KeyError("broken on purpose for observe")
        run.watch.result = result
    return run

sandbox.Sandbox.launch = launch
from conformance.cli import main
sys.exit(main())
'''


def test_an_error_of_the_grader_fails_that_run_alone(tmp_path):
    cls = tmp_path / "class"
    for learner in ("ann", "find", "prep", "observe", "judge", "zoe"):
        (cls / learner).mkdir(parents=True)
        for nn in ("03", "04"):
            (cls / learner / f"{file_name(nn)}.py").write_bytes(step_path(nn).read_bytes())
    done = subprocess.run(
        [PYTHON, "-c", BREAK_THE_GRADER, "--submissions", cls, "--step", "03", "--step", "04",
         "--csv", tmp_path / "scores.csv", "--json", tmp_path / "full.json",
         "--junit", tmp_path / "junit.xml"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done
    assert "Traceback" not in done.stderr
    full = json.loads((tmp_path / "full.json").read_text())
    for learner in ("ann", "zoe"):
        assert full[learner]["points"] == full[learner]["max_points"], learner
    why = {"find": "PermissionError: [Errno 13] Permission denied",
           "prep": "RuntimeError: broken on purpose for prep",
           "observe": "KeyError: 'broken on purpose for observe'",
           "judge": "RuntimeError: broken on purpose for judge"}
    for learner, error in why.items():
        for step in full[learner]["steps"]:
            first, *rest = step["checks"]
            assert first["seen"] == f"the grader could not observe it: {error}", step
            assert all(c["status"] == "skipped" for c in rest)
    with open(tmp_path / "scores.csv", newline="") as fh:
        notes = {row["learner"]: row["note"] for row in csv.DictReader(fh)}
    assert notes["prep"] == f"the grader could not observe it: {why['prep']}"
    assert notes["ann"] == ""
    ET.parse(tmp_path / "junit.xml")


# -- names a run makes ----------------------------------------------------------------

# Each program makes a name that is not UTF-8 where the grader reads it, then
# runs its command: a mount point, a link (in a network namespace of its
# own, and in the run's host), a hostname; and the command by a name of \xff.
MAKES_NAMES = r'''import ctypes, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWNET = 0x20000, 0x4000000, 0x40000000
MS_REC, MS_PRIVATE = 16384, 1 << 18
NAME = b"\xff\n]]>\x1b'\""


def must(ret, what):
    if ret != 0:
        sys.exit(f"{what}: {os.strerror(ctypes.get_errno())}")


def run(command):
    pid = os.fork()
    if pid == 0:
        os.execv(command, [command, *sys.argv[2:]])
    os.waitpid(pid, 0)


def link(name, peer):
    subprocess.run(["ip", "link", "add", "name", name, "type", "veth", "peer", "name", peer],
                   check=True)


how = os.path.basename(sys.argv[0])[3:].partition(".")[0].encode()
command = sys.argv[1].encode()
if how == b"mount":
    must(libc.unshare(CLONE_NEWNS), "unshare")
    must(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    for where in (b"/tmp/" + NAME, b"/mytmp"):
        os.makedirs(where, exist_ok=True)
        must(libc.mount(b"x" + NAME, where, b"tmpfs", 0, None), "mount")
elif how == b"net":
    must(libc.unshare(CLONE_NEWNET), "unshare")
    link(b"\xff", b"p\xfe")
elif how == b"uts":
    must(libc.unshare(CLONE_NEWUTS), "unshare")
    must(libc.sethostname(NAME, len(NAME)), "sethostname")
elif how == b"skeleton":
    link(b"\xfd", b"q\xfc")  # in the run's own host: the host changed
os.symlink(command, b"/tmp/" + NAME + b".cmd")  # the command, by a name of \xff
run(b"/tmp/" + NAME + b".cmd")
'''


def test_names_a_run_makes_never_cost_the_class_its_grades(tmp_path):
    cls = tmp_path / "class"
    steps = ("00", "01", "02", "03")
    honest = ["ann", fs(b"ns-lab-\xff\n]]>")]
    for name in honest:
        (cls / name).mkdir(parents=True)
        for nn in steps:
            (cls / name / step_path(nn).name).write_bytes(step_path(nn).read_bytes())
    maker = cls / fs(b"mallory-\xfe")
    maker.mkdir()
    for nn in steps:
        (maker / step_path(nn).name).write_text(MAKES_NAMES)
    out = tmp_path / "out"
    out.mkdir()
    done = grader("--submissions", cls, *[a for nn in steps for a in ("--step", nn)],
                  "--csv", out / "scores.csv", "--json", out / "full.json",
                  "--junit", out / "junit.xml", "--gradescope-dir", tmp_path / "gradescope")
    assert done.returncode == 0, done
    assert b"Traceback" not in done.stderr, done.stderr
    reports = parses(out)
    full = reports["full.json"]
    for name in honest:
        learner = full[shown(name)]
        assert learner["points"] == learner["max_points"], learner
    # Each of mallory's steps made its name where the grader reads it, and was
    # judged on what the kernel showed, the names escaped: none failed for the grader.
    steps = {step["step"]: step for step in full["mallory-\\xfe"]["steps"]}
    for step in steps.values():
        assert step["problem"] is None, step
        assert step["checks"][2]["title"].startswith(("runs in the host's", "new namespaces"))
        assert step["checks"][2]["status"] == "passed", step
    seen = {nn: " ".join(c["seen"] for c in step["checks"]) for nn, step in steps.items()}
    assert all(name in seen["00"] for name in ("q\\xfc", "\\xfd")), seen["00"]
    assert all(name in seen["01"] for name in ("p\\xfe DOWN", "\\xff DOWN")), seen["01"]
    assert steps["02"]["points"] == steps["02"]["max_points"], steps["02"]  # a mount point \xff
    assert "hostname '\\\\xff\\n]]>" in seen["03"], seen["03"]
    for name in (*honest, maker.name):
        folder = tmp_path / "gradescope" / name
        json.loads((folder / "results.json").read_text(encoding="utf-8"))


def test_a_report_copied_whole_from_a_file(tmp_path):
    """What comes out of a VM's shared folder is copied whole, or not at all."""
    source = tmp_path / "in.json"
    source.write_bytes(b'{"score": 10}\xff')
    with open(source, "rb") as fh:
        write_whole(tmp_path / "out.json", fh)
    assert (tmp_path / "out.json").read_bytes() == source.read_bytes()

    class Broken(io.RawIOBase):
        def readinto(self, buffer):
            raise OSError(5, "Input/output error")

    with pytest.raises(OSError):
        write_whole(tmp_path / "out.json", io.BufferedReader(Broken()))
    assert (tmp_path / "out.json").read_bytes() == source.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json", "out.json"]


def test_shards_of_a_class_named_in_bytes_merge_to_one_run(tmp_path):
    cls = tmp_path / "class"
    names = ["ann", fs(b"iv\xe1n"), fs(b"z\xff\n"), "zoe"]
    for name in names:
        (cls / name).mkdir(parents=True)
        (cls / name / step_path("03").name).write_bytes(step_path("03").read_bytes())

    def reports(folder, *args):
        done = grader("--submissions", cls, "--step", "03", "--csv", folder / "scores.csv",
                      "--json", folder / "class.json", "--junit", folder / "class.xml",
                      "--gradescope-dir", folder / "gradescope", *args)
        assert done.returncode == 0, done

    reports(tmp_path / "one")
    for k in (1, 2):
        reports(tmp_path / f"shard-{k}", "--shard", f"{k}/2")
    done = grader("merge", "--out", tmp_path / "merged", tmp_path / "shard-1",
                  tmp_path / "shard-2")
    assert done.returncode == 0, done
    merged, one = parses(tmp_path / "merged"), parses(tmp_path / "one")
    assert merged["scores.csv"] == one["scores.csv"]
    assert [row[0] for row in merged["scores.csv"][1:]] == [shown(n) for n in sorted(names)]
    assert sorted(merged["class.json"]) == sorted(one["class.json"]) == sorted(map(shown, names))
    assert len(merged["class.xml"].findall("testsuite")) == len(names)
    assert not [p for p in (tmp_path / "merged").iterdir() if p.name.endswith(".part")]
