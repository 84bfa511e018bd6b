#!/usr/bin/env python3
"""make bench: what the kit costs beside the article's C, and what grading costs.

    make bench   (= .venv/bin/python bench/bench.py; about 2 minutes on 2 idle cores)
    bench/bench.py [--quick] [--parts startup,namespaces,grading] [--steps DIR]
                   [--rounds 40] [--grade-rounds 7] [--class-sizes 1,10,100] [--json FILE]

Measured on this machine, in one run, every command timed as a whole process
(spawn to exit) with the commands alternated round-robin and the median kept:

  start-up   steps/NN_*.py true   against  python -c pass (the same interpreter),
             bench/clone.c NN true (the same clone in C, compiled here with gcc),
             unshare --fork <the same namespaces> true (util-linux)
  kernel     one clone(2) + waitpid with a single CLONE_NEW* flag, timed inside
             the C program, less the same without the flag
  grading    python -m conformance --target steps/, as root and as an ordinary
             user (uid 65534), and --submissions with N copies of steps/
  witness    grading steps/ against the same eight programs run directly, one
             after another, each given the witness's own commands; and the
             CPU a graded run costs beyond its program (sandbox and witness)

Everything runs inside a throwaway frame (new mount, UTS, IPC, net and PID
namespaces): the script re-executes itself there when it is not in one, so
no hostname, mount, queue, link or process it makes outlives it. Results:
a tabulate table on stdout, and JSON (default bench/results.json).
"""
import argparse
import csv
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: the kit's modules are beside it

from class_throughput import build_class  # noqa: E402  (beside this script)
from conformance import vm  # noqa: E402
from conformance.catalog import ARTICLE_COMMANDS, NAMESPACES, STEP_NAMES  # noqa: E402
from tools.frame import expose_to_users, own_root  # noqa: E402

STEPS_DIR = ROOT / "steps"
BENCH = ROOT / "bench"
PYTHON = sys.executable
FRAME_MARK = "NSKIT_BENCH_FRAME"
FRAME = ["unshare", "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "--mount-proc",
         "--propagation", "private"]
NOBODY = 65534
UNSHARE_FLAGS = {"00": [], "01": ["--net"], "02": ["--mount"], "03": ["--uts"], "04": ["--ipc"],
         "05": ["--pid", "--mount", "--mount-proc"], "06": ["--user"],
         "07": ["--mount", "--uts", "--ipc", "--user", "--pid", "--net", "--mount-proc"]}
# Targets (this 2-core machine).
STEP_RATIO_MAX = 1.5
GRADE_STEPS_MAX, GRADE_STEPS_AIM = 5.0, 3.0
CLASS_100_MAX = 180.0
WITNESS_RATIO_AIM, RUN_CPU_AIM_MS = 1.2, 10.0


# -- running and timing ---------------------------------------------------------

def resolve(argv):
    path = shutil.which(argv[0]) if "/" not in argv[0] else argv[0]
    if not path:
        sys.exit(f"bench: {argv[0]} not found")
    return [path, *argv[1:]]


class Command:
    """One thing to time, run as a whole process with its output discarded."""

    def __init__(self, key, argv, cwd=None, rounds=None):
        self.key, self.argv, self.cwd = key, resolve(argv), cwd
        self.rounds = rounds      # at most this many, when fewer than the others
        self.samples = []
        self.full_marks = None    # for a class: learners graded 55/55

    def check(self):
        """Run it once, loudly: a command that fails would time its failure."""
        done = subprocess.run(self.argv, cwd=self.cwd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"bench: {shlex.join(self.argv)} exited {done.returncode}:\n"
                     f"{done.stdout[-2000:]}{done.stderr[-2000:]}")

    def time_once(self, devnull):
        """Seconds from spawn to exit (posix_spawn: no fork of this process's memory)."""
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                   (os.POSIX_SPAWN_DUP2, devnull, 2)]
        cwd = os.getcwd()
        if self.cwd:
            os.chdir(self.cwd)
        try:
            start = time.perf_counter()
            pid = os.posix_spawn(self.argv[0], self.argv, os.environ, file_actions=actions)
            _, status = os.waitpid(pid, 0)
            seconds = time.perf_counter() - start
        finally:
            os.chdir(cwd)
        if os.waitstatus_to_exitcode(status) != 0:
            self.check()  # again, to show why
            sys.exit(f"bench: {shlex.join(self.argv)} failed while being timed "
                     f"(exit {os.waitstatus_to_exitcode(status)})")
        self.samples.append(seconds)

    @property
    def median(self):
        return statistics.median(self.samples)

    def summary(self):
        s = sorted(self.samples)
        q = statistics.quantiles(s, n=4, method="inclusive") if len(s) > 1 else [s[0]] * 3
        out = {"argv": self.argv, "runs": len(s), "median": self.median, "min": s[0],
               "p25": q[0], "p75": q[2], "max": s[-1]}
        if self.full_marks is not None:
            out["full_marks"] = self.full_marks
        return out


