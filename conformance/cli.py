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
import signal
import sys
import time
from pathlib import Path

from . import course as courses
from . import report, shards, vm
from .catalog import ALL_STEPS, BEYOND_PART_1
from .commands import ran
from .discover import (NO_PROGRAMS, NOT_FOUND, TargetError, find_programs, find_submissions,
                       not_one_target)
from .grade import grade, programs_of
from .sandbox import Limits, Sandbox, Unavailable
from .text import shown

SIZE = re.compile(r"^(\d+)([kmg]?)i?b?$", re.I)


def size(text):
    match = SIZE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (try 512M or 1G)")
    return int(match.group(1)) * 1024 ** " kmg".index(match.group(2).lower() or " ")


def step(text):
    text = text.zfill(2)
    if text not in ALL_STEPS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a step: choose from {', '.join(ALL_STEPS)}")
    return text


def shard(text):
    try:
        shards.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error))
    return text


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, not the usage block: what is wrong, and where help is."""
        self.exit(2, f"nskit: {message}; see {ran().help}\n")


def parser():
    defaults = Limits()
    commands = ran()
    p = Parser(
        prog=commands.prog,
        description="Grade step programs (NN_<name>, for steps 00-07) by what they do, each "
                    "run in a throwaway host of its own.")
    what = p.add_mutually_exclusive_group(required=not commands.default_target)
    what.add_argument("--target", metavar="DIR", help="a folder of step programs: NN_<name>.py, "
                      "or any executable NN_<name>" + (
                          f" (default: {commands.default_target})" if commands.default_target
                          else ""))
    what.add_argument("--submissions", metavar="DIR", help="a folder with one subfolder of "
                      "step programs per learner: grade the whole class")
    p.add_argument("--step", metavar="NN", type=step, action="append",
                   help="grade only this step (repeatable); default: all of 00-07; 08 to 11, beyond "
                        "Part 1, only when asked for here or in a course file")
    p.add_argument("--jobs", metavar="N", type=int, default=os.cpu_count(),
                   help="runs at once (default: the number of cores, %(default)s)")
    p.add_argument("--timeout", metavar="S", type=float, default=defaults.timeout,
                   help="seconds a run may take before it fails as timed out (default %(default)g)")
    p.add_argument("--processes", metavar="N", type=int, default=defaults.processes,
                   help="processes a run may have at once (default %(default)s)")
    p.add_argument("--memory", metavar="SIZE", type=size, default=defaults.memory,
                   help="memory a run may use: the whole run's, in a cgroup, where the grader "
                        "may make one (as root, or as a user in the cgroup systemd delegates "
                        "with systemd-run --user); elsewhere memory is bounded per process "
                        "only: each process's address space (default 1G)")
    p.add_argument("--max-output", metavar="SIZE", type=size, default=defaults.output,
                   help="output kept of a run, its head and tail (default 1M)")
    p.add_argument("--propagation", choices=("shared", "private"), default=defaults.propagation,
                   help="how the run's host mounts /: shared, as systemd hosts do today, so a "
                        "step that makes a mount namespace without making its mounts private "
                        "leaks its mounts into the host and fails; private, as the article's "
                        "2014 hosts did (default %(default)s)")
    p.add_argument("--gradescope", metavar="FILE", help="write Gradescope's results.json")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    p.add_argument("--json", metavar="FILE", help="write every result, with what each run "
                   "printed, as JSON")
    p.add_argument("--csv", metavar="FILE", help="with --submissions: where the scores go "
                   "(default scores.csv)")
    p.add_argument("--gradescope-dir", metavar="OUT", help="with --submissions: write "
                   "OUT/<learner>/results.json")
    p.add_argument("--shard", metavar="K/N", type=shard, help="with --submissions: grade "
                   "only share K of N of the learners (the same learner always in the same "
                   "share), and write shard.json beside the scores for merge")
    p.add_argument("--course", metavar="FILE", help="a course file (TOML): the steps graded, "
                   "each step's points, each check's visibility in Gradescope; default: every "
                   "step, 10 points each")
    p.add_argument("--roster", metavar="FILE", help="with --submissions: a CSV with a folder "
                   "column, and id and email columns: scores.csv gets them, and a row for "
                   "every learner without a folder")
    p.add_argument("--prairielearn", metavar="FILE", help="with --target: write a "
                   "PrairieLearn external grader's results.json")
    p.add_argument("--classroom", metavar="FILE", help="with --target: write the result "
                   "GitHub Classroom's grading reporter reads, as JSON")
    p.add_argument("--vm", choices=("auto", "always", "never"),
                   default=os.environ.get("NSKIT_VM", "auto"),
                   help="grade inside a throwaway VM (User-mode Linux, else QEMU): auto where "
                        "this machine refuses namespaces, always, or never (default "
                        "%(default)s; NSKIT_VM sets it)")
    p.add_argument("--vm-kind", choices=vm.KINDS, default=os.environ.get("NSKIT_VM_KIND", "auto"),
                   help="which VM: uml (User-mode Linux), qemu, or auto: User-mode Linux where "
                        "it is installed and can run, else QEMU (default %(default)s; "
                        "NSKIT_VM_KIND sets it)")
    return p


def refusal():
    """Why user namespaces are refused here, as a clause for the sentence
    that gives the fixes (see main)."""
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


def _stop(signum, _frame):
    """A signal ends the grading as the end of a run would: every run and
    setup ended, the launcher too (Sandbox.close), and no traceback."""
    print(f"\nnskit: stopped by {signal.Signals(signum).name} before the grading ended.",
          file=sys.stderr)
    raise SystemExit(128 + signum)


def _as_a_command():
    """What main needs of the process it runs in: signals that end the
    grading in order, and an output that cannot fail on a name."""
    try:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _stop)
    except ValueError:
        pass  # not the main thread: its caller handles signals
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def main(argv=None):
    try:
        status = _main(argv)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader stopped reading (| head): what it wanted it has, the
        # reports are written; Python must not complain at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv=None):
    _as_a_command()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["merge"]:
        return shards.main(argv[1:], ran().merge)
    args = parser().parse_args(argv)
    commands = ran()
    if not (args.target or args.submissions):
        if not Path(commands.default_target).is_dir():
            print(f"nskit: there is no {commands.default_target}/ here to grade: "
                  f"{commands.exercise} writes it, or give --target DIR.", file=sys.stderr)
            return 2
        args.target = commands.default_target
    if args.submissions and (args.prairielearn or args.classroom):
        print("nskit: --prairielearn and --classroom grade one learner: use them with --target.",
              file=sys.stderr)
        return 2
    if args.roster and not args.submissions:
        print("nskit: --roster goes with --submissions.", file=sys.stderr)
        return 2
    if args.shard and not args.submissions:
        print("nskit: --shard grades a share of a class: use it with --submissions.",
              file=sys.stderr)
        return 2
    try:
        course = courses.load(args.course) if args.course else courses.Course()
        roster = courses.load_roster(args.roster) if args.roster else None
    except courses.CourseError as error:
        print(f"nskit: {error}", file=sys.stderr)
        return 2
    if args.course:
        asked = args.step
        args.step = [nn for nn in course.steps if not asked or nn in asked]
        if not args.step:
            print(f"nskit: the course file grades none of the steps asked for ({', '.join(asked)}): "
                  f"drop --step, or give a step its [points].", file=sys.stderr)
            return 2
    limits = Limits(timeout=args.timeout, processes=args.processes, memory=args.memory,
                    output=args.max_output, propagation=args.propagation)
    share, in_vm = _Share(), None
    try:
        if args.submissions:
            learners = find_submissions(args.submissions)
            if args.shard:
                share = _Share(args, learners, roster, course)
                learners, roster = share.learners, share.roster
            targets = {p.name: programs_of(p, args.step) for p in learners}
        else:
            if sentence := not_one_target(args.target):
                raise TargetError(sentence)
            targets = {args.target: find_programs(args.target, args.step)}
        if args.vm == "always":
            in_vm = ("asked for (--vm always)", "")
        else:
            sandbox = Sandbox(limits, args.jobs)
            sandbox.probe_available()
            if not sandbox.cgroups and not sandbox.id_maps.privileged:
                print("nskit: memory is bounded per process only: no cgroup for the whole run "
                      "here (run as root, or where systemd runs a user manager)", file=sys.stderr)
    except TargetError as error:
        print(f"nskit: {shown(error)}", file=sys.stderr)
        return 2
    except Unavailable as error:
        _not_graded(args, f"{error}; {refusal()}" if error.refused else str(error))
        if not error.refused:
            sentence = (f"nskit: the grader cannot build its throwaway host here ({error}): "
                        f"run it in the kit's container ({commands.shell}), or report this "
                        f"with the message above.")
        else:
            sentence = (f"nskit: cannot create the user namespace every graded run needs "
                        f"({error}; {refusal()}): run {commands.prog} with sudo, allow user "
                        f"namespaces (sysctl user.max_user_namespaces=15000, or on Ubuntu "
                        f"kernel.apparmor_restrict_unprivileged_userns=0), or use the "
                        f"container: {commands.shell}.")
        if args.vm == "never":
            print(sentence, file=sys.stderr)
            return 2
        in_vm = ("this machine refuses namespaces", sentence)
    if in_vm:
        results = _in_vm(args, limits, targets, *in_vm)
        if results is None:
            return 2
    else:
        progress = Progress(len(targets)) if args.submissions else None
        try:
            results = grade(targets, sandbox, on_done=progress)
        finally:
            sandbox.close()  # its launcher and setups end before the reports are written
        if progress:
            progress.close()

    if args.json:
        report.write_json(args.json, report.full(results, course))
    if args.submissions:
        return share.done(_report_class(args, results, course, roster))
    steps = results[args.target]
    base = Path(args.target).absolute()
    if args.gradescope:
        report.write_json(args.gradescope, report.gradescope(steps, course, base))
    if args.prairielearn:
        report.write_json(args.prairielearn, report.prairielearn(steps, course, base))
    if args.classroom:
        report.write_json(args.classroom, report.classroom(steps, course))
    if args.junit:
        report.write_junit(args.junit, results)
    print(report.table(steps, course))
    return 0 if all(s.passed for s in steps) else 1


LEARNERS_SENTENCE = ("this machine could not run the grader, so your work was not graded "
                     "and nothing was counted against you; your course staff have been told why.")


def _not_graded(args, why):
    """Where nothing could be graded, no platform records a score, not even a
    0: PrairieLearn reads "gradable": false; --gradescope writes nothing, as
    Gradescope records any score it reads, and shows a missing results.json
    as the autograder failing, for staff to regrade; the exit status 2 fails
    a workflow's step."""
    if args.prairielearn:
        report.write_json(args.prairielearn, report.prairielearn_not_graded(LEARNERS_SENTENCE, why))


