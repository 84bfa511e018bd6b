#!/usr/bin/env python3
"""10 pivot_root: 09 with a root filesystem of its own, its own /proc, no sudo.

Beyond Part 1: the article's mount namespace "does not equal a filesystem
jail"; pivot_root makes one. It is 09 (steps/09_uid_map.py) plus mount and
PID namespaces: once the parent's "OK" says its maps are written, the child
binds a small root filesystem onto itself, mounts a proc of its own PID
namespace in it, makes it the root of its mount namespace with pivot_root,
and unmounts the old root, the host's, with every mount below it.
`make diff-10` shows what 09 lacked.

The root is the folder NSKIT_ROOTFS names, or rootfs/ in the kit, which
`make rootfs` builds (busybox: `sh`, `ls`, `mount`, `ps`...).

Usage: python3 THIS_FILE CMD [ARGS...]
"""
import ctypes
import errno
import os
import sys

STACKSIZE = 1024 * 1024
SIGCHLD, SIGINT, SIGPIPE = 17, 2, 13  # as in <signal.h>, x86_64 and arm64
SIG_DFL, SIG_IGN = 0, 1
SIGKILL = 9
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_BIND, MS_REC, MS_PRIVATE, MNT_DETACH = 0x1000, 0x4000, 0x40000, 2
SYS_PIVOT_ROOT = 155 if os.uname().machine == "x86_64" else 41  # x86_64, arm64: no libc wrapper
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>

libc = ctypes.CDLL(None, use_errno=True)
# clone() calls back into Python on the child's own stack, as it calls
# child_exec in the C.
CHILD_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
PROG = os.path.basename(sys.argv[0])
# The pipe between parent and child (close-on-exec: the command never gets it).
READ_END, WRITE_END = os.pipe()
ROOTFS = os.fsencode(os.environ.get("NSKIT_ROOTFS") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), os.pardir, "rootfs")))


def die(message, status=1):
    # os._exit, not sys.exit: the clone child must never return into the
    # parent's Python code, and the flush keeps the message when stderr is a pipe.
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    os._exit(status)


def failed(call):
    return f"{call} failed: {os.strerror(ctypes.get_errno())}"


# child_exec is the function run in the new process that clone creates.
def child_exec(stuff):
    argv = sys.argv[1:]
    # Killed by the kernel, whatever the command does, if the parent dies.
    if libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0:
        die(failed("prctl PR_SET_PDEATHSIG"))
    # Had the parent died before the line above, read() below would see the
    # pipe's end: getppid() cannot tell, it is 0 in a PID namespace of our own.
    # Our copy of the writing end must go, or read() could never see the end.
    os.close(WRITE_END)
    # Wait for "setup done": until the maps are written, we are nobody.
    if os.read(READ_END, 2) != b"OK":
        die("the parent ended before it finished setting up")
    os.close(READ_END)
    # No mount of ours may reach the host's namespace (systemd mounts / shared),
    # and pivot_root refuses shared mounts: every mount private first.
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        die(failed("mount --make-rprivate /"))
    # pivot_root wants the new root to be a mount point: bind it onto itself.
    if libc.mount(ROOTFS, ROOTFS, None, MS_BIND | MS_REC, None) != 0:
        die(failed(f"mount --bind {os.fsdecode(ROOTFS)}"))
    # A proc of our PID namespace, mounted while the host's is still in sight:
    # in a user namespace the kernel mounts a proc only beside a visible one.
    if libc.mount(b"proc", ROOTFS + b"/proc", b"proc", 0, None) != 0:
        die(failed(f"mount proc on {os.fsdecode(ROOTFS)}/proc"))
    os.chdir(ROOTFS)
    # pivot_root(".", ".") puts the old root on top of the new one, at "/";
    # unmounting "." takes it off, with every mount of the host's below it
    # (pivot_root(2): no folder to make for the old root).
    if libc.syscall(SYS_PIVOT_ROOT, b".", b".") != 0:
        die(failed("pivot_root"))
    if libc.umount2(b".", MNT_DETACH) != 0:
        die(failed("umount the old root"))
    os.chdir("/")
    # Python set SIGPIPE to ignored, which exec would pass on to the command.
    libc.signal(SIGPIPE, ctypes.c_void_p(SIG_DFL))
    sys.stdout.flush()
    # libc's execvp, as in the C: os.execvp imports the warnings module first.
    args = [os.fsencode(arg) for arg in argv]
    libc.execvp(args[0], (ctypes.c_char_p * (len(args) + 1))(*args, None))
    if ctypes.get_errno() == errno.ENOENT:
        die(f"{argv[0]}: command not found", 127)
    die(failed(f"execvp {argv[0]}"), 126)
    return 1


def main():
    if len(sys.argv) < 2:
        print(f"usage: {PROG} CMD [ARGS...]", file=sys.stderr)
        return 2
    if not os.path.isdir(ROOTFS + b"/proc"):
        die(f"{os.fsdecode(ROOTFS)} is no root filesystem (it has no /proc): "
            "make rootfs builds one, or name yours in NSKIT_ROOTFS")
    child_stack = ctypes.create_string_buffer(STACKSIZE)
    # The stack grows down, so clone is given its top end.
    stack_top = ctypes.c_void_p(ctypes.addressof(child_stack) + STACKSIZE)
    clone_flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | SIGCHLD

    pid = libc.clone(CHILD_FUNC(child_exec), stack_top, clone_flags, None)
    if pid == -1:
        if ctypes.get_errno() == errno.EPERM:
            die("clone failed: creating namespaces needs root (CAP_SYS_ADMIN); "
                "run it with sudo, or inside the privileged container: make shell")
        die(failed("clone"))
    os.close(READ_END)
    # Only a process outside the new user namespace may map its ids. One line
    # each: uid 0 inside is our uid outside. setgroups must be denied before an
    # unprivileged parent may write gid_map, or the child could drop groups.
    for name, line in ((b"setgroups", b"deny"),
                       (b"uid_map", b"0 %d 1" % os.getuid()),
                       (b"gid_map", b"0 %d 1" % os.getgid())):
        path = b"/proc/%d/%s" % (pid, name)
        try:
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, line)
            os.close(fd)
        except OSError as error:
            die(f"write {line.decode()} to {path.decode()} failed: {error.strerror}")
    # The child may go on: the setup is done.
    if os.write(WRITE_END, b"OK") != 2:
        die(failed("write to the pipe"))
    os.close(WRITE_END)
    # Ctrl-C reaches the command too; the parent stays to report how it ended.
    libc.signal(SIGINT, ctypes.c_void_p(SIG_IGN))
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    code = main()
    # os._exit skips tearing the interpreter down: a third of its start-up.
    sys.stdout.flush()
    os._exit(code)
