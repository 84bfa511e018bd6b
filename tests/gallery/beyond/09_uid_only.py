#!/usr/bin/env python3
"""Wrong 09: only the uid map: root's uid inside, but gid nogroup.
"""
import ctypes
import errno
import os
import sys

STACKSIZE = 1024 * 1024
SIGCHLD, SIGINT, SIGPIPE = 17, 2, 13  # as in <signal.h>, x86_64 and arm64
SIG_DFL, SIG_IGN = 0, 1
SIGKILL = 9
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>

libc = ctypes.CDLL(None, use_errno=True)
# clone() calls back into Python on the child's own stack, as it calls
# child_exec in the C.
CHILD_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
PROG = os.path.basename(sys.argv[0])
# The pipe between parent and child (close-on-exec: the command never gets it).
READ_END, WRITE_END = os.pipe()
PARENT = os.getpid()


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
    # The parent may have died before the line above: then nobody would kill us.
    if os.getppid() != PARENT:
        die("the parent died before the command could start")
    # Our copy of the writing end must go, or read() could never see the end.
    os.close(WRITE_END)
    # Wait for "setup done": until the maps are written, we are nobody.
    if os.read(READ_END, 2) != b"OK":
        die("the parent ended before it finished setting up")
    os.close(READ_END)
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
    child_stack = ctypes.create_string_buffer(STACKSIZE)
    # The stack grows down, so clone is given its top end.
    stack_top = ctypes.c_void_p(ctypes.addressof(child_stack) + STACKSIZE)
    clone_flags = CLONE_NEWUSER | SIGCHLD

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
                       ):
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