class _Share:
    """With --shard K/N, this machine's share of the class: its learners, the
    roster's learners of the share, and the manifest merge reads, written
    once the share is graded (here or in a VM)."""

    def __init__(self, args=None, learners=(), roster=None, course=None):
        self.args, self.course = args, course
        if args is None:
            return
        self.k, self.n = shards.parse(args.shard)
        self.class_names = [p.name for p in learners]
        self.roster_names = None if roster is None else list(roster)
        self.learners = [p for p in learners if shards.shard_of(p.name, self.n) == self.k]
        self.roster = None if roster is None else {
            name: who for name, who in roster.items() if shards.shard_of(name, self.n) == self.k}

    def done(self, status):
        if self.args is None or status != 0:
            return status
        args = self.args
        csv_path = args.csv or "scores.csv"
        shards.write_manifest(
            Path(csv_path).parent, (self.k, self.n), self.class_names,
            [p.name for p in self.learners], self.roster_names, self.course, args.step or [],
            {"csv": csv_path, "json": args.json, "junit": args.junit,
             "gradescope_dir": args.gradescope_dir})
        print(f"shard {self.k}/{self.n}: {len(self.learners)} of the class's "
              f"{len(self.class_names)} learners; then {ran().merge} --out DIR "
              f"followed by every shard's folder")
        return status


