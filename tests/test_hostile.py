"""Issue 8: the grader against hostile programs.

A gallery of attack programs (tests/hostile/, each claiming a step) is graded
in one batch beside the kit's own steps, with the real machine checked
afterwards: canary files the test made, files planted or left, a global
sysctl, the clock, processes, and the size of the results. Every attack is
harmless where it goes through (it writes back the value it read, sets the
clock to the time it read, removes the device node it made), and the whole
grading runs in a frame with its own PID namespace, whose /var/tmp, /run/lock
and /dev/shm are tmpfs of its own: an escape lands there, where the test sees
it, and the frame's end kills whatever a grader bug left running.

Then: the same verdicts when an ordinary user grades, and the grader's
refusal sentence where user namespaces are refused.
"""
import json
import os
import re
import shutil
import socket
import stat
import xml.etree.ElementTree as ET
import time
from pathlib import Path
from shlex import quote

import pytest

from helpers import PYTHON, ROOT, in_frame, refused, sections, step_path
from conformance.catalog import STEP_NAMES
from conformance.cgroups import Cgroups
from tools.frame import expose_to_users

pytestmark = pytest.mark.root("the attacks, their canaries and maps use uids other than the user's")
HOSTILE = Path(__file__).resolve().parent / "hostile"
KIT = (HOSTILE / "_kit.py").read_text()
SYSCTLS = ("/proc/sys/vm/swappiness", "/proc/sys/kernel/printk_ratelimit")
CATCH = ("/var/tmp", "/run/lock", "/dev/shm")   # the frame's own, to catch escapes
TIMEOUT = 10
# Learner -> {step: attack file}; every other step is the kit's own program,
# which must get its right verdict (all checks passed) in the same batch.
LEARNERS = {
    "files": {"00": "00_canaries.py", "01": "01_plant.py", "02": "02_remount.py",
              "06": "06_mknod.py"},
    "system": {"03": "03_sysctl.py", "05": "05_clock.py", "07": "07_leftovers.py"},
    "load": {"01": "01_forkbomb.py", "02": "02_memory.py", "03": "03_output.py",
             "05": "05_kill_all.py"},
    "snoop": {"00": "00_snoop.py", "03": "03_quota.py", "05": "05_proc_peek.py",
              "06": "06_pty.py"},
}
# Learners whose every program is a sparse 16 MiB file: a grader that held
# the programs it had yet to run would hold 256 MiB of them.
BIG = ("big1", "big2")
MiB = 1 << 20
PEAK_MEMORY = 200 * MiB
# The grader, reporting its own peak memory (resident, KiB) on stderr.
MEASURED = ("import resource, sys; from conformance.cli import main; code = main(); "
            "print('@@maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
            "sys.exit(code)")


def attack_program(name, config):
    """An attack from tests/hostile/, with the shared kit and CONFIG pasted in."""
    kit = KIT.replace("CONFIG = None  # @config", f"CONFIG = {config!r}")
    return "#!/usr/bin/env python3\n" + (HOSTILE / name).read_text().replace("# @kit", kit)


def outcomes(text):
    """[(attack, what, outcome)] from the @@hostile lines the attacks print."""
    return re.findall(r"^@@hostile (\S+) \| (.+?) \| (.+)$", text, re.M)


# -- the machine, before and after -----------------------------------------------------

def _file_state(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    return (Path(path).read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)


def _foreign_processes(*marks):
    """Processes on the machine whose uid is no account's (a run's own range)
    and whose command line holds one of marks (other tests may be grading)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
            if uid >= 65536 and any(mark in cmdline for mark in marks):
                found.append((int(entry.name), uid, cmdline))
    return found


def _root_mount():
    """The options of the machine's / (this process is in the machine's mount namespace)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        parts = line.split()
        if parts[4] == "/" and parts[3] == "/":
            return line.split(" - ")[0].split()[5], line.split(" - ")[1]
    return None


def _owner(path):
    try:
        return path.lstat().st_uid
    except FileNotFoundError:
        return -1   # gone again: someone else's


def _clock_offset():
    return time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_MONOTONIC)


