"""The run's root filesystem: a small tmpfs holding read-only binds of the
machine's folders, and the run's own empty /tmp, /var/tmp, /dev/shm, /run
and /mytmp.

It is built one user namespace above the run's own: as the machine's root,
or for an ordinary user as root of a user namespace of its own. Every mount
then reaches the run locked by the kernel, so its root can neither unmount a
tmpfs to uncover the folder below, nor make a read-only bind writable again."""
import os
from pathlib import Path

from . import witness
from .syscalls import (MNT_DETACH, MS_BIND, MS_NODEV, MS_NOSUID, MS_PRIVATE, MS_RDONLY,
                       MS_REC, MS_REMOUNT, mount, pivot_root, readonly_tree, umount)

FRESH = ("tmp", "var/tmp", "dev/shm", "run")  # the run's own, empty, size-limited
NEW_ROOT = "/tmp"  # any folder serves as the new root's mount point


def hidden_ancestor(path):
    """The outermost folder on the way to path (itself included) that other
    users cannot enter: the run's root is 'other' to the machine's files."""
    for folder in [*reversed(Path(path).parents), Path(path)]:
        try:
            if not folder.stat().st_mode & 0o001:
                return folder
        except OSError:
            return None
    return None


def reach_for(paths):
    """(folder, anchor) pairs for the folders a run could not otherwise see:
    those in the places the host replaces with its own tmpfs, and, when the
    run's root is nobody outside, those behind a folder only root may enter."""
    out = []
    for path in map(Path, paths):
        fresh = any(path.is_relative_to(f"/{d}") for d in FRESH)
        anchor = hidden_ancestor(path) if os.geteuid() == 0 else None
        if fresh or anchor is not None:
            out.append((path, anchor or path))
    return out


def open_anchors(reach):
    """Held open while folders only the machine's root may enter can still be
    entered; bound into the run's root from these fds."""
    return [(str(p), a, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p, a in reach]


class RunRoot:
    """Builds a run's root filesystem at NEW_ROOT, then pivots into it."""

    def __init__(self, request, limits, owner, anchors):
        self.request, self.limits, self.owner, self.anchors = request, limits, owner, anchors
        self.covers = []

    def tmpfs(self, path, options):
        mount("nskit", path, "tmpfs", MS_NOSUID | MS_NODEV,
              f"{options},uid={self.owner},gid={self.owner}")

    def made(self, path):
        """Whatever the builder makes belongs to the run's root."""
        os.lchown(path, self.owner, self.owner)
        return path

    def build(self):
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        new = NEW_ROOT
        self.tmpfs(new, "mode=755,size=1m")
        for entry in os.scandir("/"):
            target = f"{new}/{entry.name}"
            if entry.name in ("tmp", "run", "mytmp"):
                os.mkdir(target)
                self.made(target)
            elif entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
                self.made(target)
            elif entry.is_dir():
                os.mkdir(target)
                mount(entry.path, target, None, MS_BIND | MS_REC)
                if entry.name != "proc":  # the run mounts its own proc over it
                    readonly_tree(target)
            elif entry.is_file():
                open(target, "w").close()
                mount(entry.path, target, None, MS_BIND)
                readonly_tree(target)
        if not os.path.exists(f"{new}/mytmp"):
            os.mkdir(f"{new}/mytmp")
            self.made(f"{new}/mytmp")
        for name in FRESH:
            if os.path.isdir(f"{new}/{name}"):
                self.tmpfs(f"{new}/{name}", f"mode=1777,size={self.limits.tmpfs}")
        for path, anchor, fd in self.anchors:
            self.cover(new, anchor)
            os.makedirs(f"{new}{path}", exist_ok=True)
            mount(f"/proc/self/fd/{fd}", f"{new}{path}", None, MS_BIND | MS_REC)
            readonly_tree(f"{new}{path}")
        for path, data in self.request.files.items():
            self.cover(new, hidden_ancestor(Path(path).parent) or Path(path).parent)
            os.makedirs(f"{new}{Path(path).parent}", exist_ok=True)
            with open(f"{new}{path}", "wb") as fh:
                fh.write(data)
            os.chmod(self.made(f"{new}{path}"), 0o755)
        witness.furnish_root(new, self.request)
        for anchor in self.covers:
            readonly_tree(f"{new}{anchor}")

    def enter(self):
        """pivot_root into the new root, the old one detached, / read-only."""
        new = NEW_ROOT
        os.mkdir(f"{new}/.old")
        pivot_root(new, f"{new}/.old")
        os.chdir("/")
        umount("/.old", MNT_DETACH)
        os.rmdir("/.old")
        mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)

    def cover(self, new, anchor):
        """A tmpfs over a folder the run could not enter, holding just what
        the run must reach below it."""
        anchor = Path(anchor)
        if any(anchor.is_relative_to(c) for c in self.covers):
            return
        if any(anchor.is_relative_to(f"/{d}") for d in FRESH):
            return  # already the run's own tmpfs
        os.makedirs(f"{new}{anchor}", exist_ok=True)
        self.tmpfs(f"{new}{anchor}", f"mode=755,size={self.limits.tmpfs}")
        self.covers.append(anchor)
