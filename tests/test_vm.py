"""Grading inside a throwaway VM, where the machine refuses namespaces.

The refusing machine is a frame whose user namespace has
user.max_user_namespaces 0, as a locked-down container has: the grader there
cannot make a single run's host, and --vm auto grades inside a VM instead.
The tests that boot a VM are slow (half a minute or more without KVM) and
skip, with the reason, where no VM can start; CI installs what one needs.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from shlex import quote

import pytest

from helpers import PYTHON, ROOT, in_frame, refused, step_path

from conformance import remote, vm
from conformance.catalog import STEP_NAMES, file_name
from conformance.checks import checks_for
from conformance.discover import Program, find_programs
from conformance.grade import CheckResult, StepResult
from conformance.report import full, write_json
from conformance.sandbox import Limits

CANNED = ROOT / "tests" / "gallery" / "wrong" / "canned"
OUT_OF = sum(len(checks_for(nn)) for nn in STEP_NAMES)
IN_VM = "graded inside a VM: this machine refuses namespaces"
IN_UML = "graded inside User-mode Linux: this machine refuses namespaces"
REFUSAL = "nskit: cannot create the user namespace every graded run needs"
# Where a test is about QEMU: User-mode Linux, which --vm auto would boot first, hidden.
NO_UML = "NSKIT_VM_UML=/nonexistent"


def _no(machine):
    try:
        machine.find()
    except vm.NoVM as error:
        return str(error)
    return None


NO_VM = _no(vm.Machine)
needs_vm = pytest.mark.skipif(NO_VM is not None, reason=f"{NO_VM}")
UML_NOT_HERE = _no(vm.UML)
needs_uml = pytest.mark.skipif(UML_NOT_HERE is not None, reason=f"{UML_NOT_HERE}")
# One VM at a time: under QEMU's emulator two at once on two cores starve each other.
pytestmark = pytest.mark.xdist_group("vm")


def refusing(command):
    """bash for command run where user namespaces are refused: in a user
    namespace of the frame's own whose max_user_namespaces is 0."""
    inner = f"echo 0 > /proc/sys/user/max_user_namespaces && exec {command}"
    return f"unshare --user --map-root-user bash -c {quote(inner)}"


def in_slow_frame(script):
    """in_frame, with the time a class graded under TCG on a busy machine needs."""
    return in_frame(script, timeout=900)


def grader(*args):
    return " ".join([quote(PYTHON), "-m", "conformance", *map(quote, map(str, args))])


def class_of(root):
    """A class of two: the kit's own steps, and the gallery's canned program
    (it prints the article's output whatever it is asked to run)."""
    for nn in STEP_NAMES:
        kit, canned = root / "kit", root / "canned"
        kit.mkdir(parents=True, exist_ok=True)
        canned.mkdir(parents=True, exist_ok=True)
        shutil.copy(step_path(nn), kit / f"{file_name(nn)}.py")
        shutil.copy(CANNED, canned / file_name(nn))
        (canned / file_name(nn)).chmod(0o755)
    return root


def failed(report):
    """{learner: {step: titles of the checks that failed}} from a --json report."""
    return {label: {s["step"]: {c["title"] for c in s["checks"] if not c["passed"]}
                    for s in learner["steps"]}
            for label, learner in json.loads(report.read_text()).items()}


def missing(sentence):
    """What a "no VM can start here" sentence names as missing: the kernel
    alone where QEMU is installed, after QEMU and the rest where it is not."""
    found = re.search(r"no VM can start here: (.*) missing \(install: ", sentence)
    assert found, sentence
    return found.group(1).split(", ")


def test_missing_reads_every_piece_the_sentence_names():
    assert missing("nskit: no VM can start here: QEMU (qemu-system-x86_64), the kernel /k "
                   "missing (install: apt-get ...)") == ["QEMU (qemu-system-x86_64)", "the kernel /k"]
    with pytest.raises(AssertionError):
        missing("nskit: the VM did not start (with TCG: ...)")


