"""The grader's own tests: it passes the kit's steps and correct
programs in C and shell, and fails every program of a gallery of wrong ones
with the right reason, leaving the machine as it found it.

The gallery is one folder per scenario, every scenario graded at once as a
class (`--submissions`), so the whole gallery costs one grader run (and the
program that hangs one more, alongside, with a short timeout). Wrong
Python programs are the kit's steps/*.py changed by text substitution here;
the C, shell and hand-written wrong programs (a forger among them) live in
tests/gallery/. A wrong program fails exactly the checks its one mistake
breaks; those that need them are skipped.
"""
import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from shlex import quote

import pytest

from helpers import PYTHON, ROOT, STEPS_DIR, grade, in_frame, machine_traces, step_path

from conformance.catalog import STEP_NAMES, file_name
from conformance.checks import checks_for, skipped_for

GALLERY = Path(__file__).resolve().parent / "gallery"
HANG_TIMEOUT = 2

TITLES = {nn: [c.title for c in checks_for(nn)] for nn in STEP_NAMES}
RAN = "runs the command it is given"
WAITS = "waits for its command"
HOST = "leaves the host unchanged"
NO_PROCESS = "leaves no process running"
SEES_HOST = "sees what the host sees"
LO = "ip a lists only lo, DOWN"
TMPFS_IN = "a tmpfs is mounted on /mytmp inside"
TMPFS_OUT = "the tmpfs never shows on the host"
NO_JAIL = "ls / still shows the host's files"
MYHOSTNAME = "hostname prints myhostname inside"
HOSTNAME_KEPT = "the host's hostname is unchanged"
NO_QUEUE = "ipcs -q inside lists no queue"
PID1 = "ps shows the command as PID 1, alone"
PROC_KEPT = "the host's /proc is untouched"
ID = "id shows nobody/nogroup"
LS = "ls -la shows nobody/nogroup"


def ns(nn):
    """The title of a step's namespace check."""
    return TITLES[nn][2]


def env():
    """The environment for a child grader or pytest: no trace of this pytest."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "PYTHONUNBUFFERED"))}


def run(argv, **kwargs):
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env(),
                          timeout=300, **kwargs)


# -- wrong programs: the kit's steps, changed ----------------------------------------

ALL_FLAGS = ("CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, "
             "CLONE_NEWNET = 0x20000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, "
             "0x40000000\n")
CLONE_FLAGS = re.compile(r"clone_flags = (\([^)]*\)|.*)")
IN_CHILD = "    # Python set SIGPIPE to ignored"


def variant(nn, flags=None, drop=(), before_clone=None, in_child=None, no_sigchld=False,
            replace=()):
    """steps/NN_*.py with other clone flags, without the `if libc.CALL ...: die`
    statements naming each of drop, with a line run before clone() or in the
    child before it execs, without SIGCHLD, or with (old, new) texts replaced."""
    text = step_path(nn).read_text()
    text = text.replace("import sys\n", "import sys\n" + ALL_FLAGS, 1)
    if flags is not None:
        text, n = CLONE_FLAGS.subn(f"clone_flags = {flags}", text, count=1)
        assert n == 1
    if no_sigchld:
        flags_text = CLONE_FLAGS.search(text).group(0)
        bare = flags_text.replace(" | SIGCHLD", "").replace("= SIGCHLD", "= 0")
        assert bare != flags_text and "SIGCHLD" not in bare
        text = text.replace(flags_text, bare, 1)
    for call in drop:
        text, n = re.subn(rf"\n *if libc\.{re.escape(call)}[^\n]*\n *die\([^\n]*", "", text)
        assert n == 1, call
    if before_clone:
        text, n = re.subn(r"\n( *)child_stack = ", rf"\n\1{before_clone}\n\1child_stack = ", text)
        assert n == 1
    if in_child:
        assert text.count(IN_CHILD) == 1
        text = text.replace(IN_CHILD, f"    {in_child}\n{IN_CHILD}")
    for old, new in replace:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


# The host's view, changed: a SysV queue made by the parent, in the host's IPC namespace.
VANDAL = "libc.msgget(0x6e736b, 0o1000 | 0o600)"
# The host's hostname, changed by the parent.
RENAME = 'libc.sethostname(b"renamed", 7)'
# A daemon: a background sleep in a session of its own, no longer the program's child.
DAEMON = 'os.system("setsid sleep 1000 </dev/null >/dev/null 2>&1 &")'
# lo brought up by the child, in its own network namespace (SIOCSIFFLAGS, IFF_UP).
LO_UP = ('__import__("fcntl").ioctl(__import__("socket").socket(2, 2), 0x8914, '
         'b"lo".ljust(16, b"\\0") + (1).to_bytes(2, "little") + bytes(22))')
# A queue made by the child, in its own IPC namespace.
QUEUE_INSIDE = "libc.msgget(0x6e736c, 0o1000 | 0o600)"
# The child maps itself to root in its own user namespace.
MAP_ROOT = 'open("/proc/self/uid_map", "w").write("0 0 1")'
# The parent mounts a tmpfs on the host's /mytmp, or lazily unmounts its /proc.
PARENT_MOUNTS = 'libc.mount(b"none", b"/mytmp", b"tmpfs", 0, b"")'
PARENT_UNMOUNTS = 'libc.umount2(b"/proc", 2)'
# The parent ends without waiting for its child.
NO_WAIT = ("_, status = os.waitpid(pid, 0)", "status = 0")
# mount()'s target and file system type swapped: the one call fails.
SWAPPED = ('libc.mount(b"none", b"/mytmp", b"tmpfs"', 'libc.mount(b"none", b"tmpfs", b"/mytmp"')

# The private call made after the mount it should have kept in the child.
PRIVATE = ('    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:\n'
           '        die(failed("mount --make-rprivate /"))\n')
TMPFS = ('    if libc.mount(b"none", b"/mytmp", b"tmpfs", 0, b"") != 0:\n'
         '        die(failed("mount tmpfs on /mytmp"))\n')
UMOUNT = ('    if libc.umount2(b"/proc", MNT_DETACH) != 0:\n'
          '        die(failed("umount /proc"))\n')
# The child's sethostname, made by the parent before or after clone instead.
NAME = 'libc.sethostname(b"myhostname", 10)'
AFTER_CLONE = "    if pid == -1:\n"
# The C of 07 with the article's unmount of /proc from 05, as a learner
# combining the article's calls writes it.
KITS_PROC = ("        // In a new user namespace the host's /proc is locked in place\n"
             "        // (umount fails with EINVAL): mount a fresh proc over it instead.\n")
C_SETHOSTNAME = """        const char * new_hostname = "myhostname";
        if (sethostname(new_hostname, strlen(new_hostname)) != 0) {
                fprintf(stderr, "failed to set hostname %s\\n",
                        strerror(errno));
                exit(-1);
        }
