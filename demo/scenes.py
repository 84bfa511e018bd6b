"""What each `make step-NN` shows: the article's commands for that step, as
the host sees them (through steps/00_skeleton.py, which makes no namespace)
and through step NN, then which namespaces the command had of its own, and
everything the demo made is removed.

Each scene's docstring is the article's heading for it; it returns the
"what you just saw" sentence.
"""
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import sh

from conformance import catalog
from demo import nstable, rootfs

SKELETON = Path("steps/00_skeleton.py")
MYTMP = "/mytmp"
MAX_LINES = 20  # a real host's `ps aux` runs to hundreds of lines
PACKAGES = {"ip": "iproute2", "ps": "procps", "hostname": "hostname"}
FIRST = "Creating containers - Part 1: Namespaces"
SECOND = "Deep dive into Linux namespaces"

# What an ordinary user's step side runs in (see demo/__main__.py): a user
# namespace where root is them, and for 05 and 07 a PID namespace with a
# /proc of its own, because the /proc a user namespace inherits is locked
# and 05 could not unmount it. 06 and 09 need nothing: a user namespace is
# theirs to make.
USERNS = ["unshare", "--user", "--map-root-user"]
USERNS_PROC = [*USERNS, "--mount", "--pid", "--fork", "--mount-proc",
               "--propagation", "private"]
# 10 needs none either; 11's end of the veth pair on the host needs root, so
# an ordinary user's "host" for it is a network namespace of the demo's.
USERNS_NET = [*USERNS, "--net"]
WRAPPERS = {"05": USERNS_PROC, "07": USERNS_PROC, "06": [], "09": [], "00": [], "10": [],
            "11": USERNS_NET}
FLAG_NAME = {value: name for name, value in vars(catalog).items()
             if name.startswith("CLONE_NEW")}
# Whether the demo runs as an ordinary user: set by play().
as_user = False


def wrap_for(step):
    """The command line in front of `python3 step`: nothing for root."""
    if not as_user:
        return []
    # The in-between programs (flag_alone) get only the user namespace, so
    # that they read the very /proc the host side read.
    return WRAPPERS.get(Path(step).name[:2], USERNS)


class Stop(Exception):
    """Ends the demo with one sentence for the reader and this exit code."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def heading(text):
    print(f"── {text}", flush=True)


def show(label, argv, cmd, keep=None):
    """Run argv, print its output under a heading naming cmd; its lines."""
    heading(f"{label}: {shlex.join(cmd)}")
    result = sh.Command(argv[0])(*argv[1:], _ok_code=range(256), _return_cmd=True)
    sys.stderr.write(result.stderr.decode(errors="replace"))
    if result.exit_code:
        raise Stop(f"`{shlex.join(cmd)}` failed ({label}), "
                   "so the demo stops here; nothing was left behind.",
                   result.exit_code)
    lines = all_lines = result.stdout.decode(errors="replace").strip("\n").splitlines()
    if keep:
        kept = [line for line in lines if keep in line]
        # The article, too, cuts the mounts every view shares.
        lines = kept + [f"   … {len(lines) - len(kept)} lines without {keep} cut out"
                        if kept else f"   … {len(lines)} lines, none with {keep}"]
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES] + [f"   … {len(lines) - MAX_LINES} more lines"]
    print("\n".join(lines), flush=True)
    return all_lines


def on_host(*cmd, keep=None, label="on the host"):
    return show(label, cmd, cmd, keep)


AFTER = "on the host, after the step"


def through(step, *cmd, keep=None, label=None, wrap=None):
    argv = [*(wrap_for(step) if wrap is None else wrap), sys.executable, str(step), *cmd]
    return show(label or f"through {step}", argv, cmd, keep)


def both(step, *cmd, keep=None, wrap=None):
    host = through(SKELETON, *cmd, keep=keep, label="on the host", wrap=wrap)
    return host, through(step, *cmd, keep=keep, wrap=wrap)


@contextmanager
def flag_alone(ns):
    """The article's in-between program: the skeleton with only the clone
    flag for ns added, as `cp skeleton.c mount.c` plus the flag."""
    flag = FLAG_NAME[catalog.CLONE_FLAG_OF[ns]]
    source = SKELETON.read_text()
    for old, new in (("clone_flags = SIGCHLD", f"clone_flags = {flag} | SIGCHLD"),
                     ("SIG_DFL, SIG_IGN = 0, 1\n",
                      f"SIG_DFL, SIG_IGN = 0, 1\n{flag} = {catalog.CLONE_FLAG_OF[ns]:#010x}\n")):
        if old not in source:
            raise Stop(f"{SKELETON} no longer has `{old.strip()}`, which the in-between "
                       f"stage is made from: restore it with git checkout {SKELETON}.")
        source = source.replace(old, new)
    with tempfile.TemporaryDirectory(prefix="nskit-demo-") as folder:
        path = Path(folder) / f"skeleton_with_{flag}.py"
        path.write_text(source)
        yield path, f"the skeleton with {flag} alone"


def whaaat(text):
    print(f"   ⇒ {text}", flush=True)


@contextmanager
def host_queue():
    """A SysV message queue on the host, as the article's `ipcmk -Q`."""
    heading("on the host: ipcmk -Q")
    made = str(sh.ipcmk("-Q")).strip()
    print(made, flush=True)
    msqid = made.split()[-1]
    try:
        yield
    finally:
        heading(f"clean up: ipcrm -q {msqid}")
        sh.ipcrm("-q", msqid)