def test_the_frame_refuses_and_never_keeps_today_s_sentence():
    r = in_frame(refusing(grader("--target", "steps", "--vm", "never")))
    assert r.code == 2 and r.err.startswith(REFUSAL), r
    assert IN_VM not in r.out + r.err


def test_where_no_vm_can_start_the_sentence_names_what_is_missing(tmp_path):
    r = in_frame(f"NSKIT_VM_KERNEL={tmp_path}/vmlinuz " + refusing(grader("--target", "steps")))
    assert r.code == 2, r
    assert r.err.startswith(REFUSAL) and len(r.err.strip().splitlines()) == 1, r.err
    assert "A VM could grade here instead, but no VM can start here: " in r.err
    assert f"the kernel {tmp_path}/vmlinuz" in missing(r.err), r.err
    assert "apt-get install qemu-system-x86 linux-image-amd64" in r.err
    assert "pip install -r requirements-vm.txt" in r.err


def test_vm_always_where_none_can_start_says_why(tmp_path):
    r = in_frame(f"{NO_UML} NSKIT_VM_KERNEL={tmp_path}/vmlinuz " +
                 grader("--target", "steps", "--step", "00", "--vm", "always"))
    assert r.code == 2 and r.err.startswith("nskit: no VM can start here: "), r
    assert f"the kernel {tmp_path}/vmlinuz" in missing(r.err), r.err


def programs(*steps, problem=None):
    return [Program(nn, None if problem else step_path(nn), problem) for nn in steps]


def test_a_grading_splits_into_parts_of_about_equal_cost_in_the_class_s_order():
    targets = {"ann": programs("00", "01", "07"), "bob": programs("05", "07"),
               "cy": programs("02", "03", problem="missing")}
    parts = vm.split(targets, 2)
    assert len(parts) == 2
    # Every run once, in its learner's order; learners in the class's order.
    assert sorted((label, p.step) for part in parts for label, ps in part.items() for p in ps) == \
        sorted((label, p.step) for label, ps in targets.items() for p in ps)
    for part in parts:
        assert list(part) == [label for label in targets if label in part]
        assert all(ps == [p for p in targets[label] if p in ps] for label, ps in part.items())
    # The two 07s, the costliest, go to different parts; runs not run cost nothing.
    assert [sum(p.step == "07" for ps in part.values() for p in ps) for part in parts] == [1, 1]
    costs = [sum(map(vm.cost, (p for ps in part.values() for p in ps))) for part in parts]
    assert abs(costs[0] - costs[1]) <= max(map(vm.cost, programs("00", "07"))), costs
    assert vm.cost(Program("07", problem="missing")) == 0 < vm.cost(Program("00", step_path("00")))
    # Never more parts than runs, nor an empty one; no targets, one part of none.
    assert len(vm.split({"ann": programs("00")}, 4)) == 1
    assert vm.split({}, 2) == [{}]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: nothing to take from")
def test_cores_are_the_affinity_s_within_the_cgroup_s_quota():
    one = subprocess.run(["taskset", "-c", "0", PYTHON, "-c",
                          "from conformance import vm; print(vm.cores())"],
                         cwd=ROOT, capture_output=True, text=True)
    assert one.stdout.strip() == "1", one
    assert vm.cores() == len(os.sched_getaffinity(0))
    # ... within the CPU quota of the cgroup it sees as its root, as a container's --cpus.
    quota = in_frame(f"{quote(PYTHON)} -c 'from conformance import vm; print(vm.cores())'",
                     setup="mount -t tmpfs nskit-cgroup /sys/fs/cgroup && "
                           "echo '50000 100000' > /sys/fs/cgroup/cpu.max && ")
    assert quota.out.strip() == "1", quota


def checks(report):
    """A --json report without what varies from run to run: its seconds and
    what the programs printed."""
    data = json.loads(report.read_text())
    for learner in data.values():
        for step in learner["steps"]:
            del step["seconds"], step["output"]
    return data


