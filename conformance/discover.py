"""Finding the programs to grade: a target is a folder of files named NN_<name>."""
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .checks import STEPS

STEP_FILE = re.compile(r"^(\d\d)_[\w.-]+$")


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


def _runnable(path):
    return path.suffix == ".py" or os.access(path, os.X_OK)


def _trouble(path):
    """Why a file that claims a step cannot be graded, or None."""
    if path.is_symlink():
        # The grader reads programs as root: a link could make it copy any
        # file of the machine into a run, and its contents into the results.
        return f"{path.name} is a symbolic link: submit the program itself"
    if not _runnable(path):
        return f"{path.name} is neither a .py file nor executable: chmod +x it"
    return None


def find_programs(target, steps=None):
    """One Program per step asked for (all steps by default), in step order."""
    target = Path(target)
    if not target.exists():
        raise TargetError(f"{target} does not exist: give --target a folder of step programs "
                          f"(e.g. --target steps).")
    if not target.is_dir():
        raise TargetError(f"{target} is not a folder: give --target the folder that holds "
                          f"your NN_name programs.")
    by_step = {}
    for path in sorted(target.iterdir()):
        match = STEP_FILE.match(path.name)
        if match and match.group(1) in STEPS and (path.is_file() or path.is_symlink()):
            by_step.setdefault(match.group(1), []).append(path)
    programs = []
    for step in steps or STEPS:
        found = by_step.get(step, [])
        runnable = [p for p in found if _runnable(p) and not p.is_symlink()]
        if len(runnable) == 1:
            programs.append(Program(step, runnable[0].absolute()))
        elif len(runnable) > 1:
            names = ", ".join(p.name for p in runnable)
            programs.append(Program(step, problem=f"more than one program claims step {step}: {names}"))
        elif found:
            programs.append(Program(step, found[0], problem=_trouble(found[0])))
        else:
            programs.append(Program(step, problem=(
                f"not found: no file named {step}_{STEPS[step]}.py (or {step}_<name>) in {target}")))
    return programs


def find_submissions(folder):
    """Every subfolder of a class's submissions folder, one learner each."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TargetError(f"{folder} is not a folder: give --submissions a folder with one "
                          f"subfolder per learner.")
    learners = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not learners:
        raise TargetError(f"{folder} has no subfolders: put each learner's programs in a "
                          f"subfolder of their own.")
    return learners
