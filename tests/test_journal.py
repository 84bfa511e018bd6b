"""Forgers that the grader's journal catches, each beside its honest twin.

Every forger does what a step asks only in appearance: it runs a throwaway
copy of the command in the right namespaces and the real one in the host's;
it lets a timer stand for the parent's OK; it changes the host and undoes
the change before it ends. Each fails the check it aims at, and earns
nothing where it ran a decoy; its twin does the same thing honestly and
passes every check. All are graded as one class, in one grader run; `make
test-as-user` grades them as an ordinary user too."""
import json
import subprocess

import pytest

from helpers import PYTHON, ROOT, step_path

from conformance.catalog import STEP_NAMES, file_name
from conformance.checks import MYHOSTNAME, PID1, RAN, STARTS_AFTER_OK, TMPFS_IN, checks_for

TMPFS_HOST = "the tmpfs never shows on the host"
PROC_HOST = "the host's /proc is untouched"
HOSTNAME_HOST = "the host's hostname is unchanged"
ONLY_LO = "ip a lists only lo, DOWN"

ARGV = "    argv = sys.argv[1:]\n"
WAIT = "    _, status = os.waitpid(pid, 0)\n"
# A decoy: a copy of the command's shell that announces itself and ends.
DECOY = '    argv = ["/nskit/sh", "-c", "/nskit/ready; :"]\n'
# ... then the real command, in the host's namespaces.
THEN_REAL = WAIT + "    sys.stdout.flush()\n    os.execv(sys.argv[1], sys.argv[1:])\n"
# Honest: the command run once, through a shell, as system() would.
THROUGH_SH = '    argv = ["/bin/sh", "-c", \'exec "$@"\', "sh"] + sys.argv[1:]\n'
# 08: a first child that sleeps, and is waited for at the end.
DUMMY_FIRST = ("    dummy = os.fork()\n    if dummy == 0:\n"
               "        libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)\n"
               "        __import__('time').sleep(0.3)\n        os._exit(0)\n    child_stack = ")
WAIT_DUMMY = WAIT + "    os.waitpid(dummy, 0)\n"
READ_OK = ('    if os.read(READ_END, 2) != b"OK":\n'
           '        die("the parent ended before it finished setting up")\n')
WRITE_OK = '    if os.write(WRITE_END, b"OK") != 2:\n'
KEEP_READ_END = "    os.close(READ_END)\n    # Here the parent"
LATE_OK = '    __import__("time").sleep(0.5)\n' + WRITE_OK
PRIVATE = ('    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:\n'
           '        die(failed("mount --make-rprivate /"))\n')
# After the command ended: take the tmpfs (or /proc) off the host again.
UNMOUNT_TMPFS = WAIT + '    libc.umount2(b"/mytmp", 2)\n'
REMOUNT_PROC = WAIT + ('    libc.umount2(b"/proc", 2)\n'
                       '    libc.mount(b"proc", b"/proc", b"proc", 0, b"")\n')
# 03: the host's hostname changed before clone, and set back after the command.
RENAME_HOST = ("    old = os.uname().nodename.encode()\n"
               '    libc.sethostname(b"forged", 6)\n    child_stack = ')
SAME_NAME = ("    old = os.uname().nodename.encode()\n"
             "    libc.sethostname(old, len(old))\n    child_stack = ")
NAME_BACK = WAIT + "    libc.sethostname(old, len(old))\n"


def edited(nn, *edits):
    text = step_path(nn).read_text()
    for old, new in edits:
        assert text.count(old) == 1, (nn, old)  # the step changed: update the edits
        text = text.replace(old, new)
    return text


# Names no decoder would take, made in the run's own namespaces: a mount
# point, a link, a hostname. The grader shows them escaped, and grades on.
IN_CHILD = "    # Python set SIGPIPE to ignored"
ODD_MOUNT = ('    os.mkdir(b"/mytmp/\\xff\\n")\n'
             '    libc.mount(b"none", b"/mytmp/\\xff\\n", b"tmpfs", 0, b"")\n' + IN_CHILD)