def test_a_part_graded_elsewhere_comes_back_as_the_results_of_a_grading_here(tmp_path):
    """What a VM's grader does with its part (python -m conformance vm-part),
    run here: its results, read back, report as a grading here does."""
    folder = wrong_01(tmp_path / "class", ["00", "01"])
    targets = {label: find_programs(folder / label, ["00", "01"]) for label in ("kit", "wrong")}
    part, results = tmp_path / "part.json", tmp_path / "results.json"
    part.write_text(remote.part(targets, Limits(), 2))
    r = in_frame(f"{quote(PYTHON)} -m conformance {remote.COMMAND} {part} {results}")
    assert r.code == 0 and not r.out, r
    back = remote.read_results(results.read_text(), targets)
    native = tmp_path / "native.json"
    r = in_frame(grader("--submissions", folder, "--step", "00", "--step", "01", "--json", native,
                        "--vm", "never", "--csv", tmp_path / "scores.csv"))
    assert r.code == 0, r
    report = tmp_path / "back.json"
    write_json(report, full(back))
    assert checks(report) == checks(native)
    assert [c.passed for c in back["wrong"][1].checks] != [c.passed for c in back["kit"][1].checks]


def test_a_part_s_results_are_taken_only_as_the_results_of_its_programs():
    targets = {"ann": programs("00", "01")}
    good = [CheckResult("00", "runs", True, "", ""), CheckResult("00", "waits", False, "no", "hint")]
    results = {"ann": [StepResult("00", "/a/00.py", good, "out", 1.5),
                       StepResult("01", None, [], problem="missing")]}
    text = remote.results_data(results)
    assert remote.read_results(text, targets) == results
    # A folder's name that is not UTF-8 goes there and back as it is.
    name = os.fsdecode(b"l\xff")
    there = {name: [Program("00", step_path("00").parent / name / "00_skeleton.py")]}
    assert remote.read_part(remote.part(there, Limits(), None))[0] == there
    back = {name: [StepResult("00", str(there[name][0].path), good, "\udcff", 1.0)]}
    assert remote.read_results(remote.results_data(back), there) == back
    data = json.loads(text)
    wrong = {
        "another learner": [["bob", data[0][1]]],
        "a step missing": [["ann", data[0][1][:1]]],
        "a step more": [["ann", data[0][1] + data[0][1][:1]]],
        "a field more": [["ann", [{**data[0][1][0], "x": 1}, data[0][1][1]]]],
        "a check of another step": [["ann", [{**data[0][1][0], "checks": [
            {**data[0][1][0]["checks"][0], "step": "01"}]}, data[0][1][1]]]],
        "passed a string": [["ann", [{**data[0][1][0], "checks": [
            {**data[0][1][0]["checks"][0], "passed": "yes"}]}, data[0][1][1]]]],
        "a status of its own": [["ann", [{**data[0][1][0], "checks": [
            {**data[0][1][0]["checks"][0], "status": "great"}]}, data[0][1][1]]]],
        "seconds a string": [["ann", [{**data[0][1][0], "seconds": "1"}, data[0][1][1]]]],
        "no pairs": {"ann": []},
    }
    for why, data_ in wrong.items():
        with pytest.raises(ValueError):
            remote.read_results(json.dumps(data_), targets)
            pytest.fail(why)
    with pytest.raises(ValueError):
        remote.read_results("[", targets)


