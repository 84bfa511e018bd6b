"""Throwaway frames for the kit's tests and benches, as bash to run first in a
frame of new namespaces (`unshare --mount ... bash -c`): they change only the
frame's own mounts, never the machine's folders or their modes."""
import os
import shutil
import sys
from pathlib import Path

from conformance.sandbox import hidden_ancestor

ROOT = Path(__file__).resolve().parent.parent
PREFIX = Path(sys.base_prefix).resolve()
# An ordinary user's PATH has no sbin on Debian, where pivot_root lives.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def system_tool(name):
    """The absolute path of a system program, found on PATH or in sbin."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    found = shutil.which(name, path=path)
    if not found:
        raise FileNotFoundError(f"{name} is missing: it comes with util-linux")
    return found


def expose_to_users():
    """Bash that makes the interpreter and the repo reachable for any user in
    the frame, however private their homes are (pyenv lives in /root, 0700),
    without touching the real folders' modes."""
    paths = [PREFIX, ROOT]
    hidden = {a for a in map(hidden_ancestor, paths) if a}
    if not hidden:
        return ""
    lines = ["mount -t tmpfs nskit-stage /mnt"]
    for i, path in enumerate(paths):
        lines += [f"mkdir /mnt/{i}", f"mount --rbind '{path}' /mnt/{i}"]
    lines += [f"mount -t tmpfs -o mode=755 nskit-expose '{a}'" for a in hidden]
    for i, path in enumerate(paths):
        lines += [f"mkdir -p '{path}'", f"mount --rbind /mnt/{i} '{path}'"]
    return " && ".join(lines) + " && "


def own_root(mytmp=False, keep=()):
    """Bash that moves the frame onto a root of its own in memory: binds of
    every folder of the machine's /, an empty /tmp, and /mytmp only if asked,
    so what a test makes there (steps 02 and 07 mkdir /mytmp) never reaches
    the machine's disk. The repo, the interpreter and the folders in keep
    stay where they are, even when they live under /tmp."""
    keep = [p for p in (ROOT, PREFIX, *map(Path, keep))
            if Path("/tmp") in p.parents]
    # Three programs, not three per folder: one cp, one mkdir, and one mount
    # of every folder from a table (hidden under the empty /tmp after), its
    # names escaped as fstab's are.
    lines = [
        "mount -t tmpfs -o mode=755 nskit-root /mnt", "cd /mnt", "shopt -s dotglob",
        "links=()", "dirs=()",
        'for d in /*; do n=${d#/}; case $n in mnt|tmp|mytmp) continue;; esac; '
        'if [ -L "$d" ]; then links+=("$d"); elif [ -d "$d" ]; then dirs+=("$n"); '
        'else : > "$n"; fi; done',
        '{ [ ${#links[@]} = 0 ] || cp -P "${links[@]}" .; }',
        'mkdir mnt tmp .old "${dirs[@]}"',
        'for n in "${dirs[@]}"; do e=${n//\\\\/\\\\134}; e=${e// /\\\\040}; '
        'e=${e//$\'\\t\'/\\\\011}; e=${e//$\'\\n\'/\\\\012}; '
        'printf "/%s /mnt/%s none rbind\\n" "$e" "$e"; done > tmp/binds',
        "{ mount --all --fstab tmp/binds || exit 99; }",
        "mount -t tmpfs -o mode=1777 nskit-tmp tmp",
        *(["mkdir mytmp"] if mytmp else []),
        *[f"mkdir -p '.{p}' && mount --rbind '{p}' '.{p}'" for p in keep],
        f"{system_tool('pivot_root')} . .old", "umount -l /.old", "rmdir /.old", f"cd '{ROOT}'",
    ]
    return " && ".join(lines) + " && "