ODD_LINK = ("    os.system(\"ip link add name \\\"$(printf '\\\\377')\\\" type veth peer name "
            "\\\"p$(printf '\\\\376')\\\"\")\n" + IN_CHILD)
ODD_NAME = '    new_hostname = b"my\\xffhost"\n'

DECOY_STEPS = [nn for nn in STEP_NAMES if nn != "00"] + ["08"]
LEARNERS = {
    "decoy": {nn: edited(nn, (ARGV, DECOY), (WAIT, THEN_REAL)) for nn in DECOY_STEPS},
    "through_sh": {nn: edited(nn, (ARGV, THROUGH_SH)) for nn in DECOY_STEPS},
    # The child sleeps 1 ms instead of reading; the parent keeps the pipe's
    # read end, so its late "OK" goes somewhere.
    "timed": {"08": edited("08", (READ_OK, "    __import__('time').sleep(0.001)\n"),
                           (KEEP_READ_END, "    # Here the parent"), (WRITE_OK, LATE_OK))},
    "timed_50ms": {"08": edited("08", (READ_OK, "    __import__('time').sleep(0.05)\n"),
                                (KEEP_READ_END, "    # Here the parent"), (WRITE_OK, LATE_OK))},
    "late_ok": {"08": edited("08", (WRITE_OK, LATE_OK))},
    "dummy_first": {"08": edited("08", ("    child_stack = ", DUMMY_FIRST), (READ_OK, ""),
                                 (WAIT, WAIT_DUMMY))},
    "dummy_then_wait": {"08": edited("08", ("    child_stack = ", DUMMY_FIRST),
                                     (WAIT, WAIT_DUMMY))},
    # The 08 decoy: a sleeping first child, a copy in the right
    # namespaces, then the command in the host's.
    "decoy_dummy": {"08": edited("08", ("    child_stack = ", DUMMY_FIRST), (ARGV, DECOY),
                                 (WAIT, THEN_REAL))},
    "odd_names": {"01": edited("01", (IN_CHILD, ODD_LINK)), "02": edited("02", (IN_CHILD, ODD_MOUNT)),
                  "03": edited("03", ('    new_hostname = b"myhostname"\n', ODD_NAME))},
    "leak_clean": {"02": edited("02", (PRIVATE, ""), (WAIT, UNMOUNT_TMPFS))},
    "clean_twin": {"02": edited("02", (WAIT, UNMOUNT_TMPFS))},
    "proc_cycle": {"05": edited("05", (PRIVATE, ""), (WAIT, REMOUNT_PROC))},
    "proc_twin": {"05": edited("05", (WAIT, WAIT + '    libc.umount2(b"/nonexistent", 2)\n'))},
    "rename_back": {"03": edited("03", ("    child_stack = ", RENAME_HOST), (WAIT, NAME_BACK))},
    "same_name": {"03": edited("03", ("    child_stack = ", SAME_NAME), (WAIT, NAME_BACK))},
}
# The checks each learner's step fails; every other passes or is skipped.
EXPECTED = {
    "decoy": {nn: {RAN} for nn in DECOY_STEPS},
    "through_sh": {nn: set() for nn in DECOY_STEPS},
    "timed": {"08": {STARTS_AFTER_OK}},
    "timed_50ms": {"08": {STARTS_AFTER_OK}},
    "late_ok": {"08": set()},
    "dummy_first": {"08": {STARTS_AFTER_OK}},
    "dummy_then_wait": {"08": set()},
    "decoy_dummy": {"08": {RAN}},
    "odd_names": {"01": {ONLY_LO}, "02": set(), "03": {MYHOSTNAME}},
    "leak_clean": {"02": {TMPFS_HOST}},
    "clean_twin": {"02": set()},
    "proc_cycle": {"05": {PROC_HOST}},
    "proc_twin": {"05": set()},
    "rename_back": {"03": {HOSTNAME_HOST}},
    "same_name": {"03": set()},
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("journal")
    for label, steps in LEARNERS.items():
        (root / "class" / label).mkdir(parents=True)
        for nn, text in steps.items():
            (root / "class" / label / f"{file_name(nn)}.py").write_text(text)
    report = root / "results.json"
    done = subprocess.run(
        [PYTHON, "-m", "conformance", "--submissions", str(root / "class"), "--step", "01",
         "--step", "02", "--step", "03", "--step", "04", "--step", "05", "--step", "06",
         "--step", "07", "--step", "08", "--json", str(report), "--csv", str(root / "s.csv")],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in done.stderr, done.stderr
    results = json.loads(report.read_text())
    return {label: {s["step"]: {c["title"]: c for c in s["checks"]} for s in r["steps"]}
            for label, r in results.items()}


@pytest.mark.parametrize("label, nn", [(label, nn) for label, steps in EXPECTED.items()
                                       for nn in steps])
def test_forgers_fail_what_they_aim_at_and_their_twins_pass(graded, label, nn):
    checks = graded[label][nn]
    failed = {title for title, c in checks.items() if c["status"] == "failed"}
    assert failed == EXPECTED[label][nn], [(t, c["status"], c["seen"]) for t, c in checks.items()]
    if not EXPECTED[label][nn]:
        assert all(c["status"] == "passed" for c in checks.values()), checks


@pytest.mark.parametrize("nn", DECOY_STEPS)
def test_a_decoy_earns_nothing_and_the_report_says_what_ran(graded, nn):
    checks = graded["decoy"][nn]
    assert [c["status"] for c in checks.values()] == ["failed"] + ["skipped"] * (len(checks) - 1)
    seen = checks[RAN]["seen"]
    new = " and ".join(sorted(__import__("conformance.catalog").catalog.NEW_NAMESPACES[nn]))
    assert seen == (f"ran the command twice: once as /nskit/sh -c /nskit/ready; : in new {new}, "
                    f"once in the host's"), seen


def test_a_timer_is_not_the_parent_s_ok(graded):
    # Caught asleep, or exec'ing before its parent made a call: either way,
    # not after an OK.
    # Where its timer has run out, it is caught running, before it execs.
    seen = graded["timed"]["08"][STARTS_AFTER_OK]["seen"]
    assert "not reading a pipe" in seen or "held at clone" in seen, seen
    seen = graded["timed_50ms"]["08"][STARTS_AFTER_OK]["seen"]
    assert seen.startswith("the child waited in clock_nanosleep, not reading a pipe"), seen


def test_changes_undone_before_the_end_are_seen_when_they_were_there(graded):
    # (The /proc mounted back is another mount than the host's: seen at the end too.)
    for label, nn, title in (("leak_clean", "02", TMPFS_HOST), ("rename_back", "03", HOSTNAME_HOST)):
        seen = graded[label][nn][title]["seen"]
        assert seen.endswith("(when the command was observed, undone by the end)"), (label, seen)
    assert graded["rename_back"]["03"][HOSTNAME_HOST]["seen"].startswith("'nskit-host-"), graded


def test_names_of_any_bytes_are_shown_escaped(graded):
    assert graded["odd_names"]["01"][ONLY_LO]["seen"] == "links: lo DOWN, p\\xfe DOWN, \\xff DOWN"
    assert graded["odd_names"]["03"][MYHOSTNAME]["seen"] == "hostname 'my\\\\xffhost'"


def test_every_expected_title_is_a_check_of_its_step():
    for steps in EXPECTED.values():
        for nn, titles in steps.items():
            assert titles <= {c.title for c in checks_for(nn)} | {TMPFS_IN, MYHOSTNAME, PID1}
