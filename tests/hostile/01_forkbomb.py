"""Starts 2,000 processes that wait forever."""
# @kit
import signal

started, stopped = 0, "none"
for _ in range(2000):
    try:
        pid = os.fork()
    except OSError as error:
        stopped = error.strerror
        break
    if pid == 0:
        signal.pause()
        os._exit(0)
    started += 1
say("forkbomb", "start 2000 processes", "went through" if started == 2000 else
    f"refused: {started} started, then {stopped}")
run_the_command()