def alternate(commands, rounds, label):
    """Time every command `rounds` times (or its own fewer), round-robin; each
    round starts one command further on, so none always follows the same one."""
    for command in commands:
        if command.rounds is None:  # a long command's first timed run checks it
            command.check()
    started = time.monotonic()
    with open(os.devnull, "r+b") as null:
        fd = null.fileno()
        for r in range(rounds):
            shift = r % len(commands)
            for command in commands[shift:] + commands[:shift]:
                if command.rounds is None or r < command.rounds:
                    command.time_once(fd)
            if sys.stderr.isatty():
                print(f"\r{label}: round {r + 1}/{rounds}, {time.monotonic() - started:.0f} s",
                      end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return {c.key: c for c in commands}


# -- the pieces -------------------------------------------------------------------

def compile_clone(folder):
    binary = Path(folder) / "clone"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(BENCH / "clone.c")], check=True)
    return str(binary)


def step_program(nn, steps_dir=STEPS_DIR):
    (path,) = Path(steps_dir).glob(f"{nn}_*.py")
    return str(path)


def as_mode(argv, user):
    """argv run in a mount namespace of its own, as root or as `user` (a uid,
    no capabilities, the interpreter made reachable). Both modes go through
    the same unshare and bash, so they differ only in who grades."""
    if user is None:
        script = f"exec {shlex.join(argv)}"
    else:
        script = (expose_to_users() + f"exec setpriv --reuid {user} --regid {user} "
                  f"--clear-groups --inh-caps=-all {shlex.join(argv)}")
    return ["unshare", "--mount", "--propagation", "private", "bash", "-c", script]


def grader(*args):
    return [PYTHON, "-m", "conformance", *args]


# -- the measurements ------------------------------------------------------------------

def bench_startup(clone, rounds, steps_dir):
    commands = [Command("pass", [PYTHON, "-c", "pass"])]
    for nn, flags in UNSHARE_FLAGS.items():
        commands += [Command(f"py{nn}", [PYTHON, step_program(nn, steps_dir), "true"]),
                     Command(f"c{nn}", [clone, nn, "true"]),
                     Command(f"unshare{nn}", ["unshare", *flags, "--fork", "true"])]
    return alternate(commands, rounds, "start-up")


def bench_namespaces(clone, rounds, clones):
    """Median ns of clone+waitpid per flag, each a median over `rounds` batches."""
    names = ["none", *NAMESPACES]
    samples = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            out = subprocess.run([clone, "--cost", name, str(clones)], check=True,
                                 capture_output=True, text=True).stdout
            samples[name].append(int(out) / 1e9)
    return {name: statistics.median(s) for name, s in samples.items()}


