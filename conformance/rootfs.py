"""The run's root filesystem: a small tmpfs holding read-only binds of the
folders a run needs (SYSTEM, and the interpreter's prefix), a minimal /dev
with a devpts instance of its own, the run's own empty /tmp, /var/tmp,
/dev/shm, /run and /mytmp, its program under /nskit, and a proc of the run's
PID namespace. Nothing else of the machine's: no class folder, no home.
For the steps that pivot into a root of their own (10, 11), /rootfs too: a
writable tmpfs of the run's holding the same system folders, the run's /dev
and /nskit (so that the witness is there to run), and an empty proc.

It is built one user namespace above the run's own: as the machine's root,
or for an ordinary user as root of a user namespace of its own. Every mount
then reaches the run locked by the kernel, so its root can neither unmount a
tmpfs to uncover the folder below, nor make a read-only bind writable again."""
import errno
import os
import stat
from pathlib import Path

from .catalog import CLONE_NEWNS, CLONE_NEWPID
from . import witness
from .syscalls import (MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE,
                       MS_RDONLY, MS_REC, MS_REMOUNT, check, libc, mount, mount_proc_of,
                       pivot_root, readonly_tree, umount, unshare)

# Bound read-only (copied as links where they are links, as on merged-/usr).
SYSTEM = ("usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
EMPTY = ("proc", "root", "var", "mytmp")  # folders of the root's own, empty
FRESH = ("tmp", "var/tmp", "dev/shm", "run")  # the run's own tmpfs, empty, size-limited
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
PRIVATE = "/nskit"  # the programs' own folder, a tmpfs of the run's
PIVOT_ROOT = "/rootfs"  # the root steps 10 and 11 pivot into (catalog.ROOTFS_VARIABLE names it)
STAGE = "/tmp"  # a tmpfs of the setup's own, where the new root is built
NEW_ROOT = f"{STAGE}/root"


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
    """(folder, anchor) pairs for the folders a run must reach beyond SYSTEM:
    each is bound at its own path, under a tmpfs over its anchor: the
    outermost folder other users cannot enter (when the run's root is nobody
    outside), or its top folder."""
    out = []
    for path in map(Path, paths):
        anchor = hidden_ancestor(path) if os.geteuid() == 0 else None
        if anchor is None and any(path.is_relative_to(f"/{d}") for d in SYSTEM
                                  if not os.path.islink(f"/{d}")):
            continue  # already bound with its folder, and the run may enter it
        out.append((path, anchor or Path("/", *path.parts[1:2])))
    return out


def stage(reach, privileged):
    """[(folder, anchor, where to bind it from)]. The machine's root stages
    the folders now, in a mount namespace of the setup's own, before it
    becomes the unprivileged owner of the run's quota namespace, who could not
    enter those behind a folder only root may enter; an ordinary user binds
    them from where they are."""
    if not privileged:
        return [(str(path), anchor, str(path)) for path, anchor in reach]
    unshare(CLONE_NEWNS, "CLONE_NEWNS")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("nskit-stage", STAGE, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=64k")
    os.mkdir(NEW_ROOT)
    staged = []
    for i, (path, anchor) in enumerate(reach):
        source = f"{STAGE}/reach-{i}"
        os.mkdir(source)
        mount(str(path), source, None, MS_BIND | MS_REC)
        staged.append((str(path), anchor, source))
    return staged


def open_programs(files, limit):
    """{path inside: bytes or an fd open on the file}: a file is opened here,
    never through a link, and copied in when the root is built."""
    out = {}
    for inside, source in files.items():
        if Path(inside) == Path(PRIVATE) or not Path(inside).is_relative_to(PRIVATE):
            raise RunProblem(f"a program's path inside must be under {PRIVATE}")
        if isinstance(source, bytes):
            out[inside] = source
            continue
        try:
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            raise RunProblem(f"cannot read it: {error.strerror}")
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunProblem("cannot read it: not a regular file")
        if st.st_size > limit:
            raise RunProblem(f"cannot read it: it is larger than {limit >> 20} MiB")
        out[inside] = fd
    return out


class RunProblem(Exception):
    """Why this run cannot be set up: its own fault, said as is."""


class RunRoot:
    """Builds a run's root filesystem at NEW_ROOT, then pivots into it."""

    def __init__(self, limits, reach, programs, staged, pivot_root=False):
        self.limits, self.reach, self.programs, self.staged = limits, reach, programs, staged
        self.pivot_root = pivot_root
        self.covers = []

    def tmpfs(self, path, options):
        mount("nskit", path, "tmpfs", MS_NOSUID | MS_NODEV, options)

    def build(self):
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        if not self.staged:
            self.tmpfs(STAGE, "mode=755,size=64k")
            os.mkdir(NEW_ROOT)
        new = NEW_ROOT
        self.tmpfs(new, "mode=755,size=1m")
        self.system(new)
        for name in EMPTY:
            os.makedirs(f"{new}/{name}", exist_ok=True)
        self.build_dev(f"{new}/dev")
        for name in FRESH:
            os.makedirs(f"{new}/{name}", exist_ok=True)
            self.tmpfs(f"{new}/{name}", f"mode=1777,size={self.limits.tmpfs}")
        for path, anchor, source in self.reach:
            self.cover(new, anchor)
            os.makedirs(f"{new}{path}", exist_ok=True)
            mount(source, f"{new}{path}", None, MS_BIND | MS_REC)
            readonly_tree(f"{new}{path}")
        for path, source in self.programs.items():
            self.cover(new, Path(PRIVATE))
            os.makedirs(f"{new}{Path(path).parent}", exist_ok=True)
            self.copy_in(source, f"{new}{path}")
        witness.furnish_root(new, self.programs)
        for anchor in self.covers:
            readonly_tree(f"{new}{anchor}")
        if self.pivot_root:
            self.build_pivot_root(new)

    @staticmethod
    def system(new):
        """The machine's system folders, bound read-only into the root at new."""
        for name in SYSTEM:
            source, target = f"/{name}", f"{new}/{name}"
            if os.path.islink(source):
                os.symlink(os.readlink(source), target)
            elif os.path.isdir(source):
                os.mkdir(target)
                mount(source, target, None, MS_BIND | MS_REC)
                readonly_tree(target)

    def build_pivot_root(self, new):
        """The root a step pivots into: a tmpfs of the run's, writable (a
        program may make a folder for the old root), with the system
        folders, the run's /dev and /nskit bound in, and an empty proc."""
        root = f"{new}{PIVOT_ROOT}"
        os.mkdir(root)
        self.tmpfs(root, "mode=755,size=1m")
        self.system(root)
        for name in ("proc", "root", "tmp"):
            os.mkdir(f"{root}/{name}")
        for folder in ("/dev", PRIVATE):
            os.mkdir(f"{root}{folder}")
            mount(f"{new}{folder}", f"{root}{folder}", None, MS_BIND | MS_REC)
            readonly_tree(f"{root}{folder}")

    @staticmethod
    def copy_in(source, target):
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
        try:
            if isinstance(source, bytes):
                view = memoryview(source)
                while view:
                    view = view[os.write(out, view):]
            else:  # kernel to kernel: the program's bytes never pass through here
                while os.sendfile(out, source, None, 1 << 20):
                    pass
                os.close(source)
            os.fchmod(out, 0o755)
        finally:
            os.close(out)

    def build_dev(self, dev):
        """A minimal /dev: the harmless devices bound from the machine's, and
        a devpts instance of the run's own, so a pty it opens is never one of
        the machine's."""
        os.mkdir(dev)
        self.tmpfs(dev, "mode=755,size=64k")
        for name in DEVICES:
            open(f"{dev}/{name}", "w").close()
            mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
        os.mkdir(f"{dev}/pts")
        mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,max=16")
        os.symlink("pts/ptmx", f"{dev}/ptmx")
        os.mkdir(f"{dev}/shm")
        for i, name in enumerate(("stdin", "stdout", "stderr")):
            os.symlink(f"/proc/self/fd/{i}", f"{dev}/{name}")
        os.symlink("/proc/self/fd", f"{dev}/fd")
        mount(None, dev, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)

    def mount_proc(self, init_pid):
        """A proc of the run's own PID namespace at the new root's /proc,
        mounted while the machine's /proc is still in this mount namespace (the
        kernel mounts a proc only where one is fully visible), by a child in
        the run's PID namespace. The run finds it locked: below whatever proc
        it unmounts there is always this one, never the machine's."""
        pid_ns = os.open(f"/proc/{init_pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            mount_proc_of(pid_ns, f"{NEW_ROOT}/proc")  # no process to fork, where the kernel can
            return
        except OSError as error:
            if error.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
        finally:
            os.close(pid_ns)
        pidfd = os.pidfd_open(init_pid)
        check(libc.setns(pidfd, CLONE_NEWPID), "setns to the run's PID namespace")
        os.close(pidfd)
        pid = os.fork()
        if pid == 0:
            try:
                mount("proc", f"{NEW_ROOT}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                os._exit(0)
            except BaseException:  # noqa: BLE001 - the exit status says it
                os._exit(1)
        if os.waitpid(pid, 0)[1] != 0:
            raise OSError(errno.EPERM, "mounting the run's /proc failed")

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
        if any(anchor.is_relative_to(f"/{d}") for d in FRESH) or str(anchor)[1:] in EMPTY:
            return  # already the run's own, empty
        os.makedirs(f"{new}{anchor}", exist_ok=True)
        self.tmpfs(f"{new}{anchor}", f"mode=755,size={self.limits.tmpfs}")
        self.covers.append(anchor)
