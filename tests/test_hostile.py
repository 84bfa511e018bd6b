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
import stat
import time
from pathlib import Path
from shlex import quote

import pytest

from conftest import PYTHON, ROOT, in_frame, step_path
from tools.frame import expose_to_users

HOSTILE = Path(__file__).resolve().parent / "hostile"
KIT = (HOSTILE / "_kit.py").read_text()
STEPS = ["00", "01", "02", "03", "04", "05", "06", "07"]
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
}
MiB = 1 << 20


def attack_program(name, config):
    """An attack from tests/hostile/, with the shared kit and CONFIG pasted in."""
    kit = KIT.replace("CONFIG = None  # @config", f"CONFIG = {config!r}")
    return "#!/usr/bin/env python3\n" + (HOSTILE / name).read_text().replace("# @kit", kit)


def outcomes(text):
    """[(attack, what, outcome)] from the @@hostile lines the attacks print."""
    return re.findall(r"^@@hostile (\S+) \| (.+?) \| (.+)$", text, re.M)


def sections(text, prefix="@@frame "):
    found, name = {}, None
    for line in text.splitlines():
        if line.startswith(prefix):
            name = line[len(prefix):].strip()
            found[name] = []
        elif name:
            found[name].append(line)
    return {k: "\n".join(v) for k, v in found.items()}


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
        config = {"canaries": list(g.canaries), "grader": str(ROOT), "token": token,
                  "targets": [str(t) for t in g.targets.values()],
                  "sleep": f"{300 + int(token[:4], 16) % 1000}.{token[4:]}"}
        g.sleep = config["sleep"]
        for learner, attacks in LEARNERS.items():
            folder = g.targets[learner]
            folder.mkdir(parents=True)
            for nn in STEPS:
                if nn in attacks:
                    (folder / attacks[nn]).write_text(attack_program(attacks[nn], config))
                else:
                    shutil.copy(step_path(nn), folder / step_path(nn).name)
        g.listings = {p: sorted(os.listdir(p)) for p in [*plant_places, *places.values(),
                                                         *g.targets.values()]}
        g.before = {path: _file_state(path) for path in g.canaries}
        g.sysctls = {path: Path(path).read_text() for path in SYSCTLS}
        g.clock = _clock_offset()
        g.root_mount = _root_mount()
        marks = (token, config["sleep"])

        report, stdout, stderr = tmp / "report.json", tmp / "grader.out", tmp / "grader.err"
        state = "hostname; ipcs -q; ip -o link; cat /proc/self/mountinfo"
        script = "\n".join([
            *[f"mount -t tmpfs -o mode=1777,size=16m nskit-catch {d} || exit 99" for d in CATCH],
            f"echo '@@frame before'; {state}",
            "start=$(date +%s.%N)",
            f"{quote(PYTHON)} -m conformance --submissions {quote(str(g.klass))} --jobs 2 "
            f"--timeout {TIMEOUT} --json {quote(str(report))} --csv {quote(str(tmp / 'scores.csv'))} "
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
        g.frame = sections(g.framed.out)
        assert g.framed.code == 0 and "code" in g.frame, g.framed

        g.after = {path: _file_state(path) for path in g.canaries}
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
    assert set(gallery.results) == set(LEARNERS)
    for learner, steps in gallery.results.items():
        assert sorted(steps) == STEPS, learner
        for nn, step in steps.items():
            assert step["checks"], (learner, nn)


def test_the_kits_own_steps_in_the_batch_get_their_right_verdicts(gallery):
    for learner, attacks in LEARNERS.items():
        for nn in STEPS:
            if nn not in attacks:
                step = gallery.results[learner][nn]
                failed = [c["title"] for c in step["checks"] if not c["passed"]]
                assert not failed and not step["problem"], (learner, nn, failed, step["problem"])


def test_each_attack_ran_and_reported(gallery):
    for attack in ("canaries", "plant", "remount", "sysctl", "clock", "mknod", "leftovers",
                   "forkbomb", "memory", "kill"):
        assert attempted(gallery, attack), attack


def test_the_whole_gallery_takes_seconds(gallery):
    # 24 runs, two at a time; the fork bomb, 4 GiB and 200 MB end well within a timeout.
    assert float(gallery.frame["seconds"]) < 2 * TIMEOUT
    for learner, steps in gallery.results.items():
        for nn, step in steps.items():
            assert step["seconds"] < TIMEOUT, (learner, nn)


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
    for path, secret in gallery.secrets.items():
        if not _world_readable(gallery, path):
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
    ran = {c["title"]: c for c in step["checks"]}["runs the command it is given"]
    assert ran["passed"], ran


# -- an ordinary user grades -------------------------------------------------------------

USER = 65534
WRONG = {"03": "03_uts.py", "05": "05_pid.py"}   # the skeleton, claiming 03 and 05


def _verdicts(report_text):
    return {label: {s["step"]: {c["title"]: c["passed"] for c in s["checks"]}
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
        for nn in STEPS:
            shutil.copy(step_path(nn), klass / learner / step_path(nn).name)
    for nn, name in WRONG.items():
        shutil.copy(step_path("00"), klass / "wrong" / name)
    own = "/srv/class/hostile"
    config = {"canaries": [], "grader": str(ROOT), "token": token, "targets": [own], "sleep": "1"}
    (klass / "hostile" / step_path("01").name).unlink()
    (klass / "hostile" / "01_plant.py").write_text(attack_program("01_plant.py", config))
    grader = (f"{quote(PYTHON)} -m conformance --submissions /srv/class --jobs 2 "
              "--json /srv/out/{0}.json --csv /srv/out/{0}.csv > /srv/out/{0}.out 2>&1; "
              "echo \"@@frame {0}-code\"; echo $?")
    as_nobody = (f"setpriv --reuid {USER} --regid {USER} --clear-groups --inh-caps=-all "
                 f"bash -c {quote(grader.format('user'))}")
    script = "\n".join([
        "mount -t tmpfs -o mode=755 nskit-class /srv || exit 99",
        f"cp -r {quote(str(klass))} /srv/class && mkdir -m 1777 /srv/out || exit 99",
        f"chmod -R a+rX /srv/class && chown -R {USER}:{USER} {own} || exit 99",
        grader.format("root"),
        f"{expose_to_users()}{as_nobody}",
        "echo '@@frame root'; cat /srv/out/root.json",
        "echo '@@frame user'; cat /srv/out/user.json",
        "echo '@@frame user-out'; head -c 20000 /srv/out/user.out",
        f"echo '@@frame planted'; ls -a {own}",
    ])
    framed = in_frame(script)
    found = sections(framed.out)
    assert framed.code == 0 and "user" in found, framed
    found["token"] = token
    return found


def test_an_ordinary_user_grades_like_root(as_user):
    assert as_user["root-code"].strip() == "0" and as_user["user-code"].strip() == "0", as_user["user-out"]
    root, user = _verdicts(as_user["root"]), _verdicts(as_user["user"])
    assert user == root


def test_root_verdicts_of_the_class_are_right(as_user):
    root = _verdicts(as_user["root"])
    assert all(all(checks.values()) for checks in root["good"].values())
    for nn in STEPS:
        failed = {title for title, passed in root["wrong"][nn].items() if not passed}
        if nn in WRONG:
            assert "runs the command it is given" not in failed
            assert any(title.startswith("new namespaces") for title in failed), (nn, failed)
        else:
            assert not failed, nn


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

# A seccomp filter like Docker's default profile: no new user namespace by
# unshare or clone (EPERM), and no clone3, whose flags it cannot see (ENOSYS).
SECCOMP = r"""
import ctypes, os, struct, sys
def stmt(code, k, jt=0, jf=0): return struct.pack("HBBI", code, jt, jf, k)
LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
ALLOW, EPERM, ENOSYS = 0x7fff0000, 0x00050000 | 1, 0x00050000 | 38
prog = b"".join([
    stmt(LD, 4), stmt(JEQ, 0xc000003e, 1, 0), stmt(RET, ALLOW),   # x86_64 only
    stmt(LD, 0),
    stmt(JEQ, 435, 0, 1), stmt(RET, ENOSYS),                      # clone3
    stmt(JEQ, 272, 1, 0), stmt(JEQ, 56, 0, 3),                    # unshare, clone
    stmt(LD, 16), stmt(JSET, 0x10000000, 0, 1), stmt(RET, EPERM), # CLONE_NEWUSER
    stmt(RET, ALLOW),
])
buf = ctypes.create_string_buffer(prog)
fprog = struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0                           # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the filter knows x86_64's syscalls")
def test_a_seccomp_filter_gets_the_refusal_sentence():
    before = Path("/proc/sys/user/max_user_namespaces").read_text()
    r = in_frame(f"{quote(PYTHON)} -c {quote(SECCOMP)} -m conformance --target steps --jobs 2 --vm never")
    assert r.code == 2, r
    assert r.err.startswith(REFUSAL), r.err
    assert "a seccomp filter or security policy refuses them" in r.err
    assert len(r.err.strip().splitlines()) == 1 and r.out == ""
    assert Path("/proc/sys/user/max_user_namespaces").read_text() == before


# A user namespace of the frame mapping uids 0-65535 to themselves, with
# user.max_user_namespaces 0 in it (the sysctl is per user namespace: it
# refuses only that namespace's descendants), then argv as uid 65534. Only a
# process outside a user namespace may write its maps: the parent does.
NO_USERNS_FOR_NOBODY = r"""
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
    from conformance.cgroups import Cgroups
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