class Gallery:
    """One grading of every learner, with the machine before and after."""


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    token = os.urandom(6).hex()
    tmp = tmp_path_factory.mktemp("hostile")
    places = {kind: Path(f"{base}/nskit-canary-{token}")
              for kind, base in (("etc", "/etc"), ("var-lib", "/var/lib"), ("tmp", "/tmp"))}
    planted_name = f"nskit-planted-{token}"
    plant_places = [Path("/"), Path("/etc"), Path("/usr/local/bin"), ROOT]
    g = Gallery()
    g.sockets, listening, g.mine = [], [], []
    try:
        # Canaries: root's, 0644 and 0600, in /etc-like, /var/lib-like and /tmp places.
        g.canaries, g.secrets = {}, {}
        for kind, folder in places.items():
            folder.mkdir(mode=0o755)
            for mode in (0o644, 0o600):
                path = folder / f"canary-{mode:o}"
                secret = f"nskit-secret-{kind}-{mode:o}-{os.urandom(8).hex()}"
                path.write_text(secret + "\n")
                path.chmod(mode)
                g.canaries[str(path)] = mode
                g.secrets[str(path)] = secret
        # The class: a submissions folder a course would keep under /var/lib.
        g.klass = places["var-lib"] / "class"
        g.targets = {learner: g.klass / learner for learner in LEARNERS}
        # Unix sockets of the machine, listening, that anyone may connect to.
        g.sockets = [places["tmp"] / "socket", Path(f"/run/nskit-socket-{token}")]
        listening = []
        for path in g.sockets:
            listening.append(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            listening[-1].bind(str(path))
            listening[-1].listen()
            path.chmod(0o777)
        config = {"canaries": list(g.canaries), "grader": str(ROOT), "token": token,
                  "targets": [str(t) for t in g.targets.values()],
                  "sockets": [str(p) for p in g.sockets],
                  "sleep": f"{300 + int(token[:4], 16) % 1000}.{token[4:]}"}
        g.sleep = config["sleep"]
        # Each learner's programs carry a text of their own, which no other
        # learner's report may show.
        g.work = {learner: f"nskit-work-of-{learner}-{os.urandom(8).hex()}"
                  for learner in [*LEARNERS, *BIG]}
        for learner, attacks in LEARNERS.items():
            folder = g.targets[learner]
            folder.mkdir(parents=True)
            for nn in list(STEP_NAMES):
                if nn in attacks:
                    text = attack_program(attacks[nn], config)
                    (folder / attacks[nn]).write_text(f"{text}\n# {g.work[learner]}\n")
                else:
                    text = step_path(nn).read_text()
                    (folder / step_path(nn).name).write_text(f"{text}\n# {g.work[learner]}\n")
                    (folder / step_path(nn).name).chmod(0o755)
        for learner in BIG:
            (g.klass / learner).mkdir()
            for nn in list(STEP_NAMES):
                with open(g.klass / learner / f"{nn}_big.py", "w") as fh:
                    fh.write(f"# {g.work[learner]}\n")
                    fh.truncate(16 * MiB)
        g.ptys = Path("/proc/sys/kernel/pty/nr").read_text()
        g.listings = {p: sorted(os.listdir(p)) for p in [*plant_places, *places.values(),
                                                         *g.targets.values()]}
        g.before = {path: _file_state(path) for path in g.canaries}
        g.sysctls = {path: Path(path).read_text() for path in SYSCTLS}
        g.clock = _clock_offset()
        g.root_mount = _root_mount()
        marks = (token, config["sleep"])
        # The grader runs in cgroups of the test's own, where the machine
        # allows them: the runs' cgroups are made below, and must all be gone.
        cgroups = Cgroups.available(1 << 30, 256)
        g.mine = Cgroups([(place, {}) for place, _ in cgroups.places]).create() if cgroups else []
        join = "".join(f"echo $$ > {quote(str(f / 'cgroup.procs'))} || exit 99\n" for f in g.mine)

        report, stdout, stderr = tmp / "report.json", tmp / "grader.out", tmp / "grader.err"
        state = "hostname; ipcs -q; ip -o link; cat /proc/self/mountinfo"
        script = join + "\n".join([
            *[f"mount -t tmpfs -o mode=1777,size=16m nskit-catch {d} || exit 99" for d in CATCH],
            f"echo '@@frame before'; {state}",
            "start=$(date +%s.%N)",
            f"{quote(PYTHON)} -c {quote(MEASURED)} --submissions {quote(str(g.klass))} --jobs 2 "
            f"--timeout {TIMEOUT} --json {quote(str(report))} --csv {quote(str(tmp / 'scores.csv'))} "
            f"--junit {quote(str(tmp / 'junit.xml'))} --gradescope-dir {quote(str(tmp / 'gs'))} "
            f"> {quote(str(stdout))} 2> {quote(str(stderr))}",
            "code=$?; end=$(date +%s.%N)",
            'echo "@@frame code"; echo $code',
            'echo "@@frame seconds"; awk "BEGIN { print $end - $start }"',
            f"echo '@@frame after'; {state}",
            f"echo '@@frame caught'; ls -lan {' '.join(CATCH)}",
            "echo '@@frame ps'; ps -eo pid=,uid=,args=",
        ])
        started = time.monotonic()
        g.framed = in_frame(script)
        g.seconds = time.monotonic() - started
        g.frame = sections(g.framed.out, prefix="@@frame ")
        assert g.framed.code == 0 and "code" in g.frame, g.framed

        g.after = {path: _file_state(path) for path in g.canaries}
        g.ptys_after = Path("/proc/sys/kernel/pty/nr").read_text()
        g.cgroups_left = [p for f in g.mine for p in f.iterdir() if p.is_dir()]
        g.machine_ptys = [p.name for p in Path("/dev/pts").iterdir() if _owner(p) >= 65536]
        g.csv = (tmp / "scores.csv").read_text() if (tmp / "scores.csv").exists() else ""
        g.junit = (tmp / "junit.xml").read_text() if (tmp / "junit.xml").exists() else ""
        g.gradescope = {p.parent.name: p for p in (tmp / "gs").glob("*/results.json")}
        g.listings_after = {p: sorted(os.listdir(p)) for p in g.listings}
        g.sysctls_after = {path: Path(path).read_text() for path in SYSCTLS}
        g.clock_after = _clock_offset()
        g.root_mount_after = _root_mount()
        g.foreign_after = _foreign_processes(*marks)
        g.leftovers = sorted(str(p) for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
                             for p in Path(d).glob(f"nskit-left-{token}*"))
        g.planted = sorted(str(p) for d in [*plant_places, *g.targets.values()]
                           for p in d.glob(f"{planted_name}*"))
        g.report_text = report.read_text() if report.exists() else ""
        g.report_size = report.stat().st_size if report.exists() else 0
        g.stdout_size = stdout.stat().st_size
        g.stdout = stdout.read_text(errors="replace")
        g.stderr = stderr.read_text(errors="replace")
        g.results = {label: {s["step"]: s for s in learner["steps"]}
                     for label, learner in json.loads(g.report_text).items()} if g.report_text else {}
        g.outcomes = [o for steps in g.results.values() for step in steps.values()
                      for o in outcomes(step["output"])]
        yield g
    finally:
        if g.mine:
            Cgroups.remove(g.mine, patience=10)
        for listener in listening:
            listener.close()
        for path in g.sockets:
            path.unlink(missing_ok=True)
        for folder in places.values():
            shutil.rmtree(folder, ignore_errors=True)
        # Only where an attack went through: never leave its file behind.
        for d in [*plant_places, Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"), Path("/run/lock")]:
            for p in [*d.glob(f"{planted_name}*"), *d.glob(f"nskit-left-{token}*")]:
                p.unlink(missing_ok=True)


def went_through(g, attack):
    return [(what, outcome) for a, what, outcome in g.outcomes
            if a == attack and outcome == "went through"]


def attempted(g, attack):
    return [what for a, what, _ in g.outcomes if a == attack]


# -- the batch -----------------------------------------------------------------------------

def test_every_step_of_every_learner_gets_a_verdict(gallery):
    assert gallery.frame["code"].strip() == "0", gallery.stderr
    assert set(gallery.results) == {*LEARNERS, *BIG}
    for learner, steps in gallery.results.items():
        assert sorted(steps) == list(STEP_NAMES), learner
        for nn, step in steps.items():
            assert step["checks"], (learner, nn)


def test_the_kits_own_steps_in_the_batch_get_their_right_verdicts(gallery):
    for learner, attacks in LEARNERS.items():
        for nn in list(STEP_NAMES):
            if nn not in attacks:
                step = gallery.results[learner][nn]
                failed = [c["title"] for c in step["checks"] if not c["passed"]]
                assert not failed and not step["problem"], (learner, nn, failed, step["problem"])


def test_each_attack_ran_and_reported(gallery):
    for attack in ("canaries", "plant", "remount", "sysctl", "clock", "mknod", "leftovers",
                   "forkbomb", "memory", "kill", "snoop", "proc", "pty", "quota"):
        assert attempted(gallery, attack), attack


@pytest.mark.slow
def test_the_whole_gallery_takes_seconds(gallery):
    # 24 runs, two at a time; the fork bomb, 4 GiB and 200 MB end well within a timeout.
    assert float(gallery.frame["seconds"]) < 2 * TIMEOUT
    for learner, steps in gallery.results.items():
        for nn, step in steps.items():
            assert step["seconds"] < TIMEOUT, (learner, nn)


# -- one learner, never another's ----------------------------------------------------------

def test_every_learner_has_a_row_and_a_results_json(gallery):
    rows = {line.split(",")[0] for line in gallery.csv.splitlines()[1:]}
    assert rows == {*LEARNERS, *BIG}
    assert set(gallery.gradescope) == {*LEARNERS, *BIG}
    for learner, path in gallery.gradescope.items():
        assert path.stat().st_size <= MiB, learner
        json.loads(path.read_text())
    for learner in BIG:  # a program that is not Python fails, alone
        assert all(not s["checks"][0]["passed"] for s in gallery.results[learner].values())


def test_no_learner_sees_another_learners_work(gallery):
    report = json.loads(gallery.report_text)
    for learner, section in report.items():
        text = json.dumps(section)
        for other, work in gallery.work.items():
            if other != learner:
                assert work not in text, (learner, other)
    for suite in ET.fromstring(gallery.junit).iter("testsuite"):  # it parses, too
        text = ET.tostring(suite, encoding="unicode")
        for other, work in gallery.work.items():
            if other != suite.get("name"):
                assert work not in text, (suite.get("name"), other)
    for work in gallery.work.values():
        assert work not in gallery.csv + gallery.stdout + gallery.stderr


def test_a_run_reaches_no_class_folder_home_or_socket_of_the_machine(gallery):
    assert len(attempted(gallery, "snoop")) == len(LEARNERS) + 6 + len(gallery.sockets)
    assert went_through(gallery, "snoop") == []


def test_unmounting_proc_again_and_again_uncovers_only_the_runs_own(gallery):
    said = {what: outcome for a, what, outcome in gallery.outcomes if a == "proc"}
    # PID 1 is the grader's, and out of reach.
    for what in ("read PID 1's environment", "read PID 1's memory", "attach to PID 1"):
        assert said[what].startswith("refused: "), (what, said)
    # The run's own proc lies below the one it may unmount, and is locked.
    assert said["unmount /proc"].startswith("1 times, then"), said
    assert said["see a proc other than its run's"] == "refused: /proc is its run's own", said
    assert said["see a process outside its run"] == "refused: none", said
    peek = gallery.results["snoop"]["05"]["output"]
    assert "pytest" not in peek and gallery.sleep not in peek


def test_a_pty_is_the_runs_own_and_the_machine_makes_none(gallery):
    said = [(what, outcome) for a, what, outcome in gallery.outcomes if a == "pty"]
    assert said[:3] == [("open /dev/ptmx", "went through")] * 3, said
    assert ("its /dev/pts", "0 1 2 ptmx") in said, said
    assert ("/dev/ptmx is", "/dev/pts/ptmx") in said, said
    # The counter is the whole machine's (other programs open ptys meanwhile):
    # the attack's three are gone with its run, and none is left on /dev/pts.
    assert int(gallery.ptys_after) < int(gallery.ptys) + 3
    assert gallery.machine_ptys == []


def test_a_quota_attacker_gets_a_few_of_each_and_the_others_go_on(gallery):
    made = {what: int(outcome.split()[0]) for a, what, outcome in gallery.outcomes
            if a == "quota"}
    assert set(made) == {"make UTS namespaces", "make user namespaces", "make inotify instances"}
    assert 0 < made["make UTS namespaces"] <= 64, made
    assert 0 < made["make user namespaces"] <= 64, made
    assert 0 < made["make inotify instances"] <= 16, made


def test_the_graders_memory_stays_bounded(gallery):
    (peak,) = re.findall(r"^@@maxrss (\d+)$", gallery.stderr, re.M)
    assert int(peak) * 1024 < PEAK_MEMORY, f"{int(peak) >> 10} MiB"


# -- canaries ---------------------------------------------------------------------------------

def test_every_canary_is_intact(gallery):
    assert len(attempted(gallery, "canaries")) == 5 * len(gallery.canaries)
    for what, _ in went_through(gallery, "canaries"):
        assert what.startswith("read ") and _world_readable(gallery, what[5:]), what
    changed = {p for p in gallery.canaries if gallery.after[p] != gallery.before[p]}
    assert not changed
    for folder in {str(Path(p).parent) for p in gallery.canaries}:
        assert gallery.listings_after[Path(folder)] == gallery.listings[Path(folder)]


def _world_readable(g, path):
    # A 0644 file in a folder every user may enter is what `nobody` may read on
    # this machine: the host binds the machine's folders read-only, by design.
    return g.canaries[path] == 0o644 and not path.startswith("/tmp/")


def test_no_canary_was_read_that_nobody_may_read(gallery):
    text = gallery.report_text + gallery.stdout + gallery.stderr
    guarded = {p: s for p, s in gallery.secrets.items() if not _world_readable(gallery, p)}
    # root's 0600 canaries and every one in /tmp: read each time, never shown.
    assert len(guarded) == 4, gallery.canaries
    assert {f"read {path}" for path in guarded} <= set(attempted(gallery, "canaries"))
    for path, secret in guarded.items():
        assert secret not in text, path


# -- planted, left behind --------------------------------------------------------------------

def test_nothing_is_planted(gallery):
    assert len(attempted(gallery, "plant")) == 4 + len(LEARNERS) + 1
    assert gallery.planted == []
    for place, before in gallery.listings.items():
        after = gallery.listings_after[place]
        if place in (Path("/"), Path("/etc"), Path("/usr/local/bin"), ROOT):
            # Shared with the rest of the machine (other tests may work there
            # meanwhile): nothing new that a run's uid owns.
            new = [name for name in set(after) - set(before) if _owner(place / name) >= 65536]
            assert new == [], place
        else:
            assert after == before, (place, set(after) ^ set(before))


def test_nothing_is_left_in_tmp_var_tmp_dev_shm_or_run_lock(gallery):
    assert gallery.leftovers == []
    caught = [line for line in gallery.frame["caught"].splitlines() if "nskit-left" in line]
    assert caught == [], "an escape from the host's tmpfs reached the machine's folder"


def test_no_cgroup_of_a_run_remains(gallery):
    if not gallery.mine:
        pytest.skip("this machine lets the grader make no cgroup")
    assert gallery.cgroups_left == []


def test_no_process_remains(gallery):
    ps = [line.split(None, 2) for line in gallery.frame["ps"].splitlines() if line.strip()]
    others = [p for p in ps if p[2].split()[0] not in ("bash", "ps")]
    assert others == [], "processes outlived the grader in its frame"
    assert gallery.foreign_after == [], "processes of a run's uid range remain on the machine"


def test_the_frame_the_grader_ran_in_is_unchanged(gallery):
    # Hostname, queues, links and mounts of the grader's own namespaces.
    assert gallery.frame["after"] == gallery.frame["before"]


# -- the machine's settings -----------------------------------------------------------------

def test_remounting_root_read_write_leaves_the_machines_root_alone(gallery):
    assert gallery.root_mount_after == gallery.root_mount
    assert ("remount the machine's file system rw", "went through") not in went_through(gallery, "remount")


def test_a_global_sysctl_is_refused_and_unchanged(gallery):
    assert len(attempted(gallery, "sysctl")) == len(SYSCTLS)
    assert went_through(gallery, "sysctl") == []
    assert gallery.sysctls_after == gallery.sysctls


def test_setting_the_clock_is_refused(gallery):
    assert attempted(gallery, "clock") == ["set the clock"]
    assert went_through(gallery, "clock") == []
    assert abs(gallery.clock_after - gallery.clock) < 1.0


def test_making_a_device_node_is_refused(gallery):
    assert len(attempted(gallery, "mknod")) == 2
    assert went_through(gallery, "mknod") == []


# -- limits ----------------------------------------------------------------------------------------

def test_2000_processes_are_cut_short_and_the_batch_goes_on(gallery):
    (outcome,) = [o for a, _, o in gallery.outcomes if a == "forkbomb"]
    started = int(re.match(r"refused: (\d+) started", outcome).group(1))
    assert started < 256
    assert all(c["passed"] for c in gallery.results["load"]["04"]["checks"])


def test_4_gib_of_memory_is_refused(gallery):
    assert went_through(gallery, "memory") == []
    (touched,) = [o for a, w, o in gallery.outcomes if a == "memory" and w == "touched"]
    assert int(touched.split()[0]) < 4096


def test_200_mb_of_output_is_cut_and_the_results_stay_small(gallery):
    step = gallery.results["load"]["03"]
    assert re.search(r"\[\.\.\. \d+ bytes of output cut \.\.\.\]", step["output"])
    assert len(step["output"]) < 2 * MiB
    assert gallery.report_size < 4 * MiB
    assert gallery.stdout_size < MiB


def test_kill_9_minus_1_takes_nothing_but_its_own_host(gallery):
    assert attempted(gallery, "kill") == ["kill -9 -1", "its own children", "kill -9 1"]
    assert ("its own children", "3 of 3 killed") in [(w, o) for a, w, o in gallery.outcomes if a == "kill"]
    step = gallery.results["load"]["05"]
    assert not step["problem"]
    # It runs its command in its host's namespaces: not 05's, so the check of
    # its command is skipped for that one cause, never failed.
    checks = {c["title"]: c for c in step["checks"]}
    assert checks["runs the command it is given"]["status"] != "failed", checks


# -- an ordinary user grades -------------------------------------------------------------

USER = 65534
WRONG = {"03": "03_uts.py", "05": "05_pid.py"}   # the skeleton, claiming 03 and 05


def _verdicts(report_text):
    return {label: {s["step"]: {c["title"]: c["status"] != "failed" for c in s["checks"]}
                    for s in learner["steps"]}
            for label, learner in json.loads(report_text).items()}


@pytest.fixture(scope="module")
def as_user(tmp_path_factory):
    """One class (the kit's steps; the skeleton renamed as 03 and 05; an attack
    that plants files in its own folder, which the grading user owns) graded
    by root and by uid 65534, from a world-readable copy on a tmpfs of the frame."""
    token = os.urandom(6).hex()
    klass = tmp_path_factory.mktemp("as-user") / "class"
    for learner in ("good", "wrong", "hostile"):
        (klass / learner).mkdir(parents=True)
        for nn in list(STEP_NAMES):
            shutil.copy(step_path(nn), klass / learner / step_path(nn).name)
    for nn, name in WRONG.items():
        shutil.copy(step_path("00"), klass / "wrong" / name)
    own = "/srv/class/hostile"
    config = {"canaries": [], "grader": str(ROOT), "token": token, "targets": [own], "sleep": "1",
              "sockets": []}
    (klass / "hostile" / step_path("01").name).unlink()
    (klass / "hostile" / "01_plant.py").write_text(attack_program("01_plant.py", config))
    # The other learners' folders, and a file of theirs only the grading user may read.
    snoop = {**config, "targets": ["/srv/class/good", "/srv/class/wrong", "/srv"]}
    for nn, name in (("00", "00_snoop.py"), ("05", "05_proc_peek.py")):
        (klass / "hostile" / step_path(nn).name).unlink()
        (klass / "hostile" / name).write_text(attack_program(name, snoop))
    secret = f"nskit-private-{os.urandom(8).hex()}"
    (klass / "good" / "notes.txt").write_text(secret + "\n")
    grader = (f"{quote(PYTHON)} -m conformance --submissions /srv/class --jobs 2 "
              "--json /srv/out/{0}.json --csv /srv/out/{0}.csv > /srv/out/{0}.out 2>&1; "
              "echo \"@@frame {0}-code\"; echo $?")
    as_nobody = (f"setpriv --reuid {USER} --regid {USER} --clear-groups --inh-caps=-all "
                 f"bash -c {quote(grader.format('user'))}")
    script = "\n".join([
        "mount -t tmpfs -o mode=755 nskit-class /srv || exit 99",
        f"cp -r {quote(str(klass))} /srv/class && mkdir -m 1777 /srv/out || exit 99",
        f"chmod -R a+rX /srv/class && chown -R {USER}:{USER} {own} /srv/class/good || exit 99",
        "chmod 600 /srv/class/good/notes.txt || exit 99",
        grader.format("root"),
        f"{expose_to_users()}{as_nobody}",
        "echo '@@frame root'; cat /srv/out/root.json",
        "echo '@@frame user'; cat /srv/out/user.json",
        "echo '@@frame user-out'; head -c 20000 /srv/out/user.out",
        f"echo '@@frame planted'; ls -a {own}",
    ])
    framed = in_frame(script)
    found = sections(framed.out, prefix="@@frame ")
    assert framed.code == 0 and "user" in found, framed
    found["token"], found["secret"] = token, secret
    return found


def test_an_ordinary_user_grades_like_root(as_user):
    assert as_user["root-code"].strip() == "0" and as_user["user-code"].strip() == "0", as_user["user-out"]
    root, user = _verdicts(as_user["root"]), _verdicts(as_user["user"])
    assert user == root


def test_root_verdicts_of_the_class_are_right(as_user):
    root = _verdicts(as_user["root"])
    assert all(all(checks.values()) for checks in root["good"].values())
    for nn in list(STEP_NAMES):
        failed = {title for title, passed in root["wrong"][nn].items() if not passed}
        if nn in WRONG:
            assert "runs the command it is given" not in failed
            assert any(title.startswith("new namespaces") for title in failed), (nn, failed)
        else:
            assert not failed, nn


def test_an_ordinary_users_runs_read_no_learners_file_and_see_no_process_outside(as_user):
    for who in ("root", "user"):
        text = as_user[who] + as_user.get(f"{who}-out", "")
        assert as_user["secret"] not in text, who
        said = [(a, what, o) for learner in json.loads(as_user[who]).values()
                for s in learner["steps"] for a, what, o in outcomes(s["output"])]
        assert [x for x in said if x[0] == "snoop"], who
        assert [x for x in said if x[0] == "snoop" and x[2] == "went through"] == [], who
        assert ("proc", "see a proc other than its run's", "refused: /proc is its run's own") in said
        assert [x for x in said if x[0] == "proc" and x[2] == "went through"] == [], who
        assert ("proc", "see a process outside its run", "refused: none") in said


def test_an_ordinary_users_own_folder_stays_unplanted(as_user):
    # Root inside the run is the grading user outside: only the kernel's lock
    # on the read-only binds keeps the run out of that user's files.
    assert f"nskit-planted-{as_user['token']}" not in as_user["planted"]
    outcomes_ = [o for learner in json.loads(as_user["user"]).values() for s in learner["steps"]
                 for o in outcomes(s["output"])]
    assert ("plant", "plant in /srv/class/hostile", "went through") not in outcomes_
    assert any(what == "plant in /srv/class/hostile" for _, what, _ in outcomes_)


# -- where user namespaces are refused ---------------------------------------------------------

REFUSAL = "nskit: cannot create the user namespace every graded run needs"
GRADE_STEPS = f"{quote(PYTHON)} -m conformance --target steps --jobs 2 --vm never"

@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter knows x86_64's syscalls")
def test_a_seccomp_filter_gets_the_refusal_sentence():
    before = Path("/proc/sys/user/max_user_namespaces").read_text()
    r = in_frame(refused(GRADE_STEPS))
    assert r.code == 2, r
    assert r.err.startswith(REFUSAL), r.err
    assert "a seccomp filter or security policy refuses them" in r.err
    assert len(r.err.strip().splitlines()) == 1 and r.out == ""
    assert Path("/proc/sys/user/max_user_namespaces").read_text() == before


# Python that enters a user namespace of its own, root mapped to the
# machine's uids 0-65535 by a parent outside it (only a process outside a
# user namespace may write its maps), then goes on with what follows.
IN_A_USER_NAMESPACE = r"""
import ctypes, os, sys
ready_r, ready_w = os.pipe()
go_r, go_w = os.pipe()
pid = os.fork()
if pid:
    os.read(ready_r, 1)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as fh:
            fh.write("0 0 65536")
    os.write(go_w, b"g")
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(0x10000000) == 0, ctypes.get_errno()
os.write(ready_w, b"u")
assert os.read(go_r, 1) == b"g"
"""

# A user namespace of the frame mapping uids 0-65535 to themselves, with
# user.max_user_namespaces 0 in it (the sysctl is per user namespace: it
# refuses only that namespace's descendants), then argv as uid 65534. Only a
# process outside a user namespace may write its maps: the parent does.
NO_USERNS_FOR_NOBODY = IN_A_USER_NAMESPACE + r"""
with open("/proc/sys/user/max_user_namespaces", "w") as fh:
    fh.write("0")
os.execvp("setpriv", ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                      "--inh-caps=-all", *sys.argv[1:]])
"""


def test_max_user_namespaces_0_gets_the_refusal_sentence():
    before = Path("/proc/sys/user/max_user_namespaces").read_text()
    r = in_frame(f"{expose_to_users()}{quote(PYTHON)} -c {quote(NO_USERNS_FOR_NOBODY)} "
                 f"{GRADE_STEPS}")
    assert r.code == 2, r
    assert r.err.startswith(REFUSAL), r.err
    assert "user.max_user_namespaces is 0" in r.err
    assert len(r.err.strip().splitlines()) == 1 and r.out == ""
    assert Path("/proc/sys/user/max_user_namespaces").read_text() == before


def test_root_of_a_user_namespace_with_max_user_namespaces_0_gets_the_refusal_sentence():
    # Root inside a user namespace (a rootless container) is not the machine's root.
    before = Path("/proc/sys/user/max_user_namespaces").read_text()
    inner = f"echo 0 > /proc/sys/user/max_user_namespaces && exec {GRADE_STEPS}"
    r = in_frame(f"unshare --user --map-root-user bash -c {quote(inner)}")
    assert r.code == 2, r
    assert r.err.startswith(REFUSAL), r.err
    assert "user.max_user_namespaces is 0" in r.err
    assert Path("/proc/sys/user/max_user_namespaces").read_text() == before


# A run's memory as a whole: a tmpfs the program mounts counts against no
# process's limit, only against the run's cgroup.
FILL_TMPFS = """#!/bin/sh
mount -t tmpfs -o size=4g nskit-fill /mytmp || exit 1
n=0
while [ $n -lt 40 ]; do head -c 50000000 /dev/zero > /mytmp/f$n || break; n=$((n + 1)); done
echo "wrote $((n * 50)) MB"
exec "$@"
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the grader makes cgroups only as root")
def test_a_run_that_fills_a_tmpfs_of_its_own_is_stopped_at_its_memory_limit(tmp_path):
    cgroups = Cgroups.available(1 << 30, 256)
    if cgroups is None:
        pytest.skip("this machine lets the grader make no memory cgroup")
    # The grader runs in a cgroup of the test's own, so the runs' cgroups are
    # made below it and none of another grader running meanwhile is counted.
    mine = Cgroups([(place, {}) for place, _ in cgroups.places]).create()
    target = tmp_path / "target"
    target.mkdir()
    (target / "00_fill").write_text(FILL_TMPFS)
    (target / "00_fill").chmod(0o755)
    try:
        join = " && ".join(f"echo $$ > {quote(str(f / 'cgroup.procs'))}" for f in mine)
        graded = in_frame(f"{join} && {quote(PYTHON)} -m conformance --target "
                          f"{quote(str(target))} --step 00 --memory 512M "
                          f"--json {quote(str(tmp_path / 'r.json'))}")
        report = json.loads((tmp_path / "r.json").read_text())
        (step,) = report[str(target)]["steps"]
        assert step["problem"] == "went over its memory limit (512 MiB) and was killed", graded
        assert not [p for f in mine for p in f.iterdir() if p.is_dir()], \
            "a run's cgroup was left behind"
    finally:
        Cgroups.remove(mine)


# -- quotas, in a frame of low limits ------------------------------------------------------

# A user namespace of the frame mapping uids 0-65535 to themselves, with low
# limits on user and UTS namespaces and inotify instances (the limits are per
# user namespace, and bind everything made below it), then argv.
LOW_LIMITS = {"max_user_namespaces": 100, "max_uts_namespaces": 100, "max_inotify_instances": 40}
IN_LOW_LIMITS = IN_A_USER_NAMESPACE + r"""
LIMITS = %r
for name, value in LIMITS.items():
    with open(f"/proc/sys/user/{name}", "w") as fh:
        fh.write(str(value))
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
""" % LOW_LIMITS


def test_a_quota_attacker_in_a_frame_of_low_limits_fails_only_itself(tmp_path):
    klass = tmp_path / "class"
    config = {"canaries": [], "grader": str(ROOT), "token": "quota", "targets": [], "sockets": [],
              "sleep": "1"}
    for learner in ("first", "quota", "last"):
        (klass / learner).mkdir(parents=True)
        for nn in list(STEP_NAMES):
            shutil.copy(step_path(nn), klass / learner / step_path(nn).name)
    (klass / "quota" / step_path("03").name).unlink()
    (klass / "quota" / "03_quota.py").write_text(attack_program("03_quota.py", config))
    report = tmp_path / "report.json"
    r = in_frame(f"{quote(PYTHON)} -c {quote(IN_LOW_LIMITS)} -m conformance --submissions "
                 f"{quote(str(klass))} --jobs 2 --json {quote(str(report))} "
                 f"--csv {quote(str(tmp_path / 'scores.csv'))}")
    assert r.code == 0, r
    results = {label: {s["step"]: s for s in learner["steps"]}
               for label, learner in json.loads(report.read_text()).items()}
    for learner in ("first", "last"):
        for nn, step in results[learner].items():
            failed = [c["title"] for c in step["checks"] if not c["passed"]]
            assert not failed and not step["problem"], (learner, nn, failed, step["problem"])
    made = {what: outcome for a, what, outcome in outcomes(results["quota"]["03"]["output"])
            if a == "quota"}
    assert len(made) == 3, results["quota"]["03"]
    most = {"make UTS namespaces": 64, "make user namespaces": 64, "make inotify instances": 16}
    for what, outcome in made.items():
        assert 0 < int(outcome.split()[0]) <= most[what], (what, outcome)
    for nn, step in results["quota"].items():
        if nn != "03":
            assert all(c["passed"] for c in step["checks"]), nn


# -- mount propagation in the run's host ------------------------------------------------------

# A program that makes a mount namespace without making its mounts private,
# mounts a tmpfs and unmounts /proc there; then the kit's steps, graded with
# the run's host's mounts private.
PROPAGATION = r"""
import sys
from conformance.sandbox import Limits, Request, Sandbox
from conformance.discover import find_programs
from conformance.grade import grade
LEAK = b'''#!/bin/sh
unshare --mount --propagation unchanged sh -c 'mount -t tmpfs nskit-leak /mytmp && umount /proc'
exec "$@"
'''
for propagation in ("shared", "private"):
    sandbox = Sandbox(Limits(propagation=propagation), jobs=2)
    (r,) = sandbox.run([Request(["/nskit/program/leak", "true"], files={"/nskit/program/leak": LEAK})])
    assert r.error is None and r.status == 0, (r.error, r.output)
    print(propagation, "nskit-leak" in r.before["mounts"], "nskit-leak" in r.after["mounts"],
          r.before["mounts"].count(" - proc "), r.after["mounts"].count(" - proc "))
    (steps,) = grade({"steps": find_programs("steps")}, sandbox).values()
    print(propagation, "steps", sum(s.passed for s in steps))
"""


def test_a_leaky_mount_reaches_the_runs_host_when_shared_and_not_when_private():
    r = in_frame(f"{quote(PYTHON)} -c {quote(PROPAGATION)}")
    assert r.code == 0, r
    assert r.out.splitlines() == [
        "shared False True 2 1", "shared steps 8",
        "private False False 2 2", "private steps 8",
    ], r


# -- memory, as an ordinary user without a delegated cgroup -----------------------------------

def test_an_ordinary_user_is_told_memory_is_bounded_per_process_only(tmp_path):
    # This machine runs no systemd user manager: the grader goes on without a
    # scope, says so once, and grades as ever.
    r = in_frame(f"{quote(PYTHON)} -m conformance --target steps --step 00 --jobs 1; "
                 f"{quote(PYTHON)} -m conformance --help", user=USER)
    assert r.code == 0, r
    assert r.err.splitlines() == [
        "nskit: memory is bounded per process only: no cgroup for the whole run here "
        "(run as root, or where systemd runs a user manager)"], r
    assert re.search(r"^score: (\d+)/\1 checks passed$", r.out, re.M), r
    assert "elsewhere memory is bounded per process only" in " ".join(r.out.split()), r


# -- every failure belongs to one run ------------------------------------------------------------

# A batch in which one run's setup is killed by the grader's side as soon as
# it starts, one's program cannot be read, and one is an ordinary run.
ONE_RUN_FAILS = r"""
import os, signal
from conformance.sandbox import Request, Sandbox

class Crashing(Sandbox):
    def launch(self, request):
        run = super().launch(request)
        if request.tag == "crash":
            os.kill(run.pid, signal.SIGKILL)
        return run

sandbox = Crashing(jobs=2)
requests = [Request(["/bin/echo", "fine"], tag="fine"), Request(["/bin/true"], tag="crash"),
            Request(["/nskit/program/gone"], files={"/nskit/program/gone": "/nonexistent"},
                    tag="gone"),
            Request(["/bin/echo", "after"], tag="after")]
for r in sorted(sandbox.run(requests), key=lambda r: r.request.tag):
    print(r.request.tag, r.error, r.output.decode().strip())
"""


def test_a_crashed_setup_or_an_unreadable_program_fails_that_run_alone():
    r = in_frame(f"{quote(PYTHON)} -c {quote(ONE_RUN_FAILS)}")
    assert r.code == 0, r
    assert r.out.splitlines() == [
        "after None after",
        "crash the run ended without a result (its host crashed) ",
        "fine None fine",
        "gone cannot read it: No such file or directory ",
    ], r


def test_whatever_a_run_sends_fails_that_run_alone():
    from conformance.sandbox import Request, Result
    from conformance.protocol import FAILED, REFUSED, RESULT, decode_result
    for data in (b"", b"\xff" * 100, RESULT, RESULT + b"\x10\0\0\0{not json",
                 RESULT + b"\x02\0\0\0[]", RESULT + b"\x02\0\0\0{}"):
        result = decode_result(data, Result(Request(["x"])))
        assert result.error == "the run ended without a result (its host crashed)", data
        assert not result.refused and result.output == b""
    result = decode_result(REFUSED + b"unshare(CLONE_NEWUSER) failed: No space left on device",
                           Result(Request(["x"])))
    assert result.refused and result.error.startswith("unshare(CLONE_NEWUSER) failed")
    result = decode_result(FAILED + b"x" * 10000, Result(Request(["x"])))
    assert result.error == "x" * 1000 and not result.refused


def test_output_that_is_not_utf_8_travels_as_bytes():
    from conformance.sandbox import Request, Result
    from conformance.protocol import decode_result, send_result
    r, w = os.pipe()
    output = b"\xff" * 50000
    send_result(w, output, 0, 0, {"a": 1}, {"a": 2}, [])
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    assert len(data) < len(output) + 200
    result = decode_result(data, Result(Request(["x"])))
    assert result.output == output and result.after == {"a": 2} and result.error is None
