"""The grader's side of its runs: up to `jobs` at a time, each followed on
its pipes from one single-threaded event loop (cloning from a multi-threaded
Python can hang the child), and the protocol on those pipes.

A run's first stage may ask for its user namespace's id maps (ASK_MAPS,
answered MAPS_WRITTEN on its control pipe); otherwise it sends one message
and closes its pipe: REFUSED or FAILED and a sentence, or its result."""
import json
import os
import select
import signal
import time

from .cgroups import Cgroups

ASK_MAPS, MAPS_WRITTEN, REFUSED, FAILED = b"U", b"G", b"X", b"E"
# How often a run whose witness waits on one of its processes is looked at again.
WATCH_TICK = 0.001


def send(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def send_result(fd, output, cut, status, before, after, leftover):
    send(fd, json.dumps({
        "output": output.decode("latin-1"), "cut": cut, "status": status,
        "before": before, "after": after, "leftover": leftover,
    }).encode())


def decode_result(data, result):
    """Fill result from what the run sent, or say why it cannot be."""
    if data.startswith(FAILED):
        result.error = data[1:].decode(errors="replace")
        return result
    try:
        payload = json.loads(data)
    except ValueError:
        result.error = "the run ended without a result (its host crashed)"
        return result
    result.output = payload["output"].encode("latin-1")
    result.cut, result.status = payload["cut"], payload["status"]
    result.before, result.after = payload["before"], payload["after"]
    result.leftover = payload["leftover"]
    return result


class Running:
    """A run as the grader follows it: its first stage's pid and pipes."""

    def __init__(self, request, pid, ctl_w, rep_r, started, timeout, cgroup, watch=None):
        self.request, self.pid, self.ctl_w, self.rep_r = request, pid, ctl_w, rep_r
        self.watch = watch  # the run's witness, followed here too (witness.py)
        self.started, self.deadline = started, started + timeout
        self.cgroup = cgroup
        self.data = bytearray()


class Scheduler:
    """Starts runs with sandbox.launch(request) and turns what comes back into
    Results, in the order they finish."""

    def __init__(self, sandbox):
        self.sandbox, self.limits = sandbox, sandbox.limits

    def _write_maps(self, run):
        """The run asked for its user namespace's id maps: only a process
        outside it may write them."""
        from .sandbox import Unavailable
        try:
            self.sandbox.id_maps.write(run.pid)
        except OSError as error:
            raise Unavailable(f"writing the user namespace's id map failed: {error.strerror}")
        os.write(run.ctl_w, MAPS_WRITTEN)
        os.close(run.ctl_w)
        run.ctl_w = None

    def _finish(self, run, error=None):
        from .sandbox import Result, Unavailable
        for fd in (run.rep_r, run.ctl_w):
            if fd is not None:
                os.close(fd)
        try:
            os.kill(run.pid, signal.SIGKILL)  # its PID 1 dies with it, and the run with that
        except ProcessLookupError:
            pass
        os.waitpid(run.pid, 0)
        if not error and Cgroups.ran_out_of_memory(run.cgroup):
            error = f"went over its memory limit ({self.limits.memory >> 20} MiB) and was killed"
        Cgroups.remove(run.cgroup)
        result = Result(run.request, seconds=time.monotonic() - run.started)
        if run.watch:
            result.witness = run.watch.result()
            run.watch.close()
        data = bytes(run.data)
        if data.startswith(REFUSED):
            raise Unavailable(data[1:].decode(errors="replace"), refused=True)
        if error:
            result.error = error
            return result
        return decode_result(data, result)

    def run(self, requests):
        pending = list(reversed(requests))
        running = {}
        try:
            while pending or running:
                while pending and len(running) < self.sandbox.jobs:
                    run = self.sandbox.launch(pending.pop())
                    running[run.rep_r] = run
                wait = max(0.0, min(r.deadline for r in running.values()) - time.monotonic())
                watched = {fd: r.watch for r in running.values() if r.watch for fd in r.watch.fds()}
                if any(r.watch and r.watch.busy() for r in running.values()):
                    wait = min(wait, WATCH_TICK)
                ready, _, _ = select.select(list(running) + list(watched), [], [], wait)
                for fd in [fd for fd in ready if fd in watched]:
                    watched[fd].on_readable(fd)
                for run in running.values():
                    if run.watch and run.watch.busy():
                        run.watch.tick()
                for fd in [fd for fd in ready if fd in running]:
                    run = running[fd]
                    chunk = os.read(fd, 1 << 16)
                    if run.ctl_w is not None and chunk == ASK_MAPS:
                        self._write_maps(run)
                    elif chunk:
                        run.data += chunk
                    else:
                        yield self._finish(running.pop(fd))
                now = time.monotonic()
                for fd, run in list(running.items()):
                    if now >= run.deadline:
                        yield self._finish(running.pop(fd),
                                           f"timed out after {self.limits.timeout:g} s")
        finally:
            for run in running.values():  # the grader is stopping: so do the runs
                os.kill(run.pid, signal.SIGKILL)
                os.waitpid(run.pid, 0)
                Cgroups.remove(run.cgroup)
                if run.watch:
                    run.watch.close()
