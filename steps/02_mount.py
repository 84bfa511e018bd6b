#!/usr/bin/env python3
"""02 mount: run a command in a new mount namespace, with a tmpfs on /mytmp.

A step of the article "Creating containers - Part 1: Namespaces", in Python.
Every step is the article's skeleton.c (steps/00_skeleton.py) with one more
clone flag and the little code that flag needs: `make diff-NN` shows it.

Usage: python3 THIS_FILE CMD [ARGS...]
"""
import ctypes
import errno
import os
import sys

STACKSIZE = 1024 * 1024
SIGCHLD, SIGINT, SIGPIPE = 17, 2, 13  # as in <signal.h>, x86_64 and arm64
SIG_DFL, SIG_IGN = 0, 1
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 0x40000

libc = ctypes.CDLL(None, use_errno=True)
# clone() calls back into Python on the child's own stack, as it calls
# child_exec in the C.
CHILD_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
PROG = os.path.basename(sys.argv[0])


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
    # Departing from the article (as the mkdir in main does): systemd hosts
    # mount / shared, and without this the tmpfs would show up on the host too.
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        die(failed("mount --make-rprivate /"))
    if libc.mount(b"none", b"/mytmp", b"tmpfs", 0, b"") != 0:
        die(failed("mount tmpfs on /mytmp"))
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
    if libc.mkdir(b"/mytmp", 0o755) != 0 and ctypes.get_errno() != errno.EEXIST:
        die(failed("mkdir /mytmp") + "; make it once with: sudo mkdir /mytmp")
    child_stack = ctypes.create_string_buffer(STACKSIZE)
    # The stack grows down, so clone is given its top end.
    stack_top = ctypes.c_void_p(ctypes.addressof(child_stack) + STACKSIZE)
    clone_flags = CLONE_NEWNS | SIGCHLD

    pid = libc.clone(CHILD_FUNC(child_exec), stack_top, clone_flags, None)
    if pid == -1:
        if ctypes.get_errno() == errno.EPERM:
            die("clone failed: creating namespaces needs root (CAP_SYS_ADMIN); "
                "run it with sudo, or inside the privileged container: make shell")
        die(failed("clone"))
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
