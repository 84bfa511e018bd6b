"""The grader's side of its runs: up to `jobs` at a time, each followed on
its pipes from one single-threaded event loop (cloning from a multi-threaded
Python can hang the child). What is said on those pipes is in protocol.py."""
import os
import select
import signal
import time

from .cgroups import Cgroups
from .protocol import ASK_MAPS, MAPS_WRITTEN, Result, decode_result

UNOBSERVED = "the grader could not observe it"
# How often a run whose witness waits on one of its processes is looked at again.
WATCH_TICK = 0.001
SNAPSHOT_ROOM = 4 << 20  # beyond the output: two snapshots and the leftovers, bounded at source


def unobserved(error):
    """The one line a run fails with when the grader itself broke on it."""
    what = str(error).splitlines()[0][:300] if str(error) else ""
    return f"{UNOBSERVED}: {type(error).__name__}" + (f": {what}" if what else "")


def end(run):
    """Kill a run's setup (its PID 1 dies with it, and the run with that) and
    wait until it is gone: the launcher, its parent, reaps it."""
    try:
        signal.pidfd_send_signal(run.pidfd, signal.SIGKILL)
    except ProcessLookupError:
        pass
    select.select([run.pidfd], [], [], 5.0)
    os.close(run.pidfd)


class Running:
    """A run as the grader follows it: its setup's pid, pidfd and pipes."""

    def __init__(self, request, pid, pidfd, ctl_w, rep_r, started, timeout, cgroup, watch=None):
        self.request, self.pid, self.pidfd, self.ctl_w, self.rep_r = request, pid, pidfd, ctl_w, rep_r
        self.watch = watch  # the run's witness, followed here too (watch.py)
        self.started, self.deadline = started, started + timeout
        self.cgroup = cgroup
        self.data = bytearray()


class Scheduler:
    """Starts runs with sandbox.launch(request) and turns what comes back into
    Results, in the order they finish."""

    def __init__(self, sandbox):
        self.sandbox, self.limits = sandbox, sandbox.limits
        # All a run can make the grader hold: its output and its snapshots.
        self.bound = self.limits.output + SNAPSHOT_ROOM
        self.slow = []  # cgroups whose processes were still dying: removed at the end

    def _write_maps(self, run):
        """The run asked for its user namespace's id maps: only a process
        outside it may write them. None, or why they could not be."""
        try:
            self.sandbox.id_maps.write(run.pid)
            os.write(run.ctl_w, MAPS_WRITTEN)
        except OSError as error:
            return f"writing the user namespace's id map failed: {error.strerror}"
        os.close(run.ctl_w)
        run.ctl_w = None
        return None

    def _finish(self, run, error=None):
        for fd in (run.rep_r, run.ctl_w):
            if fd is not None:
                os.close(fd)
        if run.watch:
            try:
                run.watch.untrace()
            except Exception as broke:  # noqa: BLE001 - this run fails, the class goes on
                error = error or unobserved(broke)
        end(run)
        if not error and Cgroups.ran_out_of_memory(run.cgroup):
            error = f"went over its memory limit ({self.limits.memory >> 20} MiB) and was killed"
        self.slow += Cgroups.remove(run.cgroup, patience=0.5)
        result = Result(run.request, seconds=time.monotonic() - run.started)
        if run.watch:
            try:
                result.witness = run.watch.result()
            except Exception as broke:  # noqa: BLE001 - this run fails, the class goes on
                error = error or unobserved(broke)
            run.watch.close()
        if error:
            result.error = error
            return result
        return decode_result(bytes(run.data), result)

    def _failed_to_start(self, request, error):
        return Result(request, error=f"the grader could not start its run: {error}")

    def run(self, requests):
        pending = list(reversed(requests))
        running = {}
        try:
            while pending or running:
                while pending and len(running) < self.sandbox.jobs:
                    request = pending.pop()
                    try:
                        run = self.sandbox.launch(request)
                    except OSError as error:  # out of fds, processes or cgroups: this run
                        yield self._failed_to_start(request, error.strerror or error)
                        continue
                    except Exception as error:  # noqa: BLE001 - this run fails, the class goes on
                        yield self._failed_to_start(request, unobserved(error))
                        continue
                    running[run.rep_r] = run
                # The next runs' setups join their cgroups while these run.
                self.sandbox.prepare(min(self.sandbox.jobs, len(pending)))
                if not running:
                    continue
                wait = max(0.0, min(r.deadline for r in running.values()) - time.monotonic())
                watched = {fd: r for r in running.values() if r.watch for fd in r.watch.fds()}
                if any(r.watch and r.watch.busy() for r in running.values()):
                    wait = min(wait, WATCH_TICK)
                ready, _, _ = select.select(list(running) + list(watched), [], [], wait)
                broken = {}  # runs the grader broke on while it observed them: they fail alone
                for fd in [fd for fd in ready if fd in watched]:
                    try:
                        watched[fd].watch.on_readable(fd)
                    except Exception as error:  # noqa: BLE001
                        broken.setdefault(watched[fd].rep_r, unobserved(error))
                for run in running.values():
                    try:
                        if run.watch and run.watch.busy() and run.rep_r not in broken:
                            run.watch.tick()
                    except Exception as error:  # noqa: BLE001
                        broken.setdefault(run.rep_r, unobserved(error))
                for fd, error in broken.items():
                    yield self._finish(running.pop(fd), error)
                for fd in [fd for fd in ready if fd in running]:
                    run = running[fd]
                    try:
                        chunk = os.read(fd, 1 << 16)
                    except OSError as error:
                        yield self._finish(running.pop(fd), f"its pipe broke: {error.strerror}")
                        continue
                    if run.ctl_w is not None and chunk == ASK_MAPS:
                        problem = self._write_maps(run)
                        if problem:
                            yield self._finish(running.pop(fd), problem)
                    elif chunk and len(run.data) + len(chunk) > self.bound:
                        yield self._finish(running.pop(fd),
                                           f"it sent the grader more than {self.bound >> 20} MiB")
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
                if run.watch:
                    run.watch.untrace()
                end(run)
                self.slow += run.cgroup
                if run.watch:
                    run.watch.close()
            Cgroups.remove(self.slow, patience=30.0)
