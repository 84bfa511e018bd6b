"""The `nskit` command: the Makefile's targets for an installed kit.

    nskit step 04                           make step-04
    nskit diff 04                           make diff-04
    nskit exercise [--beyond] [DIR]         make exercise, make exercise-beyond [WORK=DIR]
    nskit grade [--target DIR] ...          make grade (work/ by default), with every option of
                                            python -m conformance
    nskit merge --out DIR SHARD...          python -m conformance merge: a class graded in shards
    nskit gradescope-bundle [ZIP] [--course FILE]   make gradescope-bundle [COURSE=FILE]
"""
import argparse
import os
import subprocess
import sys
from pathlib import Path

from conformance import commands
from conformance.catalog import ALL_STEPS, BASE_STEP, file_name

# Where the installed kit keeps its files: beside its packages, as in a checkout.
ROOT = Path(__file__).resolve().parent.parent
STEPS_DIR = ROOT / "steps"
BUNDLE = "build/nskit-gradescope.zip"


def step_number(text):
    nn = text.zfill(2)
    if nn not in ALL_STEPS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a step: choose from {', '.join(ALL_STEPS)}")
    return nn


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, not the usage block: what is wrong, and where help is."""
        self.exit(2, f"nskit: {message}; see nskit --help\n")


def parser():
    p = Parser(prog="nskit", description="The namespace half of `docker run`, step by step "
               "beside Michael Crosby's article, and a grader for anyone's step programs. "
               "Each command is a target of the kit's Makefile.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    s = sub.add_parser("step", help="the article's commands for a step, on the host and through it")
    every = f"the step: {', '.join(ALL_STEPS)}"
    s.add_argument("nn", metavar="NN", type=step_number, help=every)
    d = sub.add_parser("diff", help="what a step changes in its base (the skeleton; 03 "
                       "for 08, 06 for 09, 09 for 10, 10 for 11)")
    d.add_argument("nn", metavar="NN", type=step_number, help=every)
    e = sub.add_parser("exercise", help="write the tasks into a folder (files there are kept)")
    e.add_argument("--beyond", action="store_true",
                   help="08 to 11, each from your own copy of its base step in the folder")
    e.add_argument("folder", metavar="DIR", nargs="?", default="work",
                   help="where (default: work)")
    sub.add_parser("grade", add_help=False, prefix_chars="\0",
                   help="grade step programs, work/ by default: nskit grade --help lists the "
                        "grader's options")
    sub.add_parser("merge", add_help=False, prefix_chars="\0",
                   help="join the reports of a class graded in shards (nskit grade --shard "
                        "K/N): nskit merge --out DIR SHARD...")
    b = sub.add_parser("gradescope-bundle", help="build the Gradescope autograder zip")
    b.add_argument("out", metavar="ZIP", nargs="?", default=BUNDLE,
                   help=f"where (default: {BUNDLE})")
    b.add_argument("--course", metavar="FILE",
                   help="a course file whose points and visibility the bundle bakes in")
    return p


def diff(nn):
    if nn == "00":
        print("00 is the skeleton itself, the article's skeleton.c: every later step is a "
              "copy of it. Next: nskit diff 01.")
        return 0
    base = BASE_STEP.get(nn, "00")
    # diff's exit 1 only means "they differ".
    done = subprocess.run(["diff", "-u", f"steps/{file_name(base)}.py",
                           f"steps/{file_name(nn)}.py"], cwd=ROOT)
    return 0 if done.returncode in (0, 1) else done.returncode


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # Every message, the grader's and the exercises', names nskit's commands.
    os.environ[commands.VARIABLE] = "nskit"
    if argv[:1] == ["grade"]:
        # Started as python -m conformance starts: in a scope systemd delegates
        # (an ordinary user's cgroup), its launcher forked before anything of a
        # learner is read (see conformance/__main__.py); imported only here,
        # as the other commands need none of the grader.
        from conformance.cgroups import in_a_delegated_scope
        from conformance.launcher import start_early
        in_a_delegated_scope(["-m", "nskit", *argv])
        start_early()
    if argv[:1] in (["grade"], ["merge"]):
        # Everything after `grade` is the grader's own: its options, its --help.
        from conformance.cli import main as grade
        return grade(argv[1:] if argv[0] == "grade" else argv)
    args = parser().parse_args(argv)
    if args.command == "step":
        from demo.__main__ import main as demo
        return demo([args.nn])
    if args.command == "diff":
        return diff(args.nn)
    if args.command == "exercise":
        from exercises.make_work import main as make_work
        return make_work(["--beyond"] * args.beyond + [args.folder])
    from gradescope.bundle import main as bundle
    if not (ROOT / "requirements.txt").exists():
        print("nskit: the Gradescope bundle is built from a checkout of the kit, which this "
              "installed copy is not: run `make gradescope-bundle` in a clone.", file=sys.stderr)
        return 2
    return bundle([args.out] + (["--course", args.course] if args.course else []))


if __name__ == "__main__":
    sys.exit(main())