@pytest.mark.slow
@needs_vm
def test_a_class_is_graded_in_one_vm_with_the_same_verdicts_as_natively(tmp_path):
    folder = class_of(tmp_path / "class")
    native = tmp_path / "native.json"
    r = in_frame(grader("--submissions", folder, "--json", native, "--csv", tmp_path / "n.csv",
                        "--vm", "never", "--jobs", "2"))
    assert r.code == 0, r
    report, scores = tmp_path / "vm.json", tmp_path / "vm.csv"
    r = in_slow_frame(f"export {NO_UML}; " + refusing(grader(
        "--submissions", folder, "--json", report, "--csv", scores, "--jobs", "2")))
    assert r.code == 0, r
    assert r.out.count(IN_VM) == 1, r
    assert f"scores: {scores}" in r.out
    verdicts = failed(report)
    assert verdicts["kit"] == {nn: set() for nn in STEP_NAMES}, verdicts["kit"]
    assert verdicts["canned"] == failed(native)["canned"]
    assert any(verdicts["canned"].values())
    assert scores.read_text() == (tmp_path / "n.csv").read_text()


@pytest.mark.slow
@needs_vm
def test_the_vm_writes_only_its_shared_folder(tmp_path):
    """Root inside the VM: the machine's / stays as it was, whatever it tries;
    only the shared folder takes what it writes."""
    out = tmp_path / "out"
    out.mkdir()
    planted = [tmp_path / "planted", ROOT / "planted-by-the-vm", Path("/planted-by-the-vm")]
    script = "; ".join([
        *(f"echo x > {quote(str(p))}" for p in planted),
        f"mount -o remount,rw / && echo x > {quote(str(planted[2]))}",
        f"echo x > {quote(str(ROOT / 'README.md'))}",
        f"echo kept > {quote(str(out / 'result'))}",
    ])
    before = (ROOT / "README.md").read_text()
    how = vm.Machine.find().run(script, out, timeout=vm.BOOT_BUDGET)
    assert how in ("KVM", "TCG")
    assert (out / "result").read_text() == "kept\n"
    assert not [p for p in planted if p.exists()]
    assert (ROOT / "README.md").read_text() == before


@pytest.mark.slow
@needs_vm
def test_gradescope_s_autograder_grades_inside_a_vm_where_the_container_refuses(tmp_path):
    """The bundle's run_autograder, as Gradescope runs it, in a container that
    refuses namespaces: one boot, every check graded, step 05 (the skeleton
    under its name) failing the checks it fails natively."""
    zip_path = tmp_path / "autograder.zip"
    subprocess.run([PYTHON, "-m", "gradescope.bundle", str(zip_path)], cwd=ROOT, check=True,
                   capture_output=True)
    subprocess.run(["unzip", "-q", str(zip_path), "-d", str(tmp_path / "source")], check=True)
    work = tmp_path / "submission" / "work"
    work.mkdir(parents=True)
    for nn in STEP_NAMES:
        shutil.copy(step_path(nn if nn != "05" else "00"), work / f"{file_name(nn)}.py")
    script = quote(str(tmp_path / "source" / "run_autograder"))
    r = in_slow_frame(f"export AUTOGRADER_ROOT={quote(str(tmp_path))} {NO_UML} "
                      f"NSKIT_PYTHON={quote(PYTHON)}; " + refusing(script))
    assert r.code == 0, r
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    failing = {t["name"][:6] for t in results["tests"] if t["score"] < t["max_score"]}
    assert len(results["tests"]) == OUT_OF and failing == {"05 pid"}, results["output"]
    # Every step is worth 10 points; the skeleton as 05 earns none of its.
    assert results["score"] == 10 * (len(STEP_NAMES) - 1), results["output"]
    head = results["output"].splitlines()[1]
    assert head.startswith("Graded inside a throwaway VM, as this container refuses"), head
    assert re.search(r", in \d+\.\d s$", head), head


@pytest.mark.slow
@needs_vm
def test_make_step_runs_the_demo_in_a_vm_where_namespaces_and_docker_are_missing():
    # Root without CAP_SYS_ADMIN, as in a container with Docker's defaults, and no docker.
    from test_make import FRAME_SETUP
    result = in_frame("setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin "
                      "make --no-print-directory step-03; "
                      "echo exit=$?", own_root=True, setup=FRAME_SETUP, timeout=900)
    assert "exit=0" in result.out, result
    assert result.out.startswith("Namespaces are refused here (a seccomp filter or security "
                                 "policy, as in a container started with Docker's defaults) "
                                 "and Docker is missing: running it in a throwaway VM"), result
    assert "through steps/03_uts.py: hostname" in result.out


