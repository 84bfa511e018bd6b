# The part every attack shares. tests/test_hostile.py pastes it in place of
# an attack's "# @kit" line, with CONFIG filled in (paths the test made, a
# token naming whatever an attack leaves), so an attack is one file that
# needs nothing outside the throwaway host.
import ctypes
import os
import sys

CONFIG = None  # @config

libc = ctypes.CDLL(None, use_errno=True)
MS_REMOUNT, MS_BIND = 32, 4096


def say(attack, what, outcome):
    print(f"@@hostile {attack} | {what} | {outcome}", flush=True)


def attempt(attack, what, action):
    """Try one harmful thing and report whether the machine let it through."""
    try:
        action()
    except OSError as error:
        say(attack, what, f"refused: {error.strerror or error}")
    except Exception as error:  # noqa: BLE001 - a MemoryError is a refusal too
        say(attack, what, f"refused: {type(error).__name__}")
    else:
        say(attack, what, "went through")


def _call(ret):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def escalate(path):
    """Everything root inside may try to make path writable: peel off the
    mounts stacked on it (the host's own tmpfs covers), then remount the
    mount left there, and every mount above it, read-write."""
    os.chdir("/")  # a working folder in a cover would keep it mounted
    for _ in range(8):
        if libc.umount2(path.encode(), 0) != 0:
            break
    folder = path
    while True:
        libc.mount(None, folder.encode(), None, MS_REMOUNT | MS_BIND, None)
        if folder == "/":
            break
        folder = os.path.dirname(folder)


def write_new(path, data=b"planted by an nskit hostile test\n"):
    def action():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return action


def run_the_command():
    """Go on as the skeleton does, so the run still gets graded."""
    sys.stdout.flush()
    os.execvp(sys.argv[1], sys.argv[1:])
