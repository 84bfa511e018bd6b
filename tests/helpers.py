"""What the kit's tests share: the frame, the grader's verdicts, the steps'
paths, the printed-sections parser, what the kit could leave on the machine
and the filter that refuses user namespaces. Tests import them (`from helpers
import in_frame`); pytest finds this folder through pyproject.toml's
pythonpath.

Everything that creates namespaces runs inside a throwaway frame, so a bug in
a step or a test cannot change the machine's hostname, mounts, IPC objects or
network links. As root the frame is new namespaces of the machine's root; as
an ordinary user it is a user namespace of its own too, where the user is
root, so the same tests run wherever user namespaces are allowed.
"""
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from shlex import quote

import pytest
import sh

from conformance import catalog
from conformance.catalog import (NAMESPACES, NEW_NAMESPACES, OWN_ROOT, ROOTFS_VARIABLE,
                                 STEP_NAMES, file_name)
from demo import rootfs
try:  # where the split sandbox keeps the grader's uids
    from conformance.ids import RANGE, unused_range
except ImportError:  # the sandbox in one module
    from conformance.sandbox import RANGE, unused_range
from tools.frame import expose_to_users, own_root as own_root_prelude

ROOT = Path(__file__).resolve().parent.parent
STEPS_DIR = ROOT / "steps"
PYTHON = sys.executable
# The machine's root, not root of a user namespace of a frame.
IS_ROOT = os.geteuid() == 0
# The articles the steps follow, where a checkout keeps them: beside it.
REFERENCE = ROOT.parent / "shared" / "reference"
ARTICLE = REFERENCE / "creating-containers-part-1-namespaces.md"
SECOND = REFERENCE / "deep-dive-into-linux-namespaces.txt"
needs_articles = pytest.mark.skipif(
    not (ARTICLE.is_file() and SECOND.is_file()),
    reason=f"the articles are not beside this checkout (../shared/reference/{ARTICLE.name} "
           f"and {SECOND.name})")

_FRAME = ["--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
          "--propagation", "private"]


def _within(seconds, *argv):
    """argv as an sh command, killed after seconds. sh's own _timeout looks
    at its clock ten times a second, so each command would take a tenth of a
    second more: coreutils' timeout ends it instead (exit 137)."""
    return sh.Command("timeout").bake("--foreground", "--signal=KILL", str(seconds), *argv,
                                      _ok_code=range(256), _return_cmd=True, _cwd=str(ROOT))


_UNSHARE = [*([] if IS_ROOT else ["--user", "--map-root-user"]), *_FRAME]


@cache
def user_namespaces_allowed():
    # Trying is the only reliable test: sysctls, seccomp filters and LSMs
    # all refuse them in their own way.
    return subprocess.run(["unshare", "--user", "--map-root-user", "true"],
                          capture_output=True).returncode == 0


class Framed:
    """What a script printed in its frame, and how it exited."""

    def __init__(self, cmd):
        self.code = cmd.exit_code
        self.out = cmd.stdout.decode(errors="replace")
        self.err = cmd.stderr.decode(errors="replace")

    def __repr__(self):
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


def as_user(uid, script):
    """Bash that runs script as uid, an ordinary user with no capabilities.
    In an ordinary user's frame only its root is mapped, so the uid lives in
    a user namespace nested in it (where it may not set groups)."""
    if IS_ROOT:
        return (f"exec setpriv --reuid {uid} --regid {uid} --clear-groups "
                f"--inh-caps=-all bash -c {quote(script)}")
    return (f"exec unshare --user --map-user={uid} --map-group={uid} "
            f"setpriv --inh-caps=-all bash -c {quote(script)}")


def in_frame(script, rshared=False, user=None, own_root=False, mytmp=False, keep=(), setup="",
             timeout=120):
    """Run a bash script in a throwaway frame, from the repo's folder. With
    own_root, on a root of its own in memory (and /mytmp in it if mytmp,
    and the folders in keep where they are);
    with rshared, its / propagates mounts the way a systemd host's does;
    setup is bash run as the frame's root first; with user (a uid), the
    script runs as that ordinary user, with no capabilities; it is stopped
    after timeout seconds."""
    if not IS_ROOT and not user_namespaces_allowed():
        pytest.skip("needs a frame: root, or user namespaces, which this machine refuses "
                    "to an ordinary user")
    prelude = own_root_prelude(mytmp, keep) if own_root else ""
    if own_root and not IS_ROOT:
        # A user namespace may mount a proc only beside one already fully
        # visible: a second, so step 05's unmount of /proc leaves the first.
        prelude += "mount -t proc proc /proc && "
    prelude += "mount --make-rshared / && " if rshared else ""
    prelude += setup
    if user is not None:
        prelude += expose_to_users()
        if own_root and not IS_ROOT:
            # The user nested in an ordinary user's frame is that frame's root
            # in disguise, owner of its /: read-only, / refuses them a
            # mkdir /mytmp as the machine's / refuses an ordinary user.
            prelude += "mount -o remount,bind,ro / && "
        script = as_user(user, script)
    return Framed(_within(timeout, "unshare", *_UNSHARE)("bash", "-c", prelude + script))