def test_what_comes_out_of_the_shared_folder_never_follows_a_link(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("the machine's")
    shared = tmp_path / "shared"
    (shared / "dir").mkdir(parents=True)
    (shared / "report").write_text("kept")
    (shared / "dir" / "a").write_text("kept too")
    (shared / "link").symlink_to(secret)
    (shared / "dir" / "link").symlink_to(secret)
    (shared / "dirlink").symlink_to(tmp_path)
    out = tmp_path / "out"
    for name in ("report", "link", "dir", "dirlink"):
        vm._copy_out(shared / name, out / name)
    assert (out / "report").read_text() == "kept" and (out / "dir" / "a").read_text() == "kept too"
    assert sorted(p.name for p in out.rglob("*")) == ["a", "dir", "report"]
    assert vm._read(shared / "link") == "" and vm._read(shared / "report") == "kept"


# User-mode Linux: the grader's own frame refuses user namespaces by a seccomp
# filter (helpers.refused), as Docker's default profile does, and stays the
# machine's root, who alone may run UML as an unused uid.

def wrong_01(root, steps=("01",)):
    """A class of two: the kit's steps, and one whose 01 is the skeleton."""
    for nn in steps:
        for learner in ("kit", "wrong"):
            (root / learner).mkdir(parents=True, exist_ok=True)
            shutil.copy(step_path("00" if (learner, nn) == ("wrong", "01") else nn),
                        root / learner / f"{file_name(nn)}.py")
    return root


def graded_in_uml_as_natively(tmp_path, steps):
    folder = wrong_01(tmp_path / "class", steps)
    asked = [arg for nn in steps for arg in ("--step", nn)]
    native, report = tmp_path / "native.json", tmp_path / "uml.json"
    r = in_frame(grader("--submissions", folder, *asked, "--json", native,
                        "--csv", tmp_path / "n.csv", "--vm", "never"))
    assert r.code == 0, r
    r = in_slow_frame(refused(grader("--submissions", folder, *asked, "--json", report,
                                     "--csv", tmp_path / "uml.csv")))
    assert r.code == 0, r
    assert r.out.count(IN_UML) == 1 and IN_VM not in r.out, r
    verdicts = failed(report)
    assert verdicts["kit"] == {nn: set() for nn in steps}, verdicts["kit"]
    assert verdicts["wrong"] == failed(native)["wrong"]
    assert "new namespaces: net, no other" in verdicts["wrong"]["01"], verdicts["wrong"]
    assert (tmp_path / "uml.csv").read_text() == (tmp_path / "n.csv").read_text()


@pytest.mark.slow  # it boots User-mode Linux
@needs_uml
def test_user_mode_linux_grades_01_and_a_wrong_01_as_natively_where_namespaces_are_refused(tmp_path):
    graded_in_uml_as_natively(tmp_path, ["01"])


@pytest.mark.slow
@needs_uml
def test_user_mode_linux_grades_every_step_and_a_wrong_01_as_natively(tmp_path):
    graded_in_uml_as_natively(tmp_path, STEP_NAMES)


@pytest.mark.slow  # it boots User-mode Linux three times
@needs_uml
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: one UML grades alone")
def test_a_class_split_across_one_uml_per_core_reports_what_one_uml_does(tmp_path):
    folder = wrong_01(tmp_path / "class", ["00", "01", "03", "05"])
    reports = {}
    for how, prefix in (("one", "taskset -c 0 "), ("split", ""), ("native", None)):
        json_, csv_ = tmp_path / f"{how}.json", tmp_path / f"{how}.csv"
        command = grader("--submissions", folder, "--json", json_, "--csv", csv_,
                         "--junit", tmp_path / f"{how}.xml", *["--vm", "never"] * (prefix is None))
        r = in_frame(command) if prefix is None else in_slow_frame(prefix + refused(command))
        assert r.code == 0, r
        if prefix is not None:
            assert r.out.count(IN_UML) == 1, r
            assert ("2 at once, one per core" in r.out) == (how == "split"), r.out
        reports[how] = (checks(json_), csv_.read_text(),
                        re.sub(r'time="[^"]*"', "", (tmp_path / f"{how}.xml").read_text()))
    assert reports["split"] == reports["one"] == reports["native"]
    assert "new namespaces: net, no other" in failed(tmp_path / "split.json")["wrong"]["01"]


@pytest.mark.slow  # it boots User-mode Linux
@needs_uml
def test_user_mode_linux_writes_only_its_shared_folder(tmp_path):
    """Root inside UML remounts its / writable and mounts the machine's / by
    hostfs: UML's uid still writes nothing of the machine's; the shared
    folder alone takes what it writes, copied back as regular files only."""
    out = tmp_path / "out"
    out.mkdir()
    planted = [tmp_path / "planted", ROOT / "planted-by-uml", Path("/planted-by-uml")]
    script = "; ".join([
        "mount -o remount,rw /", "mkdir -p /run/host", "mount -t hostfs -o / nskit /run/host",
        *(f"echo x > {quote(str(p))}; echo x > /run/host{quote(str(p))}" for p in planted),
        f"echo x >> {quote(str(ROOT / 'README.md'))}",
        f"echo kept > {quote(str(out / 'result'))}",
        f"ln -s {quote(str(ROOT / 'README.md'))} {quote(str(out / 'link'))}",
    ])
    before = (ROOT / "README.md").read_text()
    assert vm.UML.find().run(script, out, timeout=120) == "UML"
    assert (out / "result").read_text() == "kept\n"
    assert not (out / "link").exists() and not [p for p in planted if p.exists()]
    assert (ROOT / "README.md").read_text() == before


# /tmp and /var/tmp made noexec where they are, not covered, and the
# checkout kept as it was: it (and its venv's vng) may live below them, as a
# clone in mktemp -d does.
NOEXEC_TMP = f"mount --bind {quote(str(ROOT))} {quote(str(ROOT))}; " + "".join(
    f"mount --rbind {d} {d}; mount -o remount,bind,noexec {d}; " for d in ("/tmp", "/var/tmp"))


@needs_uml
def test_where_user_mode_linux_cannot_run_one_sentence_says_why_and_qemu_is_next(tmp_path):
    noexec = NOEXEC_TMP
    fake = f"TMPDIR=/tmp NSKIT_VM_KERNEL={tmp_path}/vmlinuz"
    r = in_frame(f"{fake} " + grader("--target", "steps", "--step", "00", "--vm", "always"),
                 setup=noexec)
    assert r.code == 2 and r.err.startswith("nskit: no VM can start here: "), r
    assert r.err.strip().endswith("; nor can User-mode Linux: no folder for its memory file "
                                  "allows exec here (/tmp and /var/tmp are noexec): set TMPDIR "
                                  "to one that does."), r.err
    r = in_frame(grader("--target", "steps", "--step", "00", "--vm", "always", "--vm-kind", "uml"),
                 setup=noexec)
    assert r.code == 2 and r.err.startswith("nskit: User-mode Linux cannot grade here: no folder "
                                            "for its memory file allows exec"), r


@needs_uml
@needs_vm
def test_where_user_mode_linux_cannot_run_qemu_grades_and_one_sentence_says_why():
    noexec = NOEXEC_TMP
    r = in_frame(f"TMPDIR=/tmp {quote(PYTHON)} -c " + quote(
        "from conformance import vm; machine, note = vm.find(); print(machine.name); print(note)"),
        setup=noexec)
    assert r.out.splitlines() == [
        "QEMU", "User-mode Linux cannot run here: no folder for its memory file allows exec "
        "here (/tmp and /var/tmp are noexec): set TMPDIR to one that does; QEMU grades instead"], r
