"""A memory and process limit for a whole run, where the machine allows it.

Resource limits count per process: a run of 256 processes may each use the
memory limit, and a tmpfs the program mounts counts against none of them. A
cgroup bounds the run as a whole. The grader makes one where a hierarchy with
the memory and pids controllers is writable: as the machine's root (cgroup
v1, or a v2 subtree), or in a v2 subtree systemd delegates to an ordinary
user, for which `python -m conformance` starts itself once in a scope of its
own (systemd-run --user --scope -p Delegate=yes). Elsewhere the per-process
limits are all there is, and --help and the grader's first line say so.
"""
import os
import shutil
import sys
import time
from pathlib import Path

MOUNTS = "/proc/self/mounts"
SCOPE_MARK = "NSKIT_DELEGATED_SCOPE"  # set in the scope the grader started itself in
LEAF = "nskit-grader"  # where the grader moves itself in that scope, so runs can get cgroups


def in_a_delegated_scope(argv):
    """For an ordinary user whose systemd runs a user manager: exec the
    grader again in a transient scope whose cgroup systemd delegates to it.
    Returns (does nothing) where there is none, or the grader is root, or
    already in it."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    systemd_run = shutil.which("systemd-run")
    if (os.geteuid() == 0 or os.environ.get(SCOPE_MARK) or not runtime or not systemd_run
            or not os.path.exists(f"{runtime}/systemd/private")):
        return
    os.environ[SCOPE_MARK] = "1"
    sys.stdout.flush()
    try:
        os.execv(systemd_run, [systemd_run, "--user", "--scope", "--quiet", "--collect",
                               "-p", "Delegate=yes", "--", sys.executable, *argv])
    except OSError:
        del os.environ[SCOPE_MARK]  # go on without: memory per process only


def _own_paths():
    """{controller or "": this process's cgroup path} from /proc/self/cgroup."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _mounts(fstype):
    return [line.split() for line in Path(MOUNTS).read_text().splitlines()
            if line.split()[2:3] == [fstype]]


class Cgroups:
    """Makes a cgroup per run beside the grader's own processes, and removes it
    when the run is over. Nothing lasts longer than a run: no folder of the
    grader's own stays behind, even when the grader is killed between runs."""

    def __init__(self, places):
        self.places = places            # [(folder, {file: value})], one per hierarchy

    @classmethod
    def available(cls, memory, processes):
        """Cgroups for these limits, or None where the machine does not allow them."""
        try:
            made = cls._v1(memory, processes) or cls._v2(memory, processes)
            if made:
                cls.remove(made.create())  # the machine may still refuse: ask once
            return made
        except OSError:
            return None

    @classmethod
    def _v1(cls, memory, processes):
        own = _own_paths()
        places = []
        for controller, limit in (("memory", {"memory.limit_in_bytes": memory}),
                                  ("pids", {"pids.max": processes})):
            mount = next((m[1] for m in _mounts("cgroup") if controller in m[3].split(",")), None)
            if mount is None or controller not in own:
                return None
            places.append((Path(mount + own[controller]), limit))
        return cls(places)

    @classmethod
    def _v2(cls, memory, processes):
        own = _own_paths().get("")
        mount = next((m[1] for m in _mounts("cgroup2")), None)
        if own is None or mount is None:
            return None
        here = Path(mount + own)
        if os.environ.get(SCOPE_MARK) and here.name == LEAF:
            here = here.parent  # started again in a process of the same scope
        elif os.environ.get(SCOPE_MARK):
            # The scope systemd made for the grader is the grader's alone: it
            # moves itself to a leaf, so that the scope may have runs below it.
            (here / LEAF).mkdir(exist_ok=True)
            (here / LEAF / "cgroup.procs").write_text(str(os.getpid()))
            (here / "cgroup.subtree_control").write_text("+memory +pids")
        # Only a subtree delegated with both controllers will do: the grader
        # must not move itself, or anything else, around the machine's tree.
        if not {"memory", "pids"} <= set((here / "cgroup.subtree_control").read_text().split()):
            return None
        return cls([(here, {"memory.max": memory, "pids.max": processes})])

    def create(self):
        """The folders of a new run's cgroup, limits written."""
        # Graders in other PID namespaces may share a pid: a random name.
        name = f"nskit-run-{os.urandom(6).hex()}"
        folders = []
        try:
            for place, limit in self.places:
                folder = place / name
                folder.mkdir()
                folders.append(folder)
                for file, value in limit.items():
                    (folder / file).write_text(str(value))
        except OSError:
            self.remove(folders)
            raise
        return folders

    @staticmethod
    def join(folders):
        """Move the calling process (and so all it will start) into a run's cgroup."""
        for folder in folders:
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    @staticmethod
    def ran_out_of_memory(folders):
        """Whether the kernel killed a process of the run for its memory limit."""
        for folder in folders:
            for name in ("memory.events", "memory.oom_control"):
                try:
                    lines = (folder / name).read_text().splitlines()
                except OSError:
                    continue
                if any(line.split()[:1] == ["oom_kill"] and line.split()[1] != "0" for line in lines):
                    return True
        return False

    @staticmethod
    def remove(folders, patience=2.0):
        """Remove a run's cgroup once the last of its processes is gone (a
        run's processes die with its PID 1, but not at once): the folders
        still there when patience runs out."""
        deadline = time.monotonic() + patience
        left = []
        for folder in folders:
            while True:
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        left.append(folder)
                        break
                    time.sleep(0.01)
        return left