@cache
def _built_root():
    folder = Path(tempfile.mkdtemp(prefix="nskit-rootfs-"))
    folder.chmod(0o755)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    rootfs.build(folder / "root")
    return folder / "root"


def small_root():
    """The small root filesystem steps 10 and 11 pivot into (demo/rootfs.py),
    built once per test process where every user of a frame may read it;
    the test skips, saying why, where busybox-static is missing."""
    try:
        rootfs.find_busybox()
    except rootfs.Trouble as trouble:
        pytest.skip(f"no small root filesystem for steps 10 and 11: {trouble}")
    return _built_root()


def with_small_root(nn):
    """The shell words that give step nn its root filesystem (10 and 11), or none."""
    return f"{ROOTFS_VARIABLE}={quote(str(small_root()))} " if nn in OWN_ROOT else ""


# -- make step-NN as a reader types it ------------------------------------------

# The demo's "host" side: a frame worth comparing with, where no test may
# start a container: a known name, every docker binary covered by an empty
# file, and for Part 1's steps a link of its own beside lo (step 11's demo
# must leave no link named nskit). Before the demo, the frame's namespaces;
# after it, its exit, the sleeps left, and what the frame is left with.
FRAME_HOSTNAME = "nskit-frame"
DEMO_FRAME = (f"hostname {FRAME_HOSTNAME} && touch /tmp/.no-docker && "
              "for d in $(which -a docker); do mount --bind /tmp/.no-docker $d; done; ")
FRAME_LINK = "ip link add nskit0 type veth peer name nskit1 && "
NS_IDS = "echo '@@frame'; readlink " + " ".join(f"/proc/self/ns/{ns}" for ns in NAMESPACES) + "; "
DEMO_AFTER = ("; echo \"@@exit $?\"; echo '@@sleepers'; pgrep -x sleep | wc -l; "
              "echo '== after'; hostname; ipcs -q | grep -c '^0x'; "
              "grep -c ' /mytmp ' /proc/self/mounts; ls -d /mytmp 2>&1")
# Under `make test` the make in each frame would be a sub-make, and print
# "Entering directory" lines a reader never sees.
AS_TYPED = "env -u MAKELEVEL -u MAKEFLAGS -u MFLAGS -u NO_COLOR "


def demo(nn, user=None, env="", prefix=""):
    """`make step-NN` in a frame on a root of its own (with user, as that uid
    with /mytmp made for them), after prefix; made once a worker, for every
    test that reads it (on_demo puts them on one worker)."""
    return _demo(nn, user, env, prefix)  # one cache key, however it is called


@cache
def _demo(nn, user, env, prefix):
    root = with_small_root(nn)
    return in_frame(f"{prefix}{NS_IDS}{AS_TYPED}{root}{env} make --no-print-directory step-{nn}"
                    + DEMO_AFTER, own_root=True, mytmp=user is not None, user=user,
                    setup=(FRAME_LINK if nn in STEP_NAMES else "") + DEMO_FRAME,
                    keep=[small_root().parent] if root else ())


def on_demo(nn):
    """The tests that read step nn's demos share a worker, so that each demo
    runs once a session; the steps' demos run side by side."""
    return pytest.mark.xdist_group(f"demo-{nn}")


def on_demos(*nns):
    """Parameters nn, each on its demo's worker."""
    return [pytest.param(nn, marks=on_demo(nn)) for nn in nns]


def sleepers(out):
    """How many sleeps were left running after the demo."""
    return int(out.split("@@sleepers\n")[1].split()[0])


# namespace -> the name of its clone flag: "net" -> "CLONE_NEWNET".
FLAG_NAMES = {ns: next(name for name, value in vars(catalog).items()
                       if name.startswith("CLONE_NEW") and value == flag)
              for ns, flag in catalog.CLONE_FLAG_OF.items()}


def flag_names(nn):
    """The clone flags step nn adds to the skeleton's, by name."""
    return {FLAG_NAMES[ns] for ns in NEW_NAMESPACES[nn]}


