"""What each `make step-NN` shows: the article's commands for that step, as
the host sees them (through steps/00_skeleton.py, which makes no namespace)
and through step NN, then everything the demo made is removed.

Each scene's docstring is the article's heading for it; it returns the
"what you just saw" sentence.
"""
import os
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path

import sh

SKELETON = Path("steps/00_skeleton.py")
MYTMP = "/mytmp"
MAX_LINES = 20  # a real host's `ps aux` runs to hundreds of lines
PACKAGES = {"ip": "iproute2", "ps": "procps", "hostname": "hostname"}


class Stop(Exception):
    """Ends the demo with one sentence for the reader and this exit code."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def heading(text):
    print(f"── {text}", flush=True)


def show(label, argv, cmd, keep=None):
    heading(f"{label}: {shlex.join(cmd)}")
    result = sh.Command(argv[0])(*argv[1:], _ok_code=range(256), _return_cmd=True)
    sys.stderr.write(result.stderr.decode(errors="replace"))
    if result.exit_code:
        raise Stop(f"`{shlex.join(cmd)}` failed ({label}), "
                   "so the demo stops here; nothing was left behind.",
                   result.exit_code)
    lines = result.stdout.decode(errors="replace").strip("\n").splitlines()
    if keep:
        kept = [line for line in lines if keep in line]
        # The article, too, cuts the mounts every view shares.
        lines = kept + [f"   … {len(lines) - len(kept)} lines without {keep} cut out"
                        if kept else f"   … {len(lines)} lines, none with {keep}"]
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES] + [f"   … {len(lines) - MAX_LINES} more lines"]
    print("\n".join(lines), flush=True)


def on_host(*cmd, keep=None):
    show("on the host", cmd, cmd, keep)


def through(step, *cmd, keep=None, label=None):
    show(label or f"through {step}", [sys.executable, step, *cmd], cmd, keep)


def both(step, *cmd, keep=None):
    through(SKELETON, *cmd, keep=keep, label="on the host")
    through(step, *cmd, keep=keep)


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
    """First, what is a container?"""
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
    with mytmp_dir(step):
        both(step, "mount", keep=MYTMP)
        through(step, "ls", "/")
    return (f"with CLONE_NEWNS the tmpfs on {MYTMP} exists only in the new "
            "mount namespace, yet `ls /` shows the whole host: a mount "
            "namespace is not a jail.")


def uts(step):
    """UTS Namespace"""
    both(step, "hostname")
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
    both(step, "ps", "aux")
    return ("with CLONE_NEWPID and a /proc of its own the command is PID 1 "
            "and sees no process of the host.")


def user(step):
    """USER Namespace"""
    both(step, "id")
    both(step, "ls", "-la")
    return ("with CLONE_NEWUSER and no uid mapping the command is nobody, and "
            "so is the owner of every file.")


def combined(step):
    """In the end..."""
    with host_queue(), mytmp_dir(step):
        for cmd in (["id"], ["hostname"], ["ps", "aux"], ["ip", "a"], ["ipcs", "-q"]):
            both(step, *cmd)
        both(step, "mount", keep=MYTMP)
    return ("all the flags at once: nobody, on myhostname, PID 1, a lone "
            f"loopback, no host queue, a tmpfs on {MYTMP} only it can see "
            "(and still the host's files: namespaces are not a jail).")


SCENES = {"00": skeleton, "01": net, "02": mnt, "03": uts,
          "04": ipc, "05": pid, "06": user, "07": combined}


def play(nn):
    found = sorted(Path("steps").glob(f"{nn}_*.py"))
    if not found:
        warn(f"There is no steps/{nn}_*.py yet: write it first, starting from "
             f"a copy of {SKELETON}.")
        return 1
    step, scene = found[0], SCENES[nn]
    print(f"Step {nn}, beside the article's “{scene.__doc__}”: its commands "
          f"on the host, then through {step}.", flush=True)
    try:
        with hostname_kept(step):
            seen = scene(step)
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
    print(f"What you just saw: {seen}", flush=True)
    return 0