@contextmanager
def mytmp_dir(step):
    """The article's `mkdir /mytmp`, undone afterwards if the demo made it."""
    made, mounted = not os.path.isdir(MYTMP), os.path.ismount(MYTMP)
    if made:
        heading(f"on the host: mkdir {MYTMP}")
        try:
            os.mkdir(MYTMP)
        except OSError:
            raise Stop(f"{MYTMP} is missing and you may not make it: run "
                       f"`sudo mkdir {MYTMP}`, as the article does, and try again.")
    try:
        yield
    finally:
        # A step missing a flag mounts on the host itself.
        if os.path.ismount(MYTMP) and not mounted:
            while os.path.ismount(MYTMP):  # one tmpfs per run of the step
                sh.umount(MYTMP)
            warn(f"{step} left its tmpfs mounted on the host's {MYTMP} (unmounted "
                 "it now): does it clone with CLONE_NEWNS and make / private?")
        if made:
            heading(f"clean up: rmdir {MYTMP}")
            os.rmdir(MYTMP)


def warn(message):
    print(message, file=sys.stderr, flush=True)


def hostname():
    return str(sh.hostname()).strip()


@contextmanager
def hostname_kept(step):
    """A step missing its UTS flag renames the host itself: put it back."""
    name = hostname()
    try:
        yield
    finally:
        if hostname() != name:
            sh.hostname(name)
            warn(f"{step} changed the host's hostname (put back to {name} now): "
                 "does it clone with CLONE_NEWUTS?")


def skeleton(step):
    """NET Namespace: skeleton.c"""
    on_host("ip", "a")
    through(step, "ip", "a")
    return ("the skeleton runs the command in a child made by clone(2) with "
            "no new namespace, so the child sees just what the host sees.")


def net(step):
    """NET Namespace"""
    both(step, "ip", "a")
    return ("with CLONE_NEWNET the command has a network stack of its own: "
            "a lone loopback, and it is down.")


def mnt(step):
    """MNT Namespace"""
    host = through(SKELETON, "mount", keep=MYTMP, label="on the host")
    with flag_alone("mnt") as (alone, label):
        seen = through(alone, "mount", keep=MYTMP, label=f"through {label}")
    same = "Nothing changed" if sorted(seen) == sorted(host) else "Next to nothing changed"
    whaaat(f"{same} ({len(seen)} mounts). Whaaat??? A new mount namespace starts as "
           "a copy of the host's mounts, and `mount` lists them from /proc: to see "
           "a difference, mount something in it, as 02 does next.")
    through(step, "mount", keep=MYTMP)
    # The article: "Go ahead and run mount in the current shell just for comparison."
    on_host("mount", keep=MYTMP, label=AFTER)
    through(step, "ls", "/")
    return (f"with CLONE_NEWNS the tmpfs on {MYTMP} exists only in the new "
            "mount namespace, yet `ls /` shows the whole host: a mount "
            "namespace is not a jail.")


def uts(step):
    """UTS Namespace"""
    host = through(SKELETON, "hostname", label="on the host")
    with flag_alone("uts") as (alone, label):
        seen = through(alone, "hostname", label=f"through {label}")
    same = "The exact same output" if seen == host else "Another hostname"
    whaaat(f"{same}. This is totally fine: a new UTS namespace starts with the values of "
           "its parent's, and only a sethostname in it, before the exec, gives it a name "
           "of its own, as 03 does next.")
    through(step, "hostname")
    on_host("hostname", label=AFTER)
    return (f"with CLONE_NEWUTS the command is on myhostname while the host "
            f"stays {hostname()}.")