def step_path(nn):
    """steps/NN_name.py for a two-digit step number."""
    return STEPS_DIR / f"{file_name(nn)}.py"


# Wrong programs beyond Part 1: steps/08 or 09 with one mistake each, made by
# replacing text, so `diff` against the step shows only the mistake.
# name -> (step, [(text, what it becomes)]).
_OK = '    if os.write(WRITE_END, b"OK") != 2:\n        die(failed("write to the pipe"))\n'
_WAIT = ('\n    if os.read(READ_END, 2) != b"OK":\n'
         '        die("the parent ended before it finished setting up")\n'
         '    os.close(READ_END)\n')
_PIVOT = ('    if libc.syscall(SYS_PIVOT_ROOT, b".", b".") != 0:\n        die(failed("pivot_root"))\n'
          '    if libc.umount2(b".", MNT_DETACH) != 0:\n        die(failed("umount the old root"))\n')
_UNMOUNT_OLD = '    if libc.umount2(b".", MNT_DETACH) != 0:\n        die(failed("umount the old root"))\n'
_PROC = ('    if libc.mount(b"proc", ROOTFS + b"/proc", b"proc", 0, None) != 0:\n'
         '        die(failed(f"mount proc on {os.fsdecode(ROOTFS)}/proc"))\n')
# The child of 11 goes on when its network setup fails, as a learner's may.
_TOLERATE = ("    except OSError as error:\n        die(error.strerror)\n", "    except OSError:\n        pass\n")
WRONG_BEYOND = {
    # The death signal is SIGTERM, which a command may ignore.
    "08_deathsig_term": ("08", [("PR_SET_PDEATHSIG, SIGKILL,", "PR_SET_PDEATHSIG, 15,")]),
    # The parent closes the pipe without writing "OK": the command never runs.
    "08_never_ok": ("08", [(_OK, "")]),
    # No death signal: the command outlives a killed parent.
    "08_no_deathsig": ("08", [("    # Killed by the kernel, whatever the command does, if the "
                               "parent dies.\n"
                               "    if libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0:\n"
                               "        die(failed(\"prctl PR_SET_PDEATHSIG\"))\n", "")]),
    # The child runs the command at once, without waiting for the "OK".
    "08_no_wait": ("08", [("    # Wait for \"setup done\": the command must not run before the "
                           "parent is ready." + _WAIT, "")]),
    # The parent releases the child first and writes the maps after.
    "09_maps_after_ok": ("09", [
        ("    # The child may go on: the setup is done.\n" + _OK + "    os.close(WRITE_END)\n", ""),
        ("    os.close(READ_END)\n    # Only a process outside",
         "    os.close(READ_END)\n" + _OK + "    os.close(WRITE_END)\n    # Only a process outside")]),
    # The parent never writes the maps: the command is nobody, as in 06.
    "09_no_maps": ("09", [('((b"setgroups", b"deny"),\n'
                           '                       (b"uid_map", b"0 %d 1" % os.getuid()),\n'
                           '                       (b"gid_map", b"0 %d 1" % os.getgid()))', "()")]),
    # No "deny" in setgroups first: an ordinary user may not write gid_map.
    "09_no_setgroups": ("09", [('(b"setgroups", b"deny"),\n                       ', "")]),
    # The child does not wait: the command starts before its maps, as nobody.
    "09_no_wait": ("09", [("    # Wait for \"setup done\": until the maps are written, we are "
                           "nobody." + _WAIT, "")]),
    # Only the uid map: root's uid inside, but gid nogroup.
    "09_uid_only": ("09", [('\n                       (b"gid_map", b"0 %d 1" % os.getgid())', "")]),
    # No pivot_root: the command's / is still the host's.
    "10_no_pivot": ("10", [(_PIVOT, "")]),
    # chroot instead: the command's / is the small root, the host's stays mounted below it.
    "10_chroot": ("10", [(_PIVOT, '    if libc.chroot(b".") != 0:\n        die(failed("chroot"))\n')]),
    # pivot_root, but the old root is left mounted (on top of the new one).
    "10_old_root_kept": ("10", [(_UNMOUNT_OLD, "")]),
    # No proc mounted in the new root: ps finds nothing.
    "10_no_proc": ("10", [(_PROC, "")]),
    # Both ends of the pair stay in the parent's namespace; the child goes on regardless.
    "11_end_in_parent": ("11", [_TOLERATE, (
        'peer = link(CHILD_END, False, attribute(IFLA_NET_NS_PID, struct.pack("I", pid)))',
        "peer = link(CHILD_END, False)")]),
    # The child never gives its end an address.
    "11_no_address": ("11", [(
        "        network(RTM_NEWADDR, address(CHILD_END, CHILD_ADDRESS),\n"
        '                f"ip addr add {CHILD_ADDRESS}/{PREFIX_LENGTH} dev eth0", '
        "NLM_F_CREATE | NLM_F_EXCL)\n", "")]),
    # The child does not wait for the OK: it sets up a network that is not there yet.
    "11_no_wait": ("11", [_TOLERATE, ("    # Wait for \"setup done\": until the maps are written, "
                                      "we are nobody." + _WAIT, "")]),
}


