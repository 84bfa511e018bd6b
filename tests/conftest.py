"""Fixtures for the kit's own tests.

Everything that creates namespaces runs inside a throwaway frame, so a bug in
a step or a test cannot change the real machine's hostname, mounts, IPC
objects or network links.
"""
import json
import os
import sys
from shlex import quote as sh_quote
from pathlib import Path

import pytest
import sh

# Prints from a clone child must survive a pipe without this crutch.
os.environ.pop("PYTHONUNBUFFERED", None)

ROOT = Path(__file__).resolve().parent.parent
STEPS = ROOT / "steps"
PYTHON = sys.executable

_unshare = sh.Command("unshare").bake(
    "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "--mount-proc",
    "--propagation", "private",
    _ok_code=range(256), _return_cmd=True, _cwd=str(ROOT), _timeout=120,
)


class Framed:
    """What a script printed in its frame, and how it exited."""

    def __init__(self, cmd):
        self.code = cmd.exit_code
        self.out = cmd.stdout.decode(errors="replace")
        self.err = cmd.stderr.decode(errors="replace")

    def __repr__(self):
        return f"<exit {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}>"


def _hidden_ancestor(path):
    """The outermost folder above path that other users cannot enter, or None."""
    for parent in reversed(Path(path).parents):
        if not parent.stat().st_mode & 0o001:
            return parent
    return None


def _expose_to_users():
    """Bash that makes the interpreter and the repo reachable for any user in
    the frame, however private their homes are (pyenv lives in /root, 0700),
    without touching the real folders' modes."""
    paths = [Path(sys.base_prefix).resolve(), ROOT]
    hidden = {a for a in map(_hidden_ancestor, paths) if a}
    if not hidden:
        return ""
    lines = ["mount -t tmpfs nskit-stage /mnt"]
    for i, path in enumerate(paths):
        lines += [f"mkdir /mnt/{i}", f"mount --bind '{path}' /mnt/{i}"]
    lines += [f"mount -t tmpfs -o mode=755 nskit-expose '{a}'" for a in hidden]
    for i, path in enumerate(paths):
        lines += [f"mkdir -p '{path}'", f"mount --bind /mnt/{i} '{path}'"]
    return " && ".join(lines) + " && "


def _own_root(mytmp, keep):
    """Bash that moves the frame onto a root of its own in memory: binds of
    every folder of the machine's /, an empty /tmp, and /mytmp only if asked,
    so what a test makes there (steps 02 and 07 mkdir /mytmp) never reaches
    the machine's disk. The repo, the interpreter and the folders in keep
    stay where they are, even when they live under /tmp."""
    keep = [p for p in (ROOT, Path(sys.base_prefix).resolve(), *map(Path, keep))
            if Path("/tmp") in p.parents]
    lines = [
        "mount -t tmpfs -o mode=755 nskit-root /mnt", "cd /mnt", "shopt -s dotglob",
        'for d in /*; do n=${d#/}; case $n in mnt|tmp|mytmp) continue;; esac; '
        'if [ -L "$d" ]; then cp -P "$d" "$n"; elif [ -d "$d" ]; then mkdir "$n" && '
        'mount --rbind "$d" "$n" || exit 99; else : > "$n"; fi; done',
        "mkdir mnt tmp .old", "mount -t tmpfs -o mode=1777 nskit-tmp tmp",
        *(["mkdir mytmp"] if mytmp else []),
        *[f"mkdir -p '.{p}' && mount --rbind '{p}' '.{p}'" for p in keep],
        "pivot_root . .old", "umount -l /.old", "rmdir /.old", f"cd '{ROOT}'",
    ]
    return " && ".join(lines) + " && "


def in_frame(script, rshared=False, user=None, own_root=False, mytmp=False, keep=(), setup=""):
    """Run a bash script in a throwaway frame, from the repo's folder. With
    own_root, on a root of its own in memory (and /mytmp in it if mytmp,
    and the folders in keep where they are);
    with rshared, its / propagates mounts the way a systemd host's does;
    setup is bash run as root first; with user (a uid), the script runs as
    that ordinary user, with no capabilities."""
    prelude = _own_root(mytmp, keep) if own_root else ""
    prelude += "mount --make-rshared / && " if rshared else ""
    prelude += setup
    if user is not None:
        prelude += _expose_to_users()
        script = (f"exec setpriv --reuid {user} --regid {user} --clear-groups "
                  f"--inh-caps=-all bash -c {sh_quote(script)}")
    return Framed(_unshare("bash", "-c", prelude + script))


def step_path(nn):
    """steps/NN_name.py for a two-digit step number."""
    (path,) = STEPS.glob(f"{nn}_*.py")
    return path


@pytest.fixture
def frame():
    return in_frame


class Graded:
    """What `python -m conformance` said of a folder: exit code, table, and
    every check's verdict as {step: {title: check}}."""

    def __init__(self, done, report):
        self.code, self.out, self.err = done.exit_code, done.stdout.decode(), done.stderr.decode()
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


_grader = sh.Command(PYTHON).bake("-m", "conformance", _ok_code=range(256), _return_cmd=True,
                                  _cwd=str(ROOT), _timeout=300)


def grade(*args, tmp):
    """Run the grader with these arguments (e.g. "--target", dir), its JSON
    report written under the folder tmp."""
    report = Path(tmp) / "grader-report.json"
    report.unlink(missing_ok=True)
    return Graded(_grader(*args, "--json", str(report)), report)