def ipc(step):
    """IPC Namespace"""
    with host_queue():
        both(step, "ipcs", "-q")
    return ("with CLONE_NEWIPC the queue made on the host is not there in the "
            "new IPC namespace.")


def pid(step):
    """PID Namespace"""
    host = through(SKELETON, "ps", "aux", label="on the host")
    with flag_alone("pid") as (alone, label):
        seen = through(alone, "ps", "aux", label=f"through {label}")
    whaaat(f"Still {len(seen) - 1} processes, not 1, much as on the host ({len(host) - 1}). "
           "WTF??? ps reads /proc, and this /proc is the host's: it shows the host's "
           "PID namespace. 05 adds a mount namespace and mounts a proc of its own.")
    through(step, "ps", "aux")
    pid1_ends(step)
    return ("with CLONE_NEWPID and a /proc of its own the command is PID 1 "
            "and sees no process of the host; when PID 1 exits, the kernel kills "
            "everyone else in its namespace.")


# PID 1 starts a sleep that would outlive it anywhere else, and ends at once.
PID1_ENDS = 'sleep 60 & echo "PID 1 started sleep 60 as PID $!, and exits"; readlink /proc/self/ns/pid'


def pid1_ends(step):
    """The article: "If this process exits the kernel kills everyone else
    within the namespace." Seen from the host, by the namespace's inode."""
    namespace = through(step, "sh", "-c", PID1_ENDS)[-1]
    heading(f"on the host, after the step: the processes in {namespace}")
    left = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and os.readlink(f"{entry.path}/ns/pid") == namespace:
                left.append(entry.name)
        except OSError:
            continue
    print("0 left: the kernel killed the sleep when PID 1 exited" if not left else
          f"{len(left)} left, the sleep among them: this PID namespace is not the "
          f"command's own", flush=True)
    return left


def user(step):
    """USER Namespace"""
    both(step, "id")
    both(step, "ls", "-la")
    return ("with CLONE_NEWUSER and no uid mapping the command is nobody, and "
            "so is the owner of every file.")


def combined(step):
    """In the end..."""
    with host_queue():
        for cmd in (["id"], ["hostname"], ["ps", "aux"], ["ip", "a"], ["ipcs", "-q"]):
            both(step, *cmd)
        both(step, "mount", keep=MYTMP)
    return ("all the flags at once: nobody, on myhostname, PID 1, a lone "
            f"loopback, no host queue, a tmpfs on {MYTMP} only it can see "
            "(and still the host's files: namespaces are not a jail).")


def command_of(parent, timeout=10):
    """The pid of the `sleep` a step started, among its parent's children,
    once the child has exec'd it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.scandir("/proc"):
            try:
                stat = Path(entry.path, "stat").read_text()
            except (OSError, ValueError):
                continue
            name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1].split()
            if fields[1] == str(parent) and name == "sleep":
                return int(entry.name)
        time.sleep(0.02)
    raise Stop(f"the step's command did not start within {timeout} s, "
               "so the demo stops here; nothing was left behind.")


def alive(pid):
    """Running: not gone, and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_parent(step):
    """Start `sleep 60` through step, kill the step (the command's parent)
    with SIGKILL, and say whether the command outlived it."""
    heading(f"through {step}: sleep 60, then kill -KILL the step, its parent")
    argv = [*wrap_for(step), sys.executable, str(step), "sleep", "60"]
    parent = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    command = None
    try:
        command = command_of(parent.pid)
        parent.kill()
        parent.wait()
        for _ in range(50):  # a second: the kernel's kill is all but instant
            if not alive(command):
                print(f"sleep 60 (pid {command}) is gone: the kernel killed it with "
                      "its parent.", flush=True)
                return True
            time.sleep(0.02)
        print(f"sleep 60 (pid {command}) still runs: it outlived its parent.", flush=True)
        heading(f"clean up: kill {command}")
        return False
    finally:
        # However the demo ends, neither is left behind.
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if command and alive(command):
            os.kill(command, signal.SIGKILL)


def isolate(step):
    """isolate: the parent in charge"""
    both(step, "hostname")
    kill_parent(f"steps/{catalog.file_name(catalog.BASE_STEP['08'])}.py")
    kill_parent(step)
    return ("08 is 03 with a pipe: the child waits for the parent's \"OK\" "
            "before it runs the command, so the parent can set up its "
            "namespaces first, and PR_SET_PDEATHSIG takes the command down "
            "with its parent, where 03's command lives on.")


