"""kill -9 -1 (with children of its own to kill), and PID 1 for good
measure, then runs the command."""
# @kit
import signal

children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        signal.pause()
        os._exit(0)
    children.append(pid)
attempt("kill", "kill -9 -1", lambda: os.kill(-1, signal.SIGKILL))
killed = sum(os.waitpid(pid, 0)[1] == signal.SIGKILL for pid in children)
say("kill", "its own children", f"{killed} of {len(children)} killed")
attempt("kill", "kill -9 1", lambda: os.kill(1, signal.SIGKILL))
run_the_command()
