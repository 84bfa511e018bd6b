"""python -m conformance: grade step programs by what they do.

Exit status: 0 when every graded check passed, 1 when any failed, 2 when
the grader could not grade (a usage error, a target that is not a folder,
a machine that refuses user namespaces where no VM can start either: with
--vm auto, the default, the grading then runs inside a throwaway VM). With
--submissions, 0 once the whole class is graded, whatever the learners scored.
"""
import argparse
import os
import re
import sys
import time
from pathlib import Path

from . import report, vm
from .checks import STEPS
from .discover import TargetError, find_programs, find_submissions
from .grade import grade
from .sandbox import Limits, Sandbox, Unavailable

SIZE = re.compile(r"^(\d+)([kmg]?)i?b?$", re.I)


def size(text):
    match = SIZE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (try 512M or 1G)")
    return int(match.group(1)) * 1024 ** " kmg".index(match.group(2).lower() or " ")


def step(text):
    text = text.zfill(2)
    if text not in STEPS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a step: choose from {', '.join(STEPS)}")
    return text


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, not the usage block: what is wrong, and where help is."""
        self.exit(2, f"nskit: {message}; see python -m conformance --help\n")


def parser():
    defaults = Limits()
    p = Parser(
        prog="python -m conformance",
        description="Grade step programs (NN_<name>, for steps 00-07) by what they do, each "
                    "run in a throwaway host of its own.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--target", metavar="DIR", help="a folder of step programs: NN_<name>.py, "
                      "or any executable NN_<name>")
    what.add_argument("--submissions", metavar="DIR", help="a folder with one subfolder of "
                      "step programs per learner: grade the whole class")
    p.add_argument("--step", metavar="NN", type=step, action="append",
                   help="grade only this step (repeatable); default: all of 00-07")
    p.add_argument("--jobs", metavar="N", type=int, default=os.cpu_count(),
                   help="runs at once (default: the number of cores, %(default)s)")
    p.add_argument("--timeout", metavar="S", type=float, default=defaults.timeout,
                   help="seconds a run may take before it fails as timed out (default %(default)g)")
    p.add_argument("--processes", metavar="N", type=int, default=defaults.processes,
                   help="processes a run may have at once (default %(default)s)")
    p.add_argument("--memory", metavar="SIZE", type=size, default=defaults.memory,
                   help="memory a run may use: the whole run's, in a cgroup, where the grader "
                        "is root and the machine lets it make one; each process's address "
                        "space always (default 1G)")
    p.add_argument("--max-output", metavar="SIZE", type=size, default=defaults.output,
                   help="output kept of a run, its head and tail (default 1M)")
    p.add_argument("--gradescope", metavar="FILE", help="write Gradescope's results.json")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    p.add_argument("--json", metavar="FILE", help="write every result, with what each run "
                   "printed, as JSON")
    p.add_argument("--csv", metavar="FILE", help="with --submissions: where the scores go "
                   "(default scores.csv)")
    p.add_argument("--gradescope-dir", metavar="OUT", help="with --submissions: write "
                   "OUT/<learner>/results.json")
    p.add_argument("--vm", choices=("auto", "always", "never"),
                   default=os.environ.get("NSKIT_VM", "auto"),
                   help="grade inside a throwaway VM (QEMU, virtme-ng): auto where this machine "
                        "refuses namespaces, always, or never (default %(default)s; NSKIT_VM "
                        "sets it)")
    return p


def refusal():
    """One sentence on why user namespaces are refused here, and the fixes."""
    def read(path):
        try:
            return Path(path).read_text().strip()
        except OSError:
            return None
    if read("/proc/sys/user/max_user_namespaces") == "0":
        cause = "user.max_user_namespaces is 0"
    elif read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        cause = "AppArmor restricts unprivileged user namespaces (Ubuntu 24.04 and later)"
    elif read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        cause = "kernel.unprivileged_userns_clone is 0"
    else:
        cause = "a seccomp filter or security policy refuses them (Docker's default profile does)"
    return cause


class Progress:
    """learners done / total and the time taken, on a terminal only."""

    def __init__(self, total):
        self.total, self.done, self.start = total, 0, time.monotonic()
        self.live = sys.stderr.isatty()

    def __call__(self, _label):
        self.done += 1
        if self.live:
            print(f"\r{self.done}/{self.total} learners graded, "
                  f"{time.monotonic() - self.start:.1f} s", end="", file=sys.stderr, flush=True)

    def close(self):
        if self.live:
            print(file=sys.stderr)


def main(argv=None):
    args = parser().parse_args(argv)
    limits = Limits(timeout=args.timeout, processes=args.processes, memory=args.memory,
                    output=args.max_output)
    try:
        if args.submissions:
            learners = find_submissions(args.submissions)
            targets = {p.name: find_programs(p, args.step) for p in learners}
        else:
            targets = {args.target: find_programs(args.target, args.step)}
        if args.vm == "always":
            return _in_vm(argv, args, targets, "asked for (--vm always)", "")
        sandbox = Sandbox(limits, args.jobs)
        sandbox.probe_available()
    except TargetError as error:
        print(f"nskit: {error}", file=sys.stderr)
        return 2
    except Unavailable as error:
        if not error.refused:
            sentence = (f"nskit: the grader cannot build its throwaway host here ({error}): "
                        f"run it in the kit's container (make shell), or report this with the "
                        f"message above.")
        else:
            sentence = (f"nskit: cannot create the user namespace every graded run needs "
                        f"({error}; {refusal()}): run the grader with sudo, allow user "
                        f"namespaces (sysctl user.max_user_namespaces=15000, or on Ubuntu "
                        f"kernel.apparmor_restrict_unprivileged_userns=0), or use the "
                        f"container: make shell.")
        if args.vm == "never":
            print(sentence, file=sys.stderr)
            return 2
        return _in_vm(argv, args, targets, "this machine refuses namespaces", sentence)
    progress = Progress(len(targets)) if args.submissions else None
    results = grade(targets, sandbox, on_done=progress)
    if progress:
        progress.close()

    if args.json:
        report.write_json(args.json, report.full(results))
    if args.submissions:
        return _report_class(args, results)
    steps = results[args.target]
    print(report.table(steps))
    if args.gradescope:
        report.write_json(args.gradescope, report.gradescope(steps))
    if args.junit:
        Path(args.junit).write_text(report.junit(results))
    return 0 if all(s.passed for s in steps) else 1


def _in_vm(argv, args, targets, why, sentence):
    """The same grading inside a throwaway VM, or why no VM can start."""
    programs = sum(len(found) for found in targets.values())
    budget = vm.BOOT_BUDGET + programs * (args.timeout * vm.TCG_SLOWER + 10)
    try:
        return vm.grade(sys.argv[1:] if argv is None else argv, why, budget, args.timeout)
    except vm.NoVM as error:
        print(f"{sentence} A VM could grade here instead, but {error}." if sentence
              else f"nskit: {error}.", file=sys.stderr)
        return 2


def _report_class(args, results):
    print(report.class_table(results))
    csv_path = args.csv or "scores.csv"
    report.write_scores_csv(csv_path, results)
    print(f"\nscores: {csv_path}")
    if args.gradescope_dir:
        for label, steps in results.items():
            folder = Path(args.gradescope_dir, label)
            folder.mkdir(parents=True, exist_ok=True)
            report.write_json(folder / "results.json", report.gradescope(steps))
    if args.junit:
        Path(args.junit).write_text(report.junit(results))
    trouble = [(label, s.step, s.trouble) for label, steps in results.items()
               for s in steps if s.trouble]
    if trouble:
        print("\nnot graded normally:")
        for label, nn, problem in trouble:
            print(f"  {label} {nn}: {problem}")
    return 0