HOLD = 0.6  # seconds the parent is held before each of its writes

# Runs a step program (python3 -c HELD STEP CMD...) with the parent held before each os.write, so that a
# child that does not wait has all the time it needs to start the command.
# It prints when each write went through, for the command's start to be
# compared with.
HELD = f'''
import os, runpy, sys, time
real = os.write
def held(fd, data):
    time.sleep({HOLD})
    print("@@write", repr(time.monotonic()), data.decode(errors="replace").split()[:1],
          file=sys.stderr, flush=True)
    return real(fd, data)
os.write = held
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
'''

def wrong_beyond(name):
    """The text of the wrong program name (WRONG_BEYOND)."""
    nn, edits = WRONG_BEYOND[name]
    text = step_path(nn).read_text()
    for old, new in edits:
        assert text.count(old) == 1, (name, old)  # the step changed: update the table
        text = text.replace(old, new)
    return text


@contextmanager
def readable_folder(prefix):
    """A fresh folder that the frames of an ordinary user read too (a
    mkdtemp folder is 0700), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def step_or_wrong(name, folder):
    """A step's path, for its number, or a wrong program of WRONG_BEYOND,
    for its name, written into folder where every user of a frame reads it."""
    if len(name) == 2 and name.isdigit():
        return step_path(name)
    path = Path(folder) / f"{name}.py"
    path.write_text(wrong_beyond(name))
    path.chmod(0o644)
    return path


def sections(text, prefix="@@"):
    """Prints marked with `PREFIXname` lines, as {name: the lines below it}."""
    found, name = {}, None
    for line in text.splitlines():
        if line.startswith(prefix):
            name = line[len(prefix):].strip()
            found[name] = []
        elif name is not None:
            found[name].append(line)
    return {k: "\n".join(v).strip("\n") for k, v in found.items()}


# What the grader tells an ordinary user without a cgroup of its own, on
# every run: not what a test of its output looks at.
MEMORY_NOTICE = "nskit: memory is bounded per process only"


def without_notices(err):
    """stderr less the memory notice an ordinary user always gets."""
    return "".join(line for line in err.splitlines(keepends=True)
                   if not line.startswith(MEMORY_NOTICE))


class Graded:
    """What `python -m conformance` said of a folder: exit code, table, and
    every check's verdict as {step: {title: check}}."""

    def __init__(self, done, report):
        self.code, self.out = done.exit_code, done.stdout.decode()
        self.err = without_notices(done.stderr.decode())
        self.steps = {}
        if report.exists():
            for label in json.loads(report.read_text()).values():
                for step in label["steps"]:
                    self.steps[step["step"]] = {c["title"]: c for c in step["checks"]}

    def failed(self, step):
        """Titles of the checks of a step that failed."""
        return {title for title, check in self.steps[step].items() if not check["passed"]}

    def __repr__(self):
        return f"<grader exit {self.code}\n{self.out}\n{self.err}>"


_grader = _within(300, PYTHON, "-m", "conformance")