def someone():
    """The uid 09's side runs as, and the command line in front of it: as root,
    the user who ran sudo (or nobody), because root's own map, "0 0 1", would
    hide the point (root inside is you outside); an ordinary user is already
    themselves."""
    uid = int(os.environ.get("SUDO_UID") or 0) or NOBODY
    if as_user or os.geteuid() != 0 or not _mapped(uid):
        # Root of a user namespace that maps no one else (a container's,
        # a test's frame) has nobody to become.
        return os.getuid(), []
    return uid, ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


def _mapped(uid):
    """Whether this user namespace has uid to switch to."""
    with open("/proc/self/uid_map", "rb") as fh:
        ranges = [tuple(map(int, line.split())) for line in fh if line.strip()]
    return any(first <= uid < first + count for first, _, count in ranges)


NOBODY = 65534


def uid_map(step):
    """User namespaces: root that is you"""
    uid, wrap = someone()
    if wrap:
        heading(f"as root, the step side runs as uid {uid}, an ordinary user: {shlex.join(wrap)}")
    through(SKELETON, "id", label="on the host", wrap=wrap)
    base = Path(f"steps/{catalog.file_name(catalog.BASE_STEP['09'])}.py")
    through(base, "id", wrap=wrap)
    through(step, "id", wrap=wrap)
    through(step, "cat", "/proc/self/uid_map", wrap=wrap)
    with tempfile.TemporaryDirectory(prefix="nskit-demo-") as folder:
        yours = Path(folder, "yours")
        yours.touch()
        for path in (folder, yours):
            os.chown(path, uid, -1)
        both(step, "ls", "-l", str(yours), wrap=wrap)
    return (f"06 left the command unmapped, nobody; 09's parent writes the "
            f"child's uid_map and gid_map, \"0 {uid} 1\", before it "
            "lets the child go on: root inside is you outside, and your files "
            "are root's in there. No sudo needed: a user namespace is "
            "anyone's to make.")


# Where Part 1 stops, in its own words: what 10 and 11 go on with.
QUOTES = {
    "10": ["The mount namespaces does not equal a filesystem jail.",
           "There are a few ways that we can prevent this, like using `pivot_root`, but we "
           "will leave that for an additional post on filesystem jails"],
    "11": ["Right now this is pretty useless as you don't have any usable interfaces. Docker "
           "uses this new network namespace to setup a `veth` interface"],
}


def quote(nn):
    """The article's own words, before what the step shows."""
    for words in QUOTES[nn]:
        print(f"   “{words}” ({FIRST})", flush=True)


@contextmanager
def root_filesystem():
    """The small root 10 and 11 pivot into: the one NSKIT_ROOTFS names, or
    the kit's, built first if it is missing (make rootfs)."""
    if not os.environ.get(catalog.ROOTFS_VARIABLE):
        try:
            if rootfs.build(rootfs.DEFAULT):
                heading(f"make rootfs: {rootfs.DEFAULT.name}/, busybox and its commands")
        except (rootfs.Trouble, OSError) as error:
            raise Stop(f"The step needs a small root filesystem, and building it failed: "
                       f"{getattr(error, 'strerror', None) or error}.")
    yield


def pivot_root(step):
    """MNT Namespace: pivot_root"""
    quote("10")
    with root_filesystem():
        host = on_host("mount")
        through(step, "mount")
        on_host("ls", "/")
        through(step, "ls", "/")
        through(step, "ps")
    return (f"10 is 09 with mount and PID namespaces: the child binds the small root onto "
            f"itself, mounts a proc of its own in it, pivot_root makes it the root, and the "
            f"old one, the host's, is unmounted. `mount` lists 2 mounts, not the host's "
            f"{len(host)}; `ls /` is busybox's; `ps` shows the command as PID 1. No sudo.")


def links_left():
    """The kit's links in this network namespace (a step's end of a pair)."""
    return [line for line in Path("/proc/net/dev").read_text().splitlines()[2:]
            if line.split(":")[0].strip().startswith("nskit")]


# Runs the step (argv[1]) with a command that waits, and the host's `ip`
# while the pair exists: the host's end is there only as long as the command.
WHILE_IT_RUNS = """
import subprocess, sys
argv = [sys.executable, sys.argv[1], "sh", "-c", "echo up; read _"]
with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as cmd:
    if cmd.stdout.readline().strip() == "up":
        subprocess.run(["ip", "-o", "-4", "addr"], check=True)
    cmd.stdin.close()
"""


