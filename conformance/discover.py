"""Finding the programs to grade.

A target is a folder of files named NN_<name>. A learner's submission (a
folder, a repository, an unzipped upload) holds one: in its work/ first, then
at its top; where it holds a single folder and nothing else (an unzipped
archive), the same two places inside that folder. No other folder is
searched: the kit's own steps/, skeleton/ and tests/ hold NN_ files too, and
a learner's repository is a copy of the kit.
"""
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from .catalog import ALL_STEPS, STEP_NAMES, file_name
from .text import shown

# Any name after NN_: a name is bytes, and one that is not UTF-8 (03_u\xfft.py)
# claims its step all the same.
STEP_FILE = re.compile(r"(\d\d)_.+", re.S)
WORK = "work"
# What a copy of the kit holds besides work/: a submission with these and no
# step programs is a repository whose work/ never reached it.
KIT_MARKS = ("steps", "skeleton", "conformance", ".nskit", ".github")
NO_WORK = "no step programs in work/: commit work/ and push"
NOT_FOUND = "not found: "
# A learner none of whose steps is there: one note, where each step says which file it misses.
NO_PROGRAMS = "no step programs found: name each NN_<name>, e.g. 00_skeleton.py, in work/ or at the top"
# An archive's own clutter, beside the single folder it unpacks to.
ARCHIVE_CLUTTER = {"__MACOSX", ".DS_Store"}


class TargetError(Exception):
    """A target the grader cannot use; the message says how to fix it."""


@dataclass
class Program:
    step: str
    path: Path = None
    problem: str = None      # why it cannot be run; then path may be None

    @property
    def is_python(self):
        return self.path.suffix == ".py"

    @property
    def is_c(self):
        return self.path.suffix == ".c"


def _runnable(path):
    return path.suffix in (".py", ".c") or os.access(path, os.X_OK)


def _trouble(path):
    """Why a file that claims a step cannot be graded, or None."""
    if path.is_symlink():
        # The grader reads programs as root: a link could make it copy any
        # file of the machine into a run, and its contents into the results.
        return f"{shown(path.name)} is a symbolic link: submit the program itself"
    if not _runnable(path):
        return f"{shown(path.name)} is neither a .py file nor executable: chmod +x it"
    return None


def _real_dir(path):
    """A folder of its own, never one reached through a link: a learner's
    work/ linked to another learner's folder would grade that one."""
    return path.is_dir() and not path.is_symlink()


def _claims(folder):
    """{step: [paths]} of the files in folder named for a step."""
    by_step = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return by_step
    for path in entries:
        match = STEP_FILE.fullmatch(path.name)
        if match and match.group(1) in ALL_STEPS and (path.is_file() or path.is_symlink()):
            by_step.setdefault(match.group(1), []).append(path)
    return by_step


def _places(submission):
    """Where a submission's work may be, in the order looked at."""
    yield submission / WORK
    yield submission
    try:
        inside = [p for p in submission.iterdir() if p.name not in ARCHIVE_CLUTTER
                  and not p.name.startswith(".")]
    except OSError:
        return
    if len(inside) == 1 and _real_dir(inside[0]):
        yield inside[0] / WORK
        yield inside[0]


def find_work(submission):
    """The folder of a submission that holds its step programs, or None."""
    submission = Path(submission)
    if not submission.is_dir():
        return None
    # The submission itself may be a link the instructor made; what is
    # inside it is the learner's, and no link of theirs is followed.
    return next((p for p in _places(submission)
                 if (p == submission or _real_dir(p)) and _claims(p)), None)


def looks_like_the_kit(submission):
    folders = [submission, *[p for p in _places(submission) if p.name != WORK]]
    return any(_real_dir(f / mark) for f in folders for mark in KIT_MARKS)


def not_one_target(folder):
    """The sentence for a class folder given where one learner's folder
    belongs (--target): it holds no step programs, its subfolders do. None
    for anything else."""
    folder = Path(folder)
    if not folder.is_dir() or find_work(folder) or looks_like_the_kit(folder):
        return None
    try:
        learners = [p for p in folder.iterdir() if _real_dir(p) and find_work(p)]
    except OSError:
        return None
    if not learners:
        return None
    return (f"{shlex.quote(shown(folder))} holds no step programs, but {len(learners)} of its "
            f"folders do: to grade each as a learner, give it to --submissions "
            f"{shlex.quote(shown(folder))}.")