"""


def naive_07():
    """07 in C as the union of the article's calls: 05's umount of /proc included."""
    pid = (GALLERY / "c" / "05_pid.c").read_text()
    umount = pid[pid.index("        // The article writes umount"):pid.index('        if (mount("proc"')]
    combined = (GALLERY / "c" / "07_combined.c").read_text()
    assert combined.count(KITS_PROC) == 1
    return combined.replace(KITS_PROC, umount)


NOT_FOUND = "not found: no file named"
NOT_EXECUTABLE = "is neither a .py file nor executable: chmod +x it"


def build_gallery(root, hang=None):
    """One folder per scenario under root, graded as a class; the one that
    hangs in a folder of its own, hang, to be graded with a short timeout."""
    def put(label, name, text, mode=0o755):
        if label == "hang" and hang is None:
            return
        path = (hang if label == "hang" else root / label) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)

    skeleton = step_path("00").read_text()
    canned = (GALLERY / "wrong" / "canned").read_text()
    forger = (GALLERY / "wrong" / "forger").read_text()
    for nn in STEP_NAMES:
        # The skeleton under every other step's name (and its own).
        put("skeleton", f"{file_name(nn)}.py", skeleton)
        # Right in all but the host: a queue made outside the new namespaces.
        put("vandal", f"{file_name(nn)}.py", variant(nn, before_clone=VANDAL))
        # Right in all but a daemon left behind.
        put("daemon", f"{file_name(nn)}.py", variant(nn, before_clone=DAEMON))
        # Prints the article's output, whatever it is asked to run.
        put("canned", file_name(nn), canned)
        # Right in all but the parent's wait: a child without SIGCHLD, or no wait at all.
        put("no_sigchld", f"{file_name(nn)}.py", variant(nn, no_sigchld=True))
        put("no_wait", f"{file_name(nn)}.py", variant(nn, replace=[NO_WAIT]))
        if nn != "00":
            # Runs its command in the machine's namespaces, prints the article's output.
            put("forger", file_name(nn), forger)

    # A flag where none belongs, too many flags, a wrong flag.
    put("flags", "00_skeleton.py", variant("00", "CLONE_NEWNET | SIGCHLD"))
    put("flags", "01_net.py", variant("01", "CLONE_NEWNET | CLONE_NEWUTS | SIGCHLD"))
    put("flags", "04_ipc.py", variant("04", "CLONE_NEWNET | SIGCHLD"))
    put("flags", "06_user.py", variant("06", "CLONE_NEWUSER | CLONE_NEWIPC | SIGCHLD"))

    # The right flag without its work.
    put("no_work", "02_mount.py", variant("02", drop=['mount(b"none"']))
    put("no_work", "03_uts.py", variant("03", drop=["sethostname("]))
    put("no_work", "05_pid.py", variant("05", drop=['umount', 'mount(b"proc"']))
    put("no_work", "07_combined.py",
        variant("07", drop=['mount(b"none"', "sethostname(", 'mount(b"proc"']))

    # The work without its flag: done in the host's namespaces.
    put("no_flag", "02_mount.py", variant("02", "SIGCHLD"))
    put("no_flag", "03_uts.py", variant("03", "SIGCHLD"))
    put("no_flag", "05_pid.py", variant("05", "CLONE_NEWPID | SIGCHLD"))
    put("no_flag", "07_combined.py", variant("07", "SIGCHLD"))

    # Right namespaces, wrong work inside them.
    put("inside", "01_net.py", variant("01", in_child=LO_UP))
    put("inside", "04_ipc.py", variant("04", in_child=QUEUE_INSIDE))
    put("inside", "06_user.py", variant("06", in_child=MAP_ROOT))
    put("inside", "07_combined.py", variant("07", in_child=LO_UP))
    put("inside_too", "07_combined.py", variant("07", in_child=QUEUE_INSIDE))
    put("mapped", "07_combined.py", variant("07", in_child=MAP_ROOT))

    # Mounts that reach the host: never made private (the host mounts / shared),
    # or made by the parent in the host's own mount namespace.
    put("leak", "02_mount.py", variant("02", drop=['mount(None, b"/"']))
    put("leak", "05_pid.py", variant("05", drop=['mount(None, b"/"']))
    put("leak", "07_combined.py", variant("07", before_clone=PARENT_MOUNTS))
    put("proc_gone", "07_combined.py", variant("07", before_clone=PARENT_UNMOUNTS))

    # The host's hostname changed by the parent.
    put("renamer", "00_skeleton.py", variant("00", before_clone=RENAME))
    put("renamer", "03_uts.py", variant("03", before_clone=RENAME))
    put("renamer", "07_combined.py", variant("07", before_clone=RENAME))

    # The private call after the mount: the order, not a missing call.
    put("order", "02_mount.py", variant("02", replace=[(PRIVATE + TMPFS, TMPFS + PRIVATE)]))
    put("order", "05_pid.py", variant("05", replace=[(PRIVATE + UMOUNT, UMOUNT + PRIVATE)]))
    # sethostname in the parent, before clone or after it, not in the child.
    put("named_before", "03_uts.py", variant("03", drop=["sethostname("], before_clone=NAME))
    put("named_after", "03_uts.py", variant("03", drop=["sethostname("],
                                            replace=[(AFTER_CLONE, f"    {NAME}\n{AFTER_CLONE}")]))
    # C: the hints speak of the child, not of the kit's child_exec; and the
    # article's calls combined, whose unmount of /proc a new user namespace refuses.
    c_uts = (GALLERY / "c" / "03_uts.c").read_text()
    assert c_uts.count(C_SETHOSTNAME) == 1
    put("c_words", "03_uts.c", c_uts.replace(C_SETHOSTNAME, ""), mode=0o644)
    put("naive", "07_combined.c", naive_07(), mode=0o644)

    # One call fails: the program's own error is shown, and nothing else fails.
    put("one_call", "02_mount.py", variant("02", replace=[SWAPPED]))

    # A mount namespace made a jail.
    put("jail", "02_mount", (GALLERY / "wrong" / "jail").read_text())
    put("jail", "07_combined", (GALLERY / "wrong" / "jail07").read_text())

    # One that never ends.
    put("hang", "00_skeleton", (GALLERY / "wrong" / "hang").read_text())

    # Files the grader cannot run, or cannot find.
    put("broken", "00_skeleton.py", (GALLERY / "wrong" / "syntax_error.py").read_text())
    put("broken", "net.py", step_path("01").read_text())
    put("broken", "1_net.py", step_path("01").read_text())
    put("broken", "02_mount.py", step_path("02").read_text())
    put("broken", "02_tmpfs.py", step_path("02").read_text())
    put("broken", "03_uts.py", step_path("03").read_text())
    put("broken", "04_ipc", (GALLERY / "sh" / "04_ipc").read_text(), mode=0o644)
    put("broken", "06_user.py", (GALLERY / "wrong" / "crash.py").read_text())


# What each scenario's programs must fail, and nothing else: every other
# check passes or is skipped for one of these.
EXPECTED = {
    # An untouched exercise does step 00, and earns nothing in the others.
    "skeleton": {nn: set() if nn == "00" else {ns(nn)} for nn in STEP_NAMES},
    "vandal": {nn: {HOST} for nn in STEP_NAMES},
    "daemon": {nn: {NO_PROCESS} for nn in STEP_NAMES},
    # Nothing is credited to a program whose command never ran.
    "canned": {nn: {RAN} for nn in STEP_NAMES},
    "no_sigchld": {nn: {WAITS} for nn in STEP_NAMES},
    "no_wait": {nn: {WAITS} for nn in STEP_NAMES},
    # It runs the command three times: /nskit/ready, a decoy, then "$@".
    "forger": {nn: {RAN} for nn in STEP_NAMES if nn != "00"},
    "flags": {"00": {ns("00")}, "01": {ns("01")}, "04": {ns("04")}, "06": {ns("06")}},
    "no_work": {
        "02": {TMPFS_IN},
        "03": {MYHOSTNAME},
        "05": {PID1},
        "07": {TMPFS_IN, MYHOSTNAME, PID1},
    },
    "no_flag": {nn: {ns(nn)} for nn in ("02", "03", "05", "07")},
    "inside": {"01": {LO}, "04": {NO_QUEUE}, "06": {ID, LS}, "07": {LO}},
    "inside_too": {"07": {NO_QUEUE}},
    "mapped": {"07": {ID, LS}},
    "leak": {"02": {TMPFS_OUT}, "05": {PROC_KEPT}, "07": {TMPFS_OUT}},
    "proc_gone": {"07": {PROC_KEPT}},
    "renamer": {"00": {SEES_HOST}, "03": {HOSTNAME_KEPT}, "07": {HOSTNAME_KEPT}},
    "one_call": {"02": {RAN}},
    "order": {"02": {TMPFS_OUT}, "05": {PROC_KEPT}},
    "named_before": {"03": {HOSTNAME_KEPT}},
    "named_after": {"03": {MYHOSTNAME}},
    "c_words": {"03": {MYHOSTNAME}},
    "naive": {"07": {RAN}},
    "jail": {"02": {NO_JAIL}, "07": {NO_JAIL}},
    "broken": {
        "00": {RAN},
        "03": set(),
        "06": {RAN},
    },
}
# Programs that earn nothing: every check but the one that failed is skipped.
EARN_NOTHING = {(label, nn) for label, steps in EXPECTED.items() for nn, bad in steps.items()
                if bad and (label in ("skeleton", "canned", "forger", "no_flag", "one_call",
                                      "broken", "naive") or label == "flags")}
# Steps a scenario cannot run at all, and the reason every one of their checks gives.
PROBLEMS = {
    ("hang", "00"): f"timed out after {HANG_TIMEOUT:g} s",
    ("broken", "01"): NOT_FOUND,
    ("broken", "02"): "more than one program claims step 02: 02_mount.py, 02_tmpfs.py",
    ("broken", "04"): f"04_ipc {NOT_EXECUTABLE}",
    ("broken", "05"): NOT_FOUND,
}


# -- the real machine ---------------------------------------------------------------

def real_host():
    """What a leak of the kit's would change on the real machine."""
    return machine_traces()


