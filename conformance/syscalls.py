"""The few system calls the sandbox makes that Python's os module lacks."""
import ctypes
import os
import platform
import struct

libc = ctypes.CDLL(None, use_errno=True)

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE, MS_SHARED = 4096, 16384, 1 << 18, 1 << 20
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())
SYS_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
SYS_MOUNT_SETATTR = 442
SIGCHLD = 17


def check(ret, what):
    """A libc call's result, or OSError naming the call where it failed (-1)."""
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def mount(source, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if isinstance(s, str) else s
    check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def readonly_tree(path):
    """Read-only and nosuid for a bind and every mount below it, in one call."""
    attr = struct.pack("QQQQ", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    check(libc.syscall(SYS_MOUNT_SETATTR, -100, path.encode(), AT_RECURSIVE, attr, len(attr)),
          f"mount_setattr {path}")


def pivot_root(new, old):
    check(libc.syscall(SYS_PIVOT_ROOT, new.encode(), old.encode()), "pivot_root")


def umount(path, flags=0):
    check(libc.umount2(path.encode(), flags), f"umount {path}")


def unshare(flags, what):
    check(libc.unshare(flags), f"unshare({what})")


def clone(flags):
    """fork() into new namespaces: 0 in the child, its pid in the parent.
    The child runs on a copy of the caller's stack, as after fork; the
    caller must be single-threaded."""
    return check(libc.syscall(SYS_CLONE, ctypes.c_ulong(flags | SIGCHLD), ctypes.c_void_p(0),
                              None, None, ctypes.c_ulong(0)), "clone")


def set_dumpable(on):
    libc.prctl(PR_SET_DUMPABLE, int(on), 0, 0, 0)


def die_with_parent(sig):
    libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def close_fds_except(keep):
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
