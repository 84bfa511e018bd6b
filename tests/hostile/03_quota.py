"""Makes UTS namespaces, user namespaces and inotify instances until the
kernel says no, holding each (3000 at most), then runs its command."""
# @kit
import ctypes
import resource
import signal

CLONE_NEWUTS, CLONE_NEWUSER = 0x04000000, 0x10000000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []


def make(kind, action, most=3000):
    made, stopped = 0, "none"
    for _ in range(most):
        try:
            held.append(action())
        except OSError as error:
            stopped = error.strerror
            break
        made += 1
    say("quota", f"make {kind}", f"{made} made, then {stopped}")


def uts():
    _call(libc.unshare(CLONE_NEWUTS))
    return os.open("/proc/self/ns/uts", os.O_RDONLY)


def userns():
    # A child holds each: unshare(CLONE_NEWUSER) would leave this process
    # without the rights the next round needs.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"0" if libc.unshare(CLONE_NEWUSER) == 0 else b"%d" % ctypes.get_errno())
        os.close(w)
        signal.pause()   # held until the run ends
        os._exit(0)
    os.close(w)
    answer = os.read(r, 8)
    os.close(r)
    if answer != b"0":
        raise OSError(int(answer), os.strerror(int(answer)))
    return pid


def inotify():
    return _call_fd(libc.inotify_init1(0))


def _call_fd(ret):
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


make("UTS namespaces", uts)
make("user namespaces", userns, most=200)
make("inotify instances", inotify, most=300)
run_the_command()