def not_a_class(folder):
    """The sentence for one repository of the kit given where a class belongs
    (--submissions): its steps/, conformance/ and Makefile are not learners.
    None for anything else."""
    folder = Path(folder)
    if all(_real_dir(folder / mark) for mark in ("steps", "conformance")) \
            and (folder / "Makefile").is_file():
        return (f"{shlex.quote(shown(folder))} is one repository of the kit, not a class of "
                f"learners' folders: grade it with --target {shlex.quote(shown(folder))}.")
    return None


def find_programs(target, steps=None, search=True):
    """One Program per step asked for (all steps by default), in step order.
    With search, the programs are looked for where a learner's work is (see
    find_work); otherwise at target's top only."""
    target = Path(target)
    if not target.exists():
        raise TargetError(f"{shown(target)} does not exist: give --target a folder of step programs "
                          f"(e.g. --target steps).")
    if not target.is_dir():
        raise TargetError(f"{shown(target)} is not a folder: give --target the folder that holds "
                          f"your NN_name programs.")
    found_in = (find_work(target) if search else None) or target
    by_step = _claims(found_in)
    if not by_step and search and looks_like_the_kit(target):
        return [Program(step, problem=NO_WORK) for step in steps or STEP_NAMES]
    programs = []
    for step in steps or STEP_NAMES:
        found = by_step.get(step, [])
        runnable = [p for p in found if _runnable(p) and not p.is_symlink()]
        if len(runnable) == 1 and runnable[0].suffix == ".c" and not compiler():
            programs.append(Program(step, runnable[0], problem=(
                f"{shown(runnable[0].name)} is C source and this machine has no C compiler (cc): "
                f"compile it first and submit the program")))
        elif len(runnable) == 1:
            programs.append(Program(step, runnable[0].absolute()))
        elif len(runnable) > 1:
            names = ", ".join(shown(p.name) for p in runnable)
            programs.append(Program(step, problem=f"more than one program claims step {step}: {names}"))
        elif found:
            programs.append(Program(step, found[0], problem=_trouble(found[0])))
        else:
            programs.append(Program(step, problem=(
                f"{NOT_FOUND}no file named {file_name(step)}.py (or {step}_<name>) in {shown(found_in)}")))
    return programs


def find_submissions(folder):
    """Every subfolder of a class's submissions folder, one learner each, by
    its absolute path: what is said of a learner's files is then said
    relative to their folder, never to where the grader was run."""
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise TargetError(f"{shown(folder)} is not a folder: give --submissions a folder with one "
                          f"subfolder per learner.")
    if sentence := not_a_class(folder):
        raise TargetError(sentence)
    learners = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not learners:
        raise TargetError(f"{shown(folder)} has no subfolders: put each learner's programs in a "
                          f"subfolder of their own.")
    return learners


# -- C programs ------------------------------------------------------------------
# A .c file is compiled inside its own run, by the machine's cc: the compiler
# then reads only what the run may read, never another learner's files or the
# grader's, and its binary never lands in the learner's folder.
BINARY = "/tmp/.nskit-program"
COMPILE_FAILED = "@@nskit-cc-failed"


def compiler():
    """The machine's C compiler, or None."""
    found = shutil.which("cc")
    return os.path.realpath(found) if found else None


def c_argv(cc, source):
    """A command that compiles source in the run and runs the result in its
    place with the arguments that follow; when it does not compile, it says
    COMPILE_FAILED and the compiler's first error."""
    script = (f'"$0" -O2 -o {BINARY} "$1" '
              f'2>/tmp/.nskit-cc || {{ echo {COMPILE_FAILED}; '
              f'grep -m1 "error" /tmp/.nskit-cc || head -n1 /tmp/.nskit-cc; exit 1; }}; '
              f'shift; exec {BINARY} "$@"')
    return ["/bin/sh", "-c", script, cc, str(source)]


def compile_error(output, source):
    """The compiler's first error from a run's output, or None when it compiled."""
    head, marker, rest = output.partition(COMPILE_FAILED + "\n")
    if marker != COMPILE_FAILED + "\n" or head.strip():
        return None
    first = (rest.strip().splitlines() or ["the compiler said nothing"])[0]
    return first.replace(f"{source}:", f"{Path(source).name}:")[:300]