def host_end(step):
    """`ip -o -4 addr` on the host side while the step's command runs."""
    argv = [*wrap_for(step), sys.executable, "-c", WHILE_IT_RUNS, str(step)]
    show(f"on the host, while {step} runs", argv, ["ip", "-o", "-4", "addr"], keep="nskit")


def veth(step):
    """NET Namespace: a veth pair"""
    quote("11")
    with root_filesystem():
        on_host("ip", "-o", "link")
        through(step, "ip", "a")
        through(step, "ping", "-c", "1", "-W", "5", "10.11.0.1")
        host_end(step)
        heading("on the host, after: ip -o link | grep nskit")
        print("\n".join(links_left()) or "(none: the parent removed its end, and the pair "
              "with it)", flush=True)
    return ("11 is 10 with a network namespace: the parent makes a veth pair, its own end "
            "nskit<pid> with 10.11.0.1 on the host, the other end eth0 in the child's "
            "namespace; the child gives eth0 10.11.0.2 and brings it up, and the ping crosses. "
            "The host's other links stay out of sight.")


SCENES = {"00": skeleton, "01": net, "02": mnt, "03": uts,
          "04": ipc, "05": pid, "06": user, "07": combined,
          "08": isolate, "09": uid_map, "10": pivot_root, "11": veth}
# The article each scene stands beside: 09's maps are the series' second post;
# 10 and 11 go on where Part 1's MNT and NET sections stop.
ARTICLE = {nn: SECOND if nn in catalog.BEYOND_PART_1 else FIRST for nn in SCENES}
ARTICLE["09"] = f"{SECOND}, part 2"
ARTICLE["10"] = ARTICLE["11"] = FIRST
NEEDS_MYTMP = ("02", "07")


def namespace_table(step):
    """Which namespaces the step's command had of its own, from /proc/PID/ns."""
    heading("namespaces: the host's and the command's (readlink /proc/self/ns/*)")
    links = [f"/proc/self/ns/{ns}" for ns in catalog.NAMESPACES]
    host = nstable.own()
    wrap = wrap_for(step)
    # One run of the wrapper for both, since each run makes a fresh user
    # namespace: what the step started in, then what its command has.
    # One readlink per link: busybox's, in the small root of 10 and 11, takes one.
    each = shlex.quote(f"for link in {' '.join(links)}; do readlink $link; done")
    script = (f"sh -c {each} && "
              f"{shlex.quote(sys.executable)} {shlex.quote(str(step))} sh -c {each}")
    argv = [*wrap, "sh", "-c", script]
    lines = str(sh.Command(argv[0])(*argv[1:])).splitlines()
    parent = nstable.parse("\n".join(lines[:len(links)]))
    command = nstable.parse("\n".join(lines[len(links):]))
    print(nstable.render(nstable.rows(host, parent, command),
                         nstable.colour_wanted(sys.stdout)), flush=True)


def play(nn, user=False):
    global as_user
    as_user = user
    found = sorted(Path("steps").glob(f"{nn}_*.py"))
    if not found:
        base = catalog.BASE_STEP.get(nn)
        start = f"steps/{catalog.file_name(base)}.py" if base else SKELETON
        warn(f"There is no steps/{nn}_*.py yet: write it first, starting from "
             f"a copy of {start}.")
        return 1
    step, scene = found[0], SCENES[nn]
    beyond = " (beyond Part 1)" if nn in catalog.BEYOND_PART_1 else ""
    print(f"Step {nn}{beyond}, beside “{scene.__doc__}” in {ARTICLE[nn]}: its "
          f"commands on the host, then through {step}.", flush=True)
    try:
        with hostname_kept(step), mytmp_dir(step) if nn in NEEDS_MYTMP else nullcontext():
            seen = scene(step)
            print(f"What you just saw: {seen}", flush=True)
            namespace_table(step)
    except Stop as stop:
        warn(stop)
        return stop.code
    except sh.CommandNotFound as missing:
        name = str(missing)
        warn(f"`{name}` is not installed: install {PACKAGES.get(name, name)} "
             "and try again.")
        return 1
    except sh.ErrorReturnCode as error:
        cmd = error.full_cmd.split()
        reason = error.stderr.decode(errors="replace").strip() or f"exit {error.exit_code}"
        warn(f"`{os.path.basename(cmd[0])} {' '.join(cmd[1:])}` failed: {reason}")
        return 1
    except KeyboardInterrupt:
        return 130  # interrupted, and already cleaned up on the way out
    return 0
