"""Reads the memory and environment of its host's PID 1 (the grader's) and
attaches to it; then, in a mount namespace of its own, lazily unmounts /proc
again and again to uncover the machine's, and looks at every process it can
see there."""
# @kit
import ctypes

MNT_DETACH, CLONE_NEWNS, MS_REC, MS_PRIVATE, PTRACE_ATTACH = 2, 0x20000, 16384, 1 << 18, 16


def read(path):
    with open(path, "rb") as fh:
        fh.read(4096)


attempt("proc", "read PID 1's environment", lambda: read("/proc/1/environ"))
attempt("proc", "read PID 1's memory", lambda: read("/proc/1/mem"))
attempt("proc", "attach to PID 1", lambda: _call(libc.ptrace(PTRACE_ATTACH, 1, None, None)))
_call(libc.unshare(CLONE_NEWNS))
_call(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None))
before = {p for p in os.listdir("/proc") if p.isdigit()}
unmounted = 0
for _ in range(8):
    if libc.umount2(b"/proc", MNT_DETACH) != 0:
        break
    unmounted += 1
say("proc", "unmount /proc", f"{unmounted} times, then {os.strerror(ctypes.get_errno())}")
try:
    own = os.readlink("/proc/self") == str(os.getpid())
    seen = {p for p in os.listdir("/proc") if p.isdigit()}
except OSError as error:
    own, seen = True, set()
    say("proc", "read /proc", f"refused: {error.strerror}")
say("proc", "see a proc other than its run's",
    "refused: /proc is its run's own" if own else "went through")
say("proc", "see a process outside its run",
    "went through" if seen - before - {str(os.getpid())} else "refused: none")
for pid in sorted(seen, key=int):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read(300).replace(bytes(1), b" ").decode(errors="replace")
        print(f"pid {pid}: {cmdline}")
    except OSError:
        pass
run_the_command()