def _in_vm(args, limits, targets, why, sentence):
    """The results of the same grading inside throwaway VMs, or None where
    no VM can grade (why is said)."""
    programs = sum(len(found) for found in targets.values())
    budget = vm.BOOT_BUDGET + programs * (args.timeout * vm.TCG_SLOWER + 10)
    # The VM's own cores, unless --jobs says otherwise.
    jobs = None if args.jobs == parser().get_default("jobs") else args.jobs
    try:
        return vm.grade(targets, limits, jobs, [args.target or args.submissions], why, budget,
                        args.vm_kind)
    except vm.NoVM as error:
        print(f"{sentence} A VM could grade here instead, but {error}." if sentence
              else f"nskit: {error}.", file=sys.stderr)
        return None


def learner_notes(results):
    """{label: note} for every learner none of whose steps could be graded
    normally for one cause: that cause, once (no work/, an empty folder, every
    run timed out), where each step would say it again."""
    notes = {}
    for label, steps in results.items():
        troubles = [s.trouble for s in steps]
        if not troubles or not all(troubles):
            continue
        if all(t.startswith(NOT_FOUND) for t in troubles):
            notes[label] = NO_PROGRAMS  # the same for every run, wherever the class folder is
        elif len(set(troubles)) == 1:
            notes[label] = troubles[0]
    return notes


def _report_class(args, results, course, roster):
    # Every report is written before anything is printed: a reader's pipe
    # that closes early (| head) must not cost the class its reports.
    csv_path = args.csv or "scores.csv"
    notes = learner_notes(results)
    report.write_scores_csv(csv_path, results, course, roster, notes)
    if args.gradescope_dir:
        for label, steps in results.items():
            folder = Path(args.gradescope_dir, label)
            folder.mkdir(parents=True, exist_ok=True)
            report.write_json(folder / "results.json", report.gradescope(
                steps, course, Path(args.submissions, label).absolute()))
    if args.junit:
        report.write_junit(args.junit, results)
    print(report.class_table(results, course))
    print(f"\nscores: {shown(csv_path)}")
    if roster is not None:
        missing = sorted(set(roster) - set(results))
        strangers = sorted(set(results) - set(roster))
        if missing:
            print(f"\nno submission (a row of zeros each): {', '.join(map(shown, missing))}")
        if strangers:
            print(f"\nfolders not on the roster: {', '.join(map(shown, strangers))}")
    trouble = [(label, None, note) for label, note in notes.items()]
    trouble += [(label, s.step, s.trouble) for label, steps in results.items()
                if label not in notes for s in steps if s.trouble]
    if trouble:
        print("\nnot graded normally:")
        for label, nn, problem in sorted(trouble, key=lambda t: (t[0], t[1] or "")):
            where = shown(label) + (f" {nn}" if nn else "")
            print(f"  {where}: {shown(problem, lines=True)}")
    return 0
