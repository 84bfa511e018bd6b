"""Sets the clock: to the time it just read, so it is harmless where it
goes through."""
# @kit
import ctypes


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def set_clock():
    now = Timespec()
    _call(libc.clock_gettime(0, ctypes.byref(now)))     # CLOCK_REALTIME
    _call(libc.clock_settime(0, ctypes.byref(now)))


attempt("clock", "set the clock", set_clock)
run_the_command()