def strangers():
    """Living processes of uids no account has (what a throwaway host runs
    as), but those still inside a running grader: other graders may be at
    work on this machine, and a leak is one that outlived its grader."""
    procs = {}
    for line in run(["ps", "-eo", "pid=,ppid=,uid=,stat=,args="]).stdout.splitlines():
        pid, ppid, uid, stat, *args = line.split(None, 4)
        if not stat.startswith("Z"):  # a zombie is dead: reaping it is its parent's job
            procs[int(pid)] = int(ppid), int(uid), args[0] if args else ""

    def in_a_grader(pid):
        # Under a grader, or a process of the kit's own Python (another
        # test's, in parallel); a leak's parent is init, or a run's uid.
        while pid in procs:
            ppid, uid, args = procs[pid]
            if uid < 65536 and pid != 1 and ("conformance" in args or str(ROOT) in args):
                return True
            pid = ppid
        return False
    return {(pid, args) for pid, (_, uid, args) in procs.items()
            if uid >= 65536 and not in_a_grader(pid)}


def strangers_gone(old, wait=3.0):
    """Strangers that appeared since old, once those of other graders had time to end."""
    deadline = time.monotonic() + wait
    while (new := strangers() - old) and time.monotonic() < deadline:
        time.sleep(0.2)
    return new