def grade_class(folder, report, steps):
    """Grade every subfolder of folder as a learner for these steps; the
    JSON report written to report, as {learner: {step: its result}}."""
    done = subprocess.run(
        [PYTHON, "-m", "conformance", "--submissions", str(folder),
         *[arg for nn in steps for arg in ("--step", nn)],
         "--json", str(report), "--csv", str(report.with_suffix(".csv"))],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (done.stdout[-2000:], done.stderr)
    results = json.loads(report.read_text())
    return {label: {s["step"]: s for s in r["steps"] if s["program"]} for label, r in results.items()}


def grade(*args, tmp):
    """Run the grader with these arguments (e.g. "--target", dir), its JSON
    report written under the folder tmp."""
    report = Path(tmp) / "grader-report.json"
    report.unlink(missing_ok=True)
    return Graded(_grader(*args, "--json", str(report)), report)


# -- what the kit could leave on the machine ----------------------------------------

# The hostnames the steps and the frames set; the machine must never get one.
KIT_HOSTNAMES = {"myhostname", "nskit-frame"}
# The queue key of the grader's own tests (0x6e736b, "nsk").
KIT_QUEUE_KEYS = {0x6E736B}
KIT_UIDS = range(unused_range(), unused_range() + RANGE)


def _queues():
    # key msqid perms cbytes qnum lspid lrpid uid ...
    rows = [row.split() for row in Path("/proc/sysvipc/msg").read_text().splitlines()[1:]]
    return sorted((int(r[0]), int(r[7])) for r in rows
                  if int(r[0]) in KIT_QUEUE_KEYS or int(r[7]) in KIT_UIDS)


def _orphans():
    """Running processes of the grader's uid range that nobody waits for any
    more (a zombie is already dead: reaping it is the machine's init's job)."""
    found = []
    # Every test ends with this: the short stat line first, and the rest
    # only of the few processes whose parent is init.
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                data = stat.read()
            state, ppid = data[data.rindex(b")") + 2:].split(b" ", 2)[:2]
            if ppid != b"1" or state == b"Z":
                continue
            fields = dict(line.split(":", 1) for line in
                          Path(f"/proc/{pid}/status").read_text().splitlines())
            uid = int(fields["Uid"].split()[0])
            if uid in KIT_UIDS:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                found.append(f"pid {pid}, uid {uid}: "
                             f"{command.decode(errors='replace').strip()[:120]}")
        except (OSError, ValueError):
            continue  # gone meanwhile
    return sorted(found)


def _kits_mount(line):
    # The kit names every filesystem it mounts nskit...; a folder of someone
    # else's that is merely called so (a daemon's data root) is not the kit's.
    source, target = line.split()[:2]
    return source.startswith("nskit") or target == "/mytmp" or target.startswith("/mytmp/")


def machine_traces():
    """What the kit could leave on the machine, and nothing else: other work
    on it (containers, other queues and links) may change the rest meanwhile,
    and a parallel worker's tests run in frames of their own."""
    # /proc/net is the reader's network namespace (/sys/class/net is not).
    links = [line.split(":")[0].strip() for line in
             Path("/proc/net/dev").read_text().splitlines()[2:]]
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    hostname = os.uname().nodename
    shm = [p.name for p in Path("/dev/shm").iterdir() if "nskit" in p.name]
    return {
        "links named nskit": sorted(link for link in links if "nskit" in link),
        "mounts named nskit or on /mytmp": sorted(m for m in mounts if _kits_mount(m)),
        "the kit's hostnames": hostname if hostname in KIT_HOSTNAMES else None,
        "/mytmp": os.path.lexists("/mytmp"),
        "queues of the kit's keys or uids": _queues(),
        "files named nskit in /dev/shm": sorted(shm),
        "orphans of the grader's uid range": _orphans(),
    }


def left_behind(before, now):
    """What is on the machine now that was not at the start: new entries of
    each list, or a value changed (a /mytmp made, or removed)."""
    changed = {}
    for what, value in now.items():
        if isinstance(value, list):
            new = [entry for entry in value if entry not in before[what]]
            if new:
                changed[what] = new
        elif value != before[what]:
            changed[what] = (before[what], value)
    return changed


# Refuses every new user namespace, as Docker's default seccomp profile does:
# unshare(2) and clone(2) with CLONE_NEWUSER fail with EPERM, and clone3,
# whose flags a filter cannot read, is "missing", so glibc falls back to clone.
# Then it runs its arguments as a command.
NO_USERNS = r'''
import ctypes, os, platform, struct, sys
NR = {"x86_64": (0xC000003E, 272, 56, 435), "aarch64": (0xC00000B7, 97, 220, 435)}
arch, unshare, clone, clone3 = NR[platform.machine()]
LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
prog = [(LD, 0, 0, 4), (JEQ, 0, 8, arch), (LD, 0, 0, 0), (JEQ, 5, 0, clone3),
        (JEQ, 1, 0, unshare), (JEQ, 0, 4, clone), (LD, 0, 0, 16),
        (JSET, 0, 2, 0x10000000), (RET, 0, 0, ERRNO | 1), (RET, 0, 0, ERRNO | 38),
        (RET, 0, 0, ALLOW)]
code = b"".join(struct.pack("HBBI", *insn) for insn in prog)
buf = ctypes.create_string_buffer(code)
fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(fprog)) == 0  # PR_SET_SECCOMP, FILTER
os.execvp(sys.argv[1], sys.argv[1:])
'''


def refused(script):
    """Bash that runs the bash script with user namespaces refused."""
    return f"{quote(PYTHON)} -c {quote(NO_USERNS)} bash -c {quote(script)}"
