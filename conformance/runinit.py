"""PID 1 of a run's host: it furnishes the host, runs the program, and tears
the host down.

PID 1 is a process forked from the grader, never exec'd: the program it runs
cannot ptrace it or open its pipes (its memory belongs to the machine's user
namespace), and when it exits the kernel kills every process the program
left. It keeps nothing of the grader's: its result goes back on a pipe that
only it holds."""
import os
import resource
import select
import signal
from pathlib import Path

from . import ids, netlink, procfs, seccomp, witness
from .catalog import CLONE_NEWNS, ROOTFS_VARIABLE
from .procfs import shown
from .protocol import send_result
from .rootfs import PIVOT_ROOT
from .syscalls import (MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_REC, MS_SHARED, check,
                       close_fds_except, libc, mount, set_dumpable, set_process_name,
                       unshare)

HOSTNAME_PREFIX = "nskit-host-"
# What the run sees of its PID 1 (ps aux in step 05): a name, never the
# grader's command line, its folders or its options.
NAME = "nskit-init"
SNAPSHOT_TEXT, SNAPSHOT_ITEMS = 256 << 10, 256
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IPC_CREAT = 0o1000


# -- the host's own view, for before/after -------------------------------------

def snapshot(proc_self, proc_root):
    """What the checks compare: read through fds opened on the host's own
    /proc, so a program that replaces /proc cannot hide a change. Names are
    read as bytes and sent escaped (procfs.shown)."""
    def read(dirfd, name):
        try:
            with open(name, "rb", opener=lambda p, f: os.open(p, f, dir_fd=dirfd)) as fh:
                return fh.read(SNAPSHOT_TEXT)
        except (OSError, ValueError) as error:
            return f"unreadable: {getattr(error, 'strerror', None) or error}".encode()
    try:
        proc_ok = os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        proc_ok = False
    queues = procfs.queues(read(proc_root, "sysvipc/msg"))
    # A program may fill the host with mounts, links or queues: the snapshot
    # stays small, and a change in what it keeps is a change all the same.
    return {
        "hostname": shown(procfs.hostname()),
        "mounts": shown(read(proc_self, "mountinfo")),
        "queues": sorted(queues)[:SNAPSHOT_ITEMS],
        "links": {shown(name): state for name, state in procfs.links().items()},
        "proc": proc_ok,
        "ns": {n: os.readlink(f"/proc/self/ns/{n}")
               for n in ("ipc", "mnt", "net", "pid", "user", "uts")} if proc_ok else {},
        "root": [shown(name) for name in sorted(os.listdir(b"/"))[:SNAPSHOT_ITEMS]],
    }


class RunInit:
    """PID 1 of a run's throwaway host. Everything here runs in that process."""

    def __init__(self, request, limits, token, watch_fd=None):
        self.request, self.limits, self.token, self.watch_fd = request, limits, token, watch_fd

    def furnish(self):
        """A known hostname, a SysV message queue and a placeholder link, so a
        program can be judged by how its view differs from the host's."""
        name = HOSTNAME_PREFIX + self.token[:8]
        check(libc.sethostname(name.encode(), len(name)), "sethostname")
        check(libc.msgget(int(self.token[:7], 16), IPC_CREAT | 0o644), "msgget")
        netlink.furnish_links()

    def run_program(self):
        out_r, out_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                null = os.open("/dev/null", os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out_w, 1)
                os.dup2(out_w, 2)
                if self.watch_fd is not None:
                    seccomp.listen(self.watch_fd, self.request.parent_in_charge)
                close_fds_except(set())
                # Where the run's memory runs out, the kernel takes the
                # program's processes first, not the host's PID 1. (Only a
                # dumpable process owns its /proc files; exec sets it anew.)
                set_dumpable(True)
                Path("/proc/self/oom_score_adj").write_text("1000")
                os.chdir("/tmp")
                env = {"PATH": SAFE_PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb"}
                if self.request.pivot_root:
                    env[ROOTFS_VARIABLE] = PIVOT_ROOT
                os.execve(self.request.argv[0], self.request.argv, env)
            except OSError as error:
                os.write(2, f"nskit: cannot start {self.request.argv[0]}: {error.strerror}\n".encode())
            os._exit(127)
        os.close(out_w)
        head, tail, total = bytearray(), bytearray(), 0
        keep_head = self.limits.output * 3 // 4
        keep_tail = self.limits.output - keep_head
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(out_r, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        exited = False
        while True:
            events = dict(poller.poll())
            if pidfd in events:
                exited = True
                os.set_blocking(out_r, False)
            try:
                chunk = os.read(out_r, 1 << 16) if (out_r in events or exited) else b""
            except BlockingIOError:
                chunk = b""
            total += len(chunk)
            room = keep_head - len(head)
            head += chunk[:room]
            if len(chunk) > room:
                tail = (tail + chunk[room:])[-keep_tail:]
            if exited and not chunk:
                break
            if not chunk and out_r in events and not exited:
                poller.unregister(out_r)  # EOF: only the exit is left to wait for
        _, status = os.waitpid(pid, 0)
        os.close(out_r)
        return bytes(head + tail), total - len(head) - len(tail), status

    @staticmethod
    def end_everything():
        """Kill what the program left (daemons included) and say what it was."""
        left = []
        for name in os.listdir("/proc"):
            # Not what has ended, or is being killed already: nothing of it runs on.
            if name.isdigit() and name != "1" and not procfs.dying(name):
                cmdline = procfs.cmdline(name)
                if cmdline is not None:
                    left.append(shown(b" ".join(cmdline)[:200]).strip())
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass  # nothing was left
        while True:
            try:
                os.wait()
            except ChildProcessError:
                return left[:20] + ([f"... and {len(left) - 20} more"] if len(left) > 20 else [])

    def main(self, report):
        """From the moment the run's root is ready: PID 1's own mount
        namespace, a second proc, the furnishings, the program, the end."""
        set_process_name(NAME)
        ids.become_root(drop_groups=False)
        unshare(CLONE_NEWNS, "CLONE_NEWNS")
        os.chdir("/")
        if self.limits.propagation == "shared":
            # As on a systemd machine: a program that makes a mount namespace
            # without making its mounts private changes this host's.
            mount(None, "/", None, MS_REC | MS_SHARED)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)  # init ignores what it does not handle
        proc_self = os.open("/proc/self", os.O_DIRECTORY)
        proc_root = os.open("/proc", os.O_DIRECTORY)
        # A second proc over the locked one: a program may unmount it (the
        # article's step 05 does), and the one below stays whole, which the
        # kernel asks for before it lets the program mount a proc of its own.
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        # Set inside the run's user namespace, so that runs do not share one
        # count of processes.
        limits = self.limits
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        self.furnish()
        before = snapshot(proc_self, proc_root)
        output, cut, status = self.run_program()
        if self.watch_fd is not None:
            witness.before_teardown(self.watch_fd)
        leftover = self.end_everything()
        after = snapshot(proc_self, proc_root)
        send_result(report, output, cut, status, before, after, leftover)