@pytest.fixture(scope="module")
def host_at_start():
    return real_host(), strangers()


# -- grading the gallery --------------------------------------------------------------

def grading(folder, report, *args):
    """The grader started over a folder of scenarios, as a class."""
    return subprocess.Popen(
        [PYTHON, "-m", "conformance", "--submissions", str(folder), "--json", str(report),
         "--csv", str(report.with_suffix(".csv")), *args], cwd=ROOT, env=env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def results_of(report):
    """{label: {step: result}} from a --json report."""
    results = json.loads(report.read_text())
    return {label: {s["step"]: s for s in r["steps"]} for label, r in results.items()}


def with_status(result, status):
    return {c["title"] for c in result["checks"] if c["status"] == status}


def failed(result):
    return with_status(result, "failed")


def verdicts(result):
    """Every check's status and what was seen: what must not change between runs."""
    return [(c["title"], c["status"], c["seen"]) for c in result["checks"]]


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, host_at_start):
    root = tmp_path_factory.mktemp("gallery")
    folder, hang = root / "class", root / "hang"
    build_gallery(folder, hang)
    before = real_host(), strangers()
    # The hang is graded alongside, with a short timeout of its own.
    hanging = subprocess.Popen(
        [PYTHON, "-m", "conformance", "--target", str(hang), "--step", "00",
         "--timeout", str(HANG_TIMEOUT), "--json", str(root / "hang.json")],
        cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    grader = grading(folder, root / "results.json")
    out, err = grader.communicate(timeout=300)
    assert grader.returncode == 0 and "Traceback" not in err, (out, err)
    assert hanging.wait(timeout=60) == 1, hanging.stderr.read()
    results = results_of(root / "results.json")
    results["hang"] = {"00": results_of(root / "hang.json")[str(hang)]["00"]}
    after = real_host(), strangers_gone(before[1])
    return {"folder": folder, "root": root, "results": results, "before": before[0],
            "after": after[0], "strangers": after[1]}


@pytest.mark.parametrize("label, nn", [(label, nn) for label, steps in EXPECTED.items()
                                       for nn in steps])
def test_gallery_program_fails_exactly_the_right_checks(gallery, label, nn):
    result = gallery["results"][label][nn]
    assert result["problem"] is None, result["problem"]
    assert failed(result) == EXPECTED[label][nn], verdicts(result)
    for check in result["checks"]:
        assert check["passed"] == (check["status"] == "passed"), check
        if check["status"] == "failed":
            assert check["hint"], check
        if check["status"] == "skipped":
            assert check["seen"].startswith("skipped: needs ") and not check["hint"], check
            assert skipped_for(check["seen"]) in TITLES[nn], check
    if (label, nn) in EARN_NOTHING:
        assert with_status(result, "passed") == set(), verdicts(result)


def test_one_cause_shows_as_one_failure_and_the_rest_skipped(gallery):
    results = gallery["results"]
    skipped = with_status(results["skeleton"]["05"], "skipped")
    assert skipped == set(TITLES["05"]) - {ns("05")}
    for check in results["skeleton"]["05"]["checks"]:
        if check["status"] == "skipped":
            # The command did run, and the skip says so.
            own = "; on its own: it ran, and was observed" if check["title"] == RAN else ""
            assert check["seen"] == f"skipped: needs {ns('05')}{own}", check
    # The host's safety is credited only with the step's outcome.
    no_work = {c["title"]: c for c in results["no_work"]["02"]["checks"]}
    assert no_work[TMPFS_OUT]["seen"] == no_work[HOST]["seen"] == f"skipped: needs {TMPFS_IN}"


def test_a_failing_call_shows_its_error_first_and_one_failure(gallery):
    result = gallery["results"]["one_call"]["02"]
    first = result["checks"][0]
    assert first["title"] == RAN and first["status"] == "failed", first
    assert first["seen"] == ("the command never ran; the program's last words: 02_mount.py: "
                             "mount tmpfs on /mytmp failed: No such file or directory"), first
    assert all(c["seen"] == f"skipped: needs {RAN}" for c in result["checks"][1:]), result


@pytest.mark.parametrize("label, nn", list(PROBLEMS))
def test_gallery_program_that_cannot_run_fails_once_with_the_reason(gallery, label, nn):
    result = gallery["results"][label][nn]
    reason = PROBLEMS[label, nn]
    assert reason in result["problem"]
    first, *rest = result["checks"]
    assert first["title"] == RAN and first["status"] == "failed" and reason in first["seen"]
    assert all(c["status"] == "skipped" and c["seen"] == f"skipped: needs {RAN}"
               for c in rest), rest


def test_missing_steps_fail_as_not_found_naming_the_file_and_folder(gallery):
    steps = gallery["results"]["broken"]
    for nn in ("01", "05", "07"):
        assert steps[nn]["problem"] == (
            f"{NOT_FOUND} {file_name(nn)}.py (or {nn}_<name>) in {gallery['folder'] / 'broken'}")


def test_printed_words_are_never_taken_for_the_command_s(gallery):
    for nn, result in gallery["results"]["canned"].items():
        ran = result["checks"][0]
        assert ran["title"] == RAN and ran["status"] == "failed"
        # Its last words are shown, once.
        assert ran["seen"] == ("the command never ran; the program's last words: "
                               "link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00"), ran
    for nn, result in gallery["results"]["forger"].items():
        if nn not in EXPECTED["forger"]:
            continue
        # It ran its command three times, each in the machine's own namespaces.
        ran = result["checks"][0]
        assert ran["status"] == "failed" and ran["seen"] == (
            "ran the command three times: once as /nskit/ready in the host's, "
            "once as /nskit/sh -c /nskit/ready; : in the host's, once in the host's"), ran


def test_syntax_error_shows_python_s_message_and_where(gallery):
    ran = gallery["results"]["broken"]["00"]["checks"][0]
    path = gallery["folder"] / "broken" / "00_skeleton.py"
    assert ran["status"] == "failed", ran
    assert ran["seen"].endswith(f"SyntaxError: expected ':' (at {path}, line 6)"), ran
    output = gallery["results"]["broken"]["00"]["output"]
    assert f'File "{path}", line 6' in output, output


def test_crash_shows_the_last_line_of_its_traceback(gallery):
    ran = gallery["results"]["broken"]["06"]["checks"][0]
    assert ran["status"] == "failed", ran
    assert "last words: NameError: name 'main' is not defined" in ran["seen"], ran


def test_daemon_is_named_and_killed(gallery):
    for nn, result in gallery["results"]["daemon"].items():
        check = {c["title"]: c for c in result["checks"]}[NO_PROCESS]
        # Caught a moment before its sleep, the daemon is still the shell that
        # starts it (its command line cut to 30 characters): the name varies,
        # the count and the sleep do not.
        assert check["status"] == "failed", check
        assert re.fullmatch(r"1 still running: (sh -c setsid sleep 1000 </dev/|(setsid )?sleep 1000)",
                            check["seen"]), check


def test_a_child_without_sigchld_fails_waits_naming_its_exit_signal(gallery):
    for nn, result in gallery["results"]["no_sigchld"].items():
        check = {c["title"]: c for c in result["checks"]}[WAITS]
        assert "cloned with exit signal 0, not SIGCHLD" in check["seen"], check
        assert "wait for a child made by clone" in check["hint"], check
    for nn, result in gallery["results"]["no_wait"].items():
        check = {c["title"]: c for c in result["checks"]}[WAITS]
        assert check["seen"] == "the program ended while its command still ran", check


def test_work_without_its_flag_is_seen_from_the_kernel(gallery):
    steps = gallery["results"]["no_flag"]
    seen = {nn: {c["title"]: c["seen"] for c in steps[nn]["checks"]} for nn in steps}
    assert seen["02"][ns("02")] == seen["03"][ns("03")] == seen["07"][ns("07")] == "new: none"
    assert seen["05"][ns("05")] == "new: pid"


def test_leaks_into_a_shared_host_say_why(gallery):
    steps = gallery["results"]["leak"]
    seen = {nn: {c["title"]: c for c in steps[nn]["checks"]} for nn in steps}
    assert seen["02"][TMPFS_OUT]["seen"] == "1 new mount(s) on the host's /mytmp"
    assert "mounts / shared, as systemd hosts do today" in seen["02"][TMPFS_OUT]["hint"]
    assert "shared" in seen["05"][PROC_KEPT]["hint"]
    assert seen["05"][PROC_KEPT]["seen"] == "the host's /proc was unmounted or replaced"


def test_hints_agree_with_what_was_seen(gallery):
    pid1 = {c["title"]: c for c in gallery["results"]["no_work"]["05"]["checks"]}[PID1]
    assert "its /proc is the host's" in pid1["seen"] and "still the host's" in pid1["hint"]


def hint(gallery, label, nn, title):
    return {c["title"]: c for c in gallery["results"][label][nn]["checks"]}[title]["hint"]


def test_hints_name_a_private_call_made_too_late_not_a_missing_one(gallery):
    for nn, title, what in (("02", TMPFS_OUT, "mounted the tmpfs"),
                            ("05", PROC_KEPT, "unmounted or mounted /proc")):
        late = hint(gallery, "order", nn, title)
        assert f"did make its mounts private, but only after it {what}" in late, late
        assert "private first" in late and "Which mount call" not in late, late
        assert "Which mount call" in hint(gallery, "leak", nn, title)


def test_hints_name_the_process_that_set_the_hostname(gallery):
    before = hint(gallery, "named_before", "03", HOSTNAME_KEPT)
    assert "sethostname ran in the parent, before clone" in before, before
    assert "Which namespace" not in before, before
    after = hint(gallery, "named_after", "03", MYHOSTNAME)
    assert "sethostname ran in the parent, after clone" in after, after
    renamed = hint(gallery, "renamer", "03", HOSTNAME_KEPT)
    assert "in the host's UTS namespace, in the parent" in renamed, renamed


def test_hint_names_the_namespace_missing_beside_the_one_there(gallery):
    pid_alone = hint(gallery, "no_flag", "05", ns("05"))
    first = pid_alone.split(":")[0]
    assert "processes" not in first and "PID namespace" in first, pid_alone
    assert "mount namespace" in first and "CLONE_NEWNS" in pid_alone, pid_alone


def test_hint_says_a_new_user_namespace_cannot_unmount_its_inherited_proc(gallery):
    ran = gallery["results"]["naive"]["07"]["checks"][0]
    assert "failed unmount /proc Invalid argument" in ran["seen"], ran
    assert "a new user namespace cannot unmount it" in ran["hint"], ran


def test_hints_name_child_exec_to_python_only(gallery):
    python = hint(gallery, "no_work", "03", MYHOSTNAME)
    c = hint(gallery, "c_words", "03", MYHOSTNAME)
    assert python.startswith("child_exec (the child, before it execs the command)"), python
    assert c.startswith("the child, before it execs the command"), c
    for label in ("c_words", "naive"):
        for result in gallery["results"][label].values():
            for check in result["checks"]:
                assert "child_exec" not in check["hint"] and "sys.argv" not in check["hint"]


def test_jail_is_seen_missing_the_host_s_files(gallery):
    for nn in ("02", "07"):
        check = {c["title"]: c for c in gallery["results"]["jail"][nn]["checks"]}[NO_JAIL]
        assert re.match(r"/ is another folder; missing: \S", check["seen"]), check


def test_every_check_rejects_a_wrong_program_of_the_gallery(gallery):
    """For every check, a wrong program that it rejects by what the program's
    run showed (not because the program could not be run at all)."""
    rejected = set()
    for steps in gallery["results"].values():
        for nn, result in steps.items():
            if not result["problem"]:
                rejected |= {(nn, t) for t in failed(result)}
    every = {(nn, title) for nn in STEP_NAMES for title in TITLES[nn]}
    assert every - rejected == set()


def test_real_host_unchanged_by_the_gallery(gallery):
    assert gallery["after"] == gallery["before"]
    assert gallery["strangers"] == set()


@pytest.mark.slow
def test_every_wrong_program_gets_the_same_verdicts_in_20_runs(gallery, tmp_path):
    """20 copies of every scenario, graded at once as one class, two at a time
    on a loaded machine: no verdict may depend on which process ran first."""
    once = tmp_path / "once"
    build_gallery(once)
    folder = tmp_path / "class"
    for label in EXPECTED:
        for copy in range(20):
            shutil.copytree(once / label, folder / f"{label}-{copy:02d}")
    grader = grading(folder, tmp_path / "results.json")
    out, err = grader.communicate(timeout=900)
    assert grader.returncode == 0 and "Traceback" not in err, (out[-2000:], err)
    results = results_of(tmp_path / "results.json")
    differ = []
    for name, steps in results.items():
        label = name.rsplit("-", 1)[0]
        for nn, result in steps.items():
            if nn in EXPECTED[label] and steady(result) != steady(gallery["results"][label][nn]):
                differ.append((name, nn, steady(result)))
    assert differ == []


def steady(result):
    """Every check's verdict, and what was seen but the host's hostname (made
    fresh for every run), the command lines of processes left behind (a
    daemon caught between setsid and its sleep) and the folder of a program
    a traceback names (each copy's own)."""
    def same(text):
        text = re.sub(r"nskit-host-[0-9a-f]+", "nskit-host-*", text)
        return re.sub(r"\(at \S+/", "(at ", text)
    return [(title, status, same(seen if title != NO_PROCESS else seen.split(":")[0]))
            for title, status, seen in verdicts(result)]


# The scenarios that change, or try to change, the host: graded again in a
# frame whose / propagates mounts as a systemd host's does.
TOUCHY = ("no_flag", "no_work", "vandal", "daemon", "jail", "leak", "proc_gone")


@pytest.mark.slow
def test_gallery_grades_the_same_and_leaves_the_frame_unchanged_when_root_is_rshared(gallery):
    report = gallery["root"] / "rshared.json"
    folder = gallery["root"] / "touchy"
    for label in TOUCHY:
        shutil.copytree(gallery["folder"] / label, folder / label)
    grader = (f"{quote(PYTHON)} -m conformance --submissions {quote(str(folder))} "
              f"--json {quote(str(report))} "
              f"--csv {quote(str(report.with_suffix('.csv')))} >/dev/null")
    script = f"""
    snap() {{ hostname; cat /proc/self/mounts; ipcs -q; ip -o link | cut -d: -f2; }}
    grep -q ' / / .*shared:' /proc/self/mountinfo || {{ echo "/ is not shared"; exit 99; }}
    before=$(snap)
    {grader}; echo "grader exit $?"
    after=$(snap)
    if [ "$before" = "$after" ]; then echo unchanged; else diff <(echo "$before") <(echo "$after"); fi
    echo "strangers $(ps -eo uid= | awk '$1 >= 65536' | wc -l)"
    """
    framed = in_frame(script, rshared=True)
    assert framed.out.splitlines() == ["grader exit 0", "unchanged", "strangers 0"], framed
    results = results_of(report)
    assert sorted(results) == sorted(TOUCHY)
    for label, steps in results.items():
        for nn, result in steps.items():
            assert failed(result) == failed(gallery["results"][label][nn]), (label, nn)


# -- correct programs in other languages ---------------------------------------------

@pytest.fixture(scope="module")
def c_programs(tmp_path_factory):
    """The article's C for steps 00-07, compiled with gcc."""
    folder = tmp_path_factory.mktemp("c")
    jobs = [subprocess.Popen(["gcc", "-Wall", "-Werror", "-o", str(folder / src.stem), str(src)],
                             stderr=subprocess.PIPE, text=True)
            for src in sorted((GALLERY / "c").glob("*.c"))]
    for job in jobs:
        assert job.wait(timeout=120) == 0, job.stderr.read()
    assert sorted(p.name for p in folder.iterdir()) == [file_name(nn) for nn in STEP_NAMES]
    return folder


def test_article_c_leaks_into_a_shared_host_and_passes_on_a_private_one(c_programs, tmp_path):
    """The article's 02 and 05 never make their mounts private: on a host
    that mounts / shared, as systemd hosts do, their mounts reach the host."""
    shared = grade("--target", str(c_programs), tmp=tmp_path)
    assert shared.code == 1, shared
    assert sorted(shared.steps) == list(STEP_NAMES)
    failures = {nn: {t for t, c in shared.steps[nn].items() if c["status"] == "failed"}
                for nn in STEP_NAMES}
    assert failures == {**{nn: set() for nn in STEP_NAMES}, "02": {TMPFS_OUT}, "05": {PROC_KEPT}}, shared
    for nn, title in (("02", TMPFS_OUT), ("05", PROC_KEPT)):
        hint = shared.steps[nn][title]["hint"]
        assert "systemd hosts do today (the article's 2014 hosts mounted it private)" in hint
    private = grade("--target", str(c_programs), "--propagation", "private", tmp=tmp_path)
    assert private.code == 0, private
    assert all(not private.failed(nn) for nn in STEP_NAMES), private


def test_steps_pass_with_either_propagation(tmp_path):
    for propagation in ("shared", "private"):
        graded = grade("--target", str(STEPS_DIR), "--propagation", propagation, tmp=tmp_path)
        assert graded.code == 0, graded


def test_propagation_must_be_shared_or_private():
    done = grader("--target", str(STEPS_DIR), "--propagation", "slave")
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line(done, "--propagation", "'slave'")


def test_shell_scripts_around_unshare_pass(tmp_path):
    folder = tmp_path / "sh"
    shutil.copytree(GALLERY / "sh", folder)
    for path in folder.iterdir():
        path.chmod(0o755)
    graded = grade("--target", str(folder), tmp=tmp_path)
    assert graded.code == 0, graded
    assert sorted(graded.steps) == list(STEP_NAMES)
    assert all(not graded.failed(nn) for nn in STEP_NAMES), graded


# -- the steps, speed, a partial folder ------------------------------------------------

@pytest.mark.slow
def test_steps_pass_within_5_seconds(tmp_path):
    started = time.monotonic()
    graded = grade("--target", str(STEPS_DIR), tmp=tmp_path)
    seconds = time.monotonic() - started
    assert graded.code == 0, graded
    assert all(not graded.failed(nn) for nn in STEP_NAMES), graded
    assert seconds < 5, f"grading steps/ took {seconds:.1f} s"


def test_missing_step_fails_as_not_found_unless_step_limits_the_run(tmp_path):
    folder = tmp_path / "only04"
    folder.mkdir()
    shutil.copy(step_path("04"), folder / "04_ipc.py")
    graded = grade("--target", str(folder), tmp=tmp_path)
    assert graded.code == 1
    assert not graded.failed("04")
    for nn in set(STEP_NAMES) - {"04"}:
        assert graded.failed(nn) == set(TITLES[nn])
        first, *rest = graded.steps[nn].values()
        assert first["seen"].startswith(NOT_FOUND)
        assert all(c["status"] == "skipped" for c in rest)

    limited = grade("--target", str(folder), "--step", "4", tmp=tmp_path)
    assert limited.code == 0, limited
    assert list(limited.steps) == ["04"]
    assert f"score: {len(TITLES['04'])}/{len(TITLES['04'])} checks passed" in limited.out


# -- output: table, Gradescope, JUnit --------------------------------------------------

@pytest.fixture(scope="module")
def skeleton_reports(gallery):
    """The skeleton-everywhere scenario graded as a target, with every report."""
    root = gallery["root"]
    graded = grade("--target", str(gallery["folder"] / "skeleton"),
                   "--gradescope", str(root / "results.json.gs"),
                   "--junit", str(root / "junit.xml"), tmp=root)
    return graded, json.loads((root / "results.json.gs").read_text()), \
        ET.parse(root / "junit.xml").getroot()


def expected_skeleton_passes():
    """An untouched exercise earns step 00, and nothing else."""
    return len(TITLES["00"])


def skeleton_mark(nn, title):
    if nn == "00":
        return "passed"
    return "FAILED" if title in EXPECTED["skeleton"][nn] else "skipped"


def test_table_has_a_row_per_check_a_hint_per_failure_and_the_score(skeleton_reports):
    graded, _, _ = skeleton_reports
    assert graded.code == 1
    assert graded.err == ""
    lines = graded.out.splitlines()
    assert lines[0].split() == ["step", "check", "result", "seen", "/", "hint"]
    total = sum(map(len, TITLES.values()))
    assert lines[-1] == f"score: {expected_skeleton_passes()}/{total} checks passed"
    # Every check that passed or failed has its row; those skipped for one
    # failure fold into one line under it.
    for nn in STEP_NAMES:
        for title in TITLES[nn]:
            mark = skeleton_mark(nn, title)
            row = re.search(rf"^{nn} {STEP_NAMES[nn]} +{re.escape(title)} +{mark}\b",
                            graded.out, re.M)
            assert (row is None) == (mark == "skipped"), (nn, title)
        if nn != "00":
            more = len(TITLES[nn]) - 1
            fold = f"{nn} {STEP_NAMES[nn]} skipped {more} more checks need: {ns(nn)}"
            assert fold in " ".join(graded.out.split()), (nn, fold)
    # A first grading of the untouched exercises: one skipped line per step, not 50.
    assert graded.out.count("skipped") == len(STEP_NAMES) - 1
    # A failure shows what was seen, and a hint.
    row = re.search(rf"^04 ipc +{re.escape(ns('04'))} +FAILED +(.*)$", graded.out, re.M)
    assert row.group(1) == "new: none"
    assert graded.out.count("hint: ") == sum(map(len, EXPECTED["skeleton"].values()))


def test_table_names_the_learner_s_own_file_and_line(gallery):
    """A syntax error and a traceback name the program where the learner has
    it, in the table too, not where its run ran it."""
    done = subprocess.run([PYTHON, "-m", "conformance", "--target", "class/broken",
                           "--step", "00", "--step", "06"], cwd=gallery["root"], env={
                               **env(), "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300)
    table = " ".join(done.stdout.split())
    assert "SyntaxError: expected ':' (at class/broken/00_skeleton.py, line 6)" in table, done
    assert "(at class/broken/06_user.py, line 5)" in table, done
    assert "/nskit/program" not in done.stdout, done


def test_everything_passing_exits_0_and_any_failure_exits_1(gallery, tmp_path):
    assert grade("--target", str(gallery["folder"] / "skeleton"), "--step", "00",
                 tmp=tmp_path).code == 0
    assert grade("--target", str(gallery["folder"] / "skeleton"), "--step", "00",
                 "--step", "01", tmp=tmp_path).code == 1


def test_gradescope_results_json(skeleton_reports):
    graded, results, _ = skeleton_reports
    tests = results["tests"]
    assert len(tests) == sum(map(len, TITLES.values()))
    assert sum(t["status"] == "passed" for t in tests) == expected_skeleton_passes()
    assert results["score"] == round(sum(t["score"] for t in tests), 2)
    # Every step is worth the same by default, its checks sharing its points.
    for nn in STEP_NAMES:
        assert round(sum(t["max_score"] for t in tests if t["name"][:2] == nn), 2) == 10
    names = [t["name"] for t in tests]
    assert names == [f"{nn} {STEP_NAMES[nn]}: {title}" for nn in STEP_NAMES for title in TITLES[nn]]
    assert "04 ipc: ipcs -q inside lists no queue" in names
    for test in tests:
        nn, title = test["name"][:2], test["name"].split(": ", 1)[1]
        assert re.match(r"^\d\d ", test["name"])
        mark = skeleton_mark(nn, title)
        assert 0 < test["max_score"] < 10
        assert test["score"] == (test["max_score"] if mark == "passed" else 0)
        # Gradescope knows passed and failed only: a skipped check failed too.
        assert test["status"] == ("passed" if mark == "passed" else "failed")
        if mark == "FAILED":
            assert test["output"] == (graded.steps[nn][title]["seen"] + "\nHint: "
                                      + graded.steps[nn][title]["hint"])
        elif mark == "skipped":
            assert test["output"] == graded.steps[nn][title]["seen"]
            assert skipped_for(test["output"]) == ns(nn)
        else:
            assert test["output"] == ""


def test_junit_xml(skeleton_reports):
    _, _, suites = skeleton_reports
    assert suites.tag == "testsuites"
    (suite,) = suites.findall("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == sum(map(len, TITLES.values()))
    failures = [c for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failures) == sum(
        map(len, EXPECTED["skeleton"].values()))
    seen = {(c.get("classname").rsplit(".", 1)[1], c.get("name")) for c in failures}
    assert seen == {(file_name(nn), title) for nn, titles in EXPECTED["skeleton"].items()
                    for title in titles}
    ipc = next(c for c in failures if c.get("name") == ns("04")
               and c.get("classname").endswith("04_ipc"))
    assert ipc.find("failure").get("message") == "new: none"
    assert "IPC" in ipc.find("failure").text
    skipped = [c for c in cases if c.find("skipped") is not None]
    assert len(skipped) == len(cases) - len(failures) - expected_skeleton_passes()


# -- bad input --------------------------------------------------------------------------

def grader(*args):
    return run([PYTHON, "-m", "conformance", *args])


def assert_one_line(done, *words):
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_missing_folder_is_one_line_and_exit_2(tmp_path):
    done = grader("--target", str(tmp_path / "nowhere"))
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line(done, "does not exist", "--target steps")


def test_file_instead_of_folder_is_one_line_and_exit_2():
    done = grader("--target", str(step_path("04")))
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line(done, "is not a folder", "NN_name")


def test_empty_folder_fails_every_step_as_not_found(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    graded = grade("--target", str(folder), tmp=tmp_path)
    assert graded.code == 1 and graded.err == "", graded
    assert "Traceback" not in graded.out
    assert graded.out.splitlines()[-1] == f"score: 0/{sum(map(len, TITLES.values()))} checks passed"
    for nn in STEP_NAMES:
        assert {c["seen"] for c in graded.steps[nn].values()} == {
            f"{NOT_FOUND} {file_name(nn)}.py (or {nn}_<name>) in {folder}",
            f"skipped: needs {RAN}"}
        assert graded.steps[nn][RAN]["seen"].startswith(NOT_FOUND)


def test_wrong_names_are_not_taken_for_steps(tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    for name in ("net.py", "1_net.py", "01net.py", "08_extra.py"):
        shutil.copy(step_path("01"), folder / name)
    graded = grade("--target", str(folder), "--step", "01", tmp=tmp_path)
    assert graded.code == 1
    assert graded.failed("01") == set(TITLES["01"])
    assert next(iter(graded.steps["01"].values()))["seen"] == (
        f"{NOT_FOUND} 01_net.py (or 01_<name>) in {folder}")


def test_unknown_step_is_one_line_and_exit_2():
    done = grader("--target", str(STEPS_DIR), "--step", "12")
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line(done, "'12' is not a step", "choose from 00, 01")


def test_no_target_is_one_line_and_exit_2():
    done = grader("--step", "04")
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line(done, "--target")


# -- the same checks as plain pytest ------------------------------------------------------

def pytest_conformance(target, junit, *args):
    done = run([PYTHON, "-m", "pytest", "conformance", "--target", str(target),
                "--junitxml", str(junit), "-p", "no:cacheprovider", *args])
    assert "Traceback" not in done.stderr, done.stderr
    cases = ET.parse(junit).getroot().iter("testcase")
    return done, {c.get("name"): c.find("failure") is None for c in cases}


def case(nn, title):
    return f"test_check[{nn} {STEP_NAMES[nn]}: {title}]"


@pytest.mark.slow  # a pytest session of its own, with two workers
def test_pytest_plugin_passes_steps_in_parallel(tmp_path):
    done, cases = pytest_conformance(STEPS_DIR, tmp_path / "j.xml", "-n", "2")
    assert done.returncode == 0, done.stdout
    assert "created: 2/2 workers" in done.stdout
    assert cases == {case(nn, t): True for nn in STEP_NAMES for t in TITLES[nn]}


@pytest.mark.slow  # a pytest session of its own
def test_pytest_plugin_step_marker_on_the_skeleton(gallery, tmp_path):
    done, cases = pytest_conformance(gallery["folder"] / "skeleton", tmp_path / "j.xml",
                                     "-m", "step04")
    assert done.returncode == 1, done.stdout
    # A skipped check is a skipped test, not a failure.
    assert cases == {case("04", t): t not in EXPECTED["skeleton"]["04"] for t in TITLES["04"]}


@pytest.mark.slow  # a pytest session of its own
def test_pytest_plugin_keyword_on_the_renamer_scenario(gallery, tmp_path):
    done, cases = pytest_conformance(gallery["folder"] / "renamer", tmp_path / "j.xml",
                                     "-k", "hostname")
    assert done.returncode == 1, done.stdout
    assert cases == {case("03", MYHOSTNAME): True, case("03", HOSTNAME_KEPT): False,
                     case("07", MYHOSTNAME): True, case("07", HOSTNAME_KEPT): False}