def bench_grading(rounds, class_sizes, work, steps_dir):
    """Grading steps/ as root and as nobody, alternated; then each class size."""
    work = Path(work)
    os.chmod(work, 0o755)
    out = work / "out"
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)  # mkdir's mode is cut by the umask
    commands = [Command("steps_root", as_mode(grader("--target", str(steps_dir)), None), ROOT),
                Command("steps_user", as_mode(grader("--target", str(steps_dir)), NOBODY), ROOT)]
    for n in sorted(class_sizes):
        folder = work / f"class-{n}"
        build_class(folder, n, steps_dir)
        scores = out / f"scores-{n}.csv"
        # Fewer rounds for big classes (7, 3, 2 for 1, 10, 100 learners by
        # default): their spread is small beside their length.
        commands.append(Command(f"class{n}", as_mode(grader("--submissions", str(folder),
                                                             "--csv", str(scores)), None),
                                ROOT, rounds=max(2, min(rounds, 30 // n))))
    results = alternate(commands, rounds, "grading")
    for n in class_sizes:
        with open(out / f"scores-{n}.csv") as fh:
            rows = list(csv.DictReader(fh))
        results[f"class{n}"].full_marks = sum(r["total"] == r["out_of"] for r in rows)
    return results


def direct_script(steps_dir, work):
    """The eight programs run directly, one after another, each given the
    commands the witness runs for its step: what grading steps/ is set against."""
    lines = ["#!/bin/sh", "set -e"]
    for nn in STEP_NAMES:
        script = "; ".join(ARTICLE_COMMANDS[nn])
        lines.append(f"{shlex.quote(os.path.realpath(PYTHON))} -S {shlex.quote(step_program(nn, steps_dir))} "
                     f"/bin/dash -c {shlex.quote(script)} >/dev/null 2>&1")
    path = Path(work) / "direct.sh"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return str(path)


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def cpu_of(argv, cwd=ROOT):
    """CPU seconds of a command and of every process it starts: counted by a
    cpuacct cgroup of its own where there is one (the grader's runs are forked
    by its launcher, which never waits for them), else by rusage."""
    if (CPUACCT / "cpuacct.usage").exists():
        group = CPUACCT / f"nskit-bench-{os.getpid()}-{os.urandom(4).hex()}"
        group.mkdir()
        try:
            subprocess.run(["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh", *argv],
                           cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return int((group / "cpuacct.usage").read_text()) / 1e9
        finally:
            for _ in range(100):  # until the last of its processes has been reaped
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def bench_witness(rounds, work, steps_dir):
    """Grading steps/ beside the same programs run directly with the witness's
    commands (wall, alternated); and per graded run the CPU beyond the
    program: grading's CPU, less the direct runs' and the grader's own start."""
    direct = direct_script(steps_dir, work)
    commands = [Command("graded", grader("--target", str(steps_dir)), ROOT),
                Command("direct", [direct], ROOT)]
    timed = alternate(commands, rounds, "witness")
    start = [sys.executable, "-c", "import conformance.cli"]
    cpu = {key: [] for key in ("graded", "direct", "start")}
    for _ in range(max(3, rounds)):
        cpu["graded"].append(cpu_of(grader("--target", str(steps_dir))))
        cpu["direct"].append(cpu_of([direct]))
        cpu["start"].append(cpu_of(start))
    med = {key: statistics.median(v) for key, v in cpu.items()}
    per_run = (med["graded"] - med["direct"] - med["start"]) / len(STEP_NAMES)
    return {"timed": timed, "cpu": med, "per_run_ms": per_run * 1000}


VM_CLASS = 3  # learners graded at once: the marginal cost of one more


def bench_vm(work, steps_dir):
    """Grading inside a throwaway VM, once each, in each VM that can start
    here (User-mode Linux, QEMU: a TCG boot is half a minute): a boot alone,
    steps/, and a class (one UML per core; one QEMU). {kind: {"skipped": why}} where one cannot."""
    folder = Path(work, "vm-class")
    build_class(folder, VM_CLASS, steps_dir)
    out = {}
    for kind, machine in (("uml", vm.UML), ("qemu", vm.Machine)):
        try:
            found = machine.find()
        except vm.NoVM as error:
            out[kind] = {"skipped": str(error)}
            continue
        shared = Path(work, f"vm-shared-{kind}")
        shared.mkdir()
        started = time.monotonic()
        how = found.run("true", shared)
        out[kind] = {"how": how, "boot": time.monotonic() - started}
        for key, argv in (("steps", ["--target", str(steps_dir)]),
                          ("class", ["--submissions", str(folder), "--csv", str(shared / "s.csv")])):
            started, cpu = time.monotonic(), _children_cpu()
            done = subprocess.run(grader(*argv, "--vm", "always", "--vm-kind", kind), cwd=ROOT,
                                  capture_output=True, text=True)
            out[kind][key] = time.monotonic() - started
            # The whole VM is waited for: its CPU is what a quiet machine would take.
            out[kind][f"{key}_cpu"] = _children_cpu() - cpu
            out[kind][f"{key}_exit"] = done.returncode
        with open(shared / "s.csv") as fh:
            out[kind]["full_marks"] = sum(r["total"] == r["out_of"] for r in csv.DictReader(fh))
    return out


def _children_cpu():
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


# -- the report ---------------------------------------------------------------------------

def machine():
    def first(path, prefix):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(prefix):
                    return line.split("=", 1)[-1].split(":", 1)[-1].strip().strip('"')
        except OSError:
            pass
        return "?"
    def version(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "?"
    return {
        "os": first("/etc/os-release", "PRETTY_NAME="),
        "kernel": platform.release(),
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "python": platform.python_version() + f" ({os.path.realpath(PYTHON)})",
        "gcc": version(["gcc", "--version"]),
        "unshare": version(["unshare", "--version"]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def ms(seconds):
    return round(seconds * 1000, 1)


def tables(startup, kernel, grading, class_sizes, witness=None, in_vm=None):
    """The tables shown (GitHub markdown), by part, and the targets."""
    from tabulate import tabulate
    shown, targets = {}, []
    fmt = dict(tablefmt="github", disable_numparse=True)
    if startup:
        passed = startup["pass"].median
        rows = []
        for nn in STEP_NAMES:
            py, c = startup[f"py{nn}"].median, startup[f"c{nn}"].median
            un = startup[f"unshare{nn}"].median
            rows.append([f"{nn}_{STEP_NAMES[nn]}.py", ms(py), f"{py / passed:.2f} ×",
                         ms(py - passed), ms(c), f"{py / c:.1f} ×", ms(un), f"{py / un:.1f} ×"])
        shown["startup"] = tabulate(rows, headers=[
            "step (… true)", "python step ms", f"÷ python -c pass ({ms(passed)} ms)",
            "kit adds ms", "C clone ms", "÷ C", "unshare ms", "÷ unshare"], **fmt)
        worst = max(startup[f"py{nn}"].median / passed for nn in STEP_NAMES)
        targets.append(["step ÷ python -c pass (worst step)", f"≤ {STEP_RATIO_MAX} ×",
                        f"{worst:.2f} ×", "met" if worst <= STEP_RATIO_MAX else "MISSED"])
    if kernel:
        none = kernel["none"]
        rows = [["clone + wait, no flag", round(none * 1e6), "—"]]
        # Below zero is noise: the flag costs less than the batches vary.
        rows += [[f"CLONE_NEW{'NS' if n == 'mnt' else n.upper()}", round(kernel[n] * 1e6),
                  max(0, round((kernel[n] - none) * 1e6)) or "≈ 0"] for n in NAMESPACES]
        shown["namespaces"] = tabulate(rows, headers=[
            "one namespace alone (C)", "µs per clone + wait", "the namespace adds µs"], **fmt)
    if grading:
        root, user = grading["steps_root"].median, grading["steps_user"].median
        rows = [["--target steps/ (8 programs), as root", f"{root:.2f}", "",
                 grading["steps_root"].summary()["runs"]],
                ["--target steps/ (8 programs), as uid 65534", f"{user:.2f}",
                 f"{user / root:.2f} × root", grading["steps_user"].summary()["runs"]]]
        for n in sorted(class_sizes):
            c = grading[f"class{n}"]
            rows.append([f"--submissions, {n} learner{'s' if n > 1 else ''}", f"{c.median:.2f}",
                         f"{c.median / n:.2f} s per learner ({c.full_marks}/{n} full marks)",
                         c.summary()["runs"]])
        shown["grading"] = tabulate(rows, headers=["grading", "seconds (median)", "", "runs"], **fmt)
        for mode, s in (("root", root), ("uid 65534", user)):
            targets.append([f"grading steps/ as {mode}",
                            f"≤ {GRADE_STEPS_MAX:g} s (aim {GRADE_STEPS_AIM:g})", f"{s:.2f} s",
                            "met" if s <= GRADE_STEPS_MAX else "MISSED"])
        if 100 in class_sizes:
            s = grading["class100"].median
            targets.append(["grading 100 learners", f"≤ {CLASS_100_MAX:g} s", f"{s:.1f} s",
                            "met" if s <= CLASS_100_MAX else "MISSED"])
    if witness:
        graded, direct = witness["timed"]["graded"].median, witness["timed"]["direct"].median
        cpu = witness["cpu"]
        shown["witness"] = tabulate([
            ["grading steps/ (8 programs, 2 at a time)", f"{graded:.2f}", f"{1000 * cpu['graded']:.0f}"],
            ["the 8 programs run directly with the witness's commands", f"{direct:.2f}",
             f"{1000 * cpu['direct']:.0f}"],
            ["the grader's own start (import)", "", f"{1000 * cpu['start']:.0f}"],
            ["CPU per graded run beyond its program", "", f"{witness['per_run_ms']:.1f}"],
        ], headers=["", "seconds (median)", "CPU ms (median)"], **fmt)
        ratio = graded / direct
        targets.append(["grading steps/ ÷ running them directly with the witness",
                        f"≤ {WITNESS_RATIO_AIM} ×", f"{ratio:.2f} ×",
                        "met" if ratio <= WITNESS_RATIO_AIM else "MISSED"])
        targets.append(["CPU per graded run beyond its program", f"≤ {RUN_CPU_AIM_MS:g} ms",
                        f"{witness['per_run_ms']:.1f} ms",
                        "met" if witness["per_run_ms"] <= RUN_CPU_AIM_MS else "MISSED"])
    measured = {kind: m for kind, m in (in_vm or {}).items() if "skipped" not in m}
    if in_vm and not measured:
        shown["vm"] = "not measured: " + "; ".join(m["skipped"] for m in in_vm.values()) + "."
    elif measured:
        names = {"uml": "User-mode Linux", "qemu": "QEMU"}
        def cell(m, key):
            if key == "class":
                per = (m["class"] - m["steps"]) / (VM_CLASS - 1)
                return (f"{m['class']:.1f}, CPU {m['class_cpu']:.1f} ({per:.1f} s per learner "
                        f"more, {m['full_marks']}/{VM_CLASS} full marks)")
            if key == "steps":
                return f"{m['steps']:.1f}, CPU {m['steps_cpu']:.1f} " + (
                    "(full marks)" if m["steps_exit"] == 0 else f"(exit {m['steps_exit']})")
            return f"{m[key]:.1f}"
        rows = [[what, *(cell(m, key) for m in measured.values())] for key, what in (
            ("boot", "boot, run `true`, stop"),
            ("steps", "--target steps/ (8 programs), boot included"),
            ("class", f"--submissions, {VM_CLASS} learners, boot included"))]
        shown["vm"] = tabulate(rows, headers=["seconds", *(f"{names[k]} ({m['how']})"
                                                       for k, m in measured.items())], **fmt)
        for kind, m in measured.items():
            limit = 15 if m["how"] in ("KVM", "UML") else 60
            targets.append([f"steps/ inside {names[kind]} ({m['how']})", f"≤ {limit} s",
                            f"{m['steps']:.1f} s", "met" if m["steps"] <= limit else "MISSED"])
    if targets:
        shown["targets"] = tabulate(targets, headers=["target", "wanted", "measured", ""], **fmt)
    return shown


READMES = (ROOT / "README.md", BENCH / "README.md")
BEGIN, END = "<!-- bench:results -->", "<!-- /bench:results -->"


def results_markdown(report):
    """The README's 'Latest results': machine, load, and every table."""
    m = report["machine"]
    head = (f"{m['os']}, kernel {m['kernel']}, {m['cores']} cores ({m['cpu']}), "
            f"Python {m['python'].split(' ')[0]}, {m['gcc']}, {m['unshare']}; {m['date']}. "
            f"The bench took {report['seconds']:.0f} s; the load average was "
            f"{report['load_average']['before']} when it started.")
    body = "\n\n".join(f"{title}\n\n{table}" for title, table in report["tables"].items())
    return f"{head}\n\n{body}"


def update_readme(report, path, begin=BEGIN, end=END, body=None):
    """Put the latest tables (or body) between a README's markers."""
    text = Path(path).read_text()
    if begin not in text or end not in text:
        return False
    before, rest = text.split(begin, 1)
    _, after = rest.split(end, 1)
    body = results_markdown(report) if body is None else body
    Path(path).write_text(f"{before}{begin}\n{body}\n{end}{after}")
    return True


def in_frame(argv):
    """Re-run this script in a throwaway frame on a root of its own in memory,
    with the /mytmp that steps 02 and 07 need: nothing it makes reaches the
    machine's disk."""
    env = {**os.environ, FRAME_MARK: "1"}
    again = shlex.join([PYTHON, str(Path(__file__).resolve()), *argv])
    return subprocess.run([*FRAME, "bash", "-c", own_root(mytmp=True) + "exec " + again],
                          env=env).returncode


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="bench/bench.py", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=40, help="rounds of start-up timings (default 40)")
    p.add_argument("--grade-rounds", type=int, default=7,
                   help="rounds of grading steps/ and small classes (default 7)")
    p.add_argument("--class-sizes", default="1,10,100", help="learners per class (default 1,10,100)")
    p.add_argument("--clones", type=int, default=200, help="clones per namespace batch (default 200)")
    p.add_argument("--steps", default=str(STEPS_DIR), metavar="DIR",
                   help="the step programs to time and grade (default: the kit's steps/)")
    p.add_argument("--json", default=str(BENCH / "results.json"), help="where the results go")
    p.add_argument("--quick", action="store_true", help="a fast, rough pass: few rounds, no class of 100")
    p.add_argument("--parts", default="startup,namespaces,grading,witness,vm",
                   help="what to measure (default: startup,namespaces,grading,witness,vm; vm: "
                        "grading inside a throwaway VM, where one can start)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench: run it as root (it times namespaces that need CAP_SYS_ADMIN): sudo make bench")
    if os.environ.get(FRAME_MARK) != "1":
        return in_frame(argv)
    os.environ.pop(FRAME_MARK)
    if args.quick:
        args.rounds, args.grade_rounds, args.class_sizes = 8, 2, "1,10"
    steps_dir = Path(args.steps).resolve()
    class_sizes = [int(n) for n in args.class_sizes.split(",") if n.strip()]

    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"bench: the load average is {load:.2f}: other work on this machine will slow "
              f"what is timed", file=sys.stderr)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nskit-bench-") as work:
        clone = compile_clone(work)
        parts = set(args.parts.split(","))
        startup = bench_startup(clone, args.rounds, steps_dir) if "startup" in parts else None
        kernel = (bench_namespaces(clone, max(3, args.grade_rounds), args.clones)
                  if "namespaces" in parts else None)
        grading = bench_grading(args.grade_rounds, class_sizes, work, steps_dir) if "grading" in parts else None
        witness = bench_witness(args.grade_rounds, work, steps_dir) if "witness" in parts else None
        in_vm = bench_vm(work, steps_dir) if "vm" in parts and not args.quick else None
    took = time.monotonic() - started

    info = machine()
    shown = tables(startup, kernel, grading, class_sizes, witness, in_vm)
    print(f"nskit bench, {info['date']}: {info['os']}, kernel {info['kernel']}, "
          f"{info['cores']} cores ({info['cpu']}), Python {info['python']}, {info['gcc']}, "
          f"{info['unshare']}; took {took:.0f} s, load average {load:.2f}\n")
    titles = {
        "startup": f"Start-up: `CMD true`, spawn to exit, median of {args.rounds} alternated rounds",
        "namespaces": f"Kernel: one clone(2) + waitpid in C, median of {args.clones} clones, "
                      f"median of {max(3, args.grade_rounds)} batches",
        "grading": "Grading: the whole `python -m conformance` command, median",
        "witness": "The witness: grading beside running the programs directly, median",
        "vm": "Where the machine refuses namespaces: grading inside a throwaway VM, once each",
        "targets": "Targets",
    }
    for part, table in shown.items():
        print(f"{titles[part]}\n\n{table}\n")

    report = {
        "machine": info, "seconds": round(took, 1),
        "load_average": {"before": round(load, 2), "after": round(os.getloadavg()[0], 2)},
        "settings": {"rounds": args.rounds, "grade_rounds": args.grade_rounds,
                     "class_sizes": class_sizes, "clones": args.clones, "parts": sorted(parts),
                     "steps": str(steps_dir)},
        "startup": {k: c.summary() for k, c in (startup or {}).items()},
        "namespaces_seconds": kernel or {},
        "grading": {k: c.summary() for k, c in (grading or {}).items()},
        "witness": {"timed": {k: c.summary() for k, c in witness["timed"].items()},
                    "cpu_seconds": witness["cpu"], "cpu_ms_per_run": witness["per_run_ms"]}
        if witness else {},
        "vm": in_vm or {},
        "tables": {titles[part]: table for part, table in shown.items()},
    }
    Path(args.json).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwritten: {args.json}")
    # Only a full run of the kit's own steps is the README's latest table.
    full = {"startup", "namespaces", "grading", "witness"} <= parts and not args.quick and \
        steps_dir == STEPS_DIR and 100 in class_sizes
    # The VM's figures, measured on the kit's own steps, go to the README's VM section.
    if in_vm and any("skipped" not in m for m in in_vm.values()) and steps_dir == STEPS_DIR and update_readme(
            report, READMES[0], "<!-- vm:figures -->", "<!-- /vm:figures -->", shown["vm"]):
        print(f"updated: {READMES[0]} (the VM's figures)")
    if full and Path(args.json).resolve() == (BENCH / "results.json"):
        for readme in READMES:
            if update_readme(report, readme):
                print(f"updated: {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
