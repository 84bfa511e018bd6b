"""Grading: run each program once in a throwaway host, then judge every check
of its step against what came back."""
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import probe
from .discover import Program, c_argv, compile_error, compiler, find_programs
from .catalog import ALL_STEPS, BEYOND_PART_1, OWN_ROOT, STEP_NAMES
from .journal import Watched
from .checks import NOT_RUN, Evidence, checks_for, verdicts
from .sandbox import Request, Sandbox
from .scheduler import unobserved

# A .py program runs with the grader's own interpreter, from outside its venv,
# and without site (-S): the steps use the standard library only, and the .pth
# files a machine's site-packages may carry cost a run tens of milliseconds.
# The base interpreter: a venv made with --copies holds a copy of it that no
# run can reach.
INTERPRETER = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
PREFIX = str(Path(sys.base_prefix).resolve())
PROGRAM_DIR = "/nskit/program"


@dataclass
class CheckResult:
    step: str
    title: str
    passed: bool
    seen: str
    hint: str
    status: str = None        # "passed", "failed" or "skipped" (see checks.verdicts)

    def __post_init__(self):
        if self.status is None:
            self.status = "passed" if self.passed else "failed"

    @property
    def name(self):
        return f"{self.step} {ALL_STEPS[self.step]}: {self.title}"


@dataclass
class StepResult:
    step: str
    program: str              # its path, or None when there was none to run
    checks: list = field(default_factory=list)
    output: str = ""          # what the program printed (head and tail)
    seconds: float = 0.0
    problem: str = None       # why it was not graded normally: missing, timed out, ...

    @property
    def passed(self):
        return all(c.passed for c in self.checks)

    @property
    def trouble(self):
        """Why it was not graded normally: not run (missing, timed out), or
        its command never ran (a crash, a syntax error); None otherwise."""
        return self.problem or next((c.seen for c in self.checks if c.seen.startswith(NOT_RUN)), None)


def _failed_all(step, program, reason):
    """A program that could not run: its first check fails with the reason,
    once, and every other is skipped for it (one cause, one failure)."""
    first, *rest = checks_for(step)
    checks = [CheckResult(step, first.title, False, reason, ""),
              *[CheckResult(step, c.title, False, f"skipped: needs {first.title}", "", "skipped")
                for c in rest]]
    return StepResult(step, program, checks, problem=reason)


def programs_of(learner, steps=None):
    """A learner's Programs (discover.find_programs); where looking for them
    fails, each of their steps fails with why, and the class goes on."""
    try:
        return find_programs(learner, steps)
    except Exception as error:  # noqa: BLE001 - this learner fails, the class goes on
        return [Program(nn, problem=unobserved(error)) for nn in steps or STEP_NAMES]


def path_in_run(program):
    """Where a program sits in its run's host."""
    return f"{PROGRAM_DIR}/{program.path.name}"


def shown_path(path):
    """A program's path as its learner knows it: from the working folder when
    it is below it."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def request_for(program, label=None):
    """The run of one program: copied in at a private path of the run's host
    when its run starts, never through a link (see discover._trouble), so the
    grader holds no program's bytes and a run sees no other's path. Its
    command is the witness (probe.py)."""
    where = path_in_run(program)
    if program.is_c:
        argv = c_argv(compiler(), where)
    else:
        argv = [INTERPRETER, "-S", where] if program.is_python else [where]
    return Request(argv + probe.command(), reach=[PREFIX] if program.is_python else [],
                   files={where: str(program.path), **probe.files(program.step)},
                   tag=(label, program), parent_in_charge=program.step in BEYOND_PART_1,
                   pivot_root=program.step in OWN_ROOT)


def judge(program, result, propagation="shared"):
    """The StepResult for one finished run."""
    step, path = program.step, str(program.path)
    if result.error:
        return _failed_all(step, path, result.error)
    output = result.output.decode(errors="replace")
    # The compiler names the source where the run compiled it, not where it came from.
    if program.is_c and (error := compile_error(output, path_in_run(program))):
        return _failed_all(step, path, f"it does not compile: {error}")
    # A traceback names the program where the run ran it: name it as the learner does.
    shown = shown_path(program.path)
    output = output.replace(path_in_run(program), shown)
    if result.cut:
        output += f"\n[... {result.cut} bytes of output cut ...]"
    watch = result.witness or Watched()
    language = "python" if program.is_python else "c" if program.is_c else "other"
    evidence = Evidence(watch.facts, watch, result.before, result.after,
                        result.leftover, output, propagation, language, shown, watch.journal)
    checks = [CheckResult(step, title, v.status == "passed", v.seen, v.hint, v.status)
              for title, v in verdicts(step, evidence).items()]
    return StepResult(step, path, checks, output, result.seconds)


def grade(targets, sandbox=None, on_done=None):
    """Grade {label: [Program]} (one label per learner) in parallel.

    Returns {label: [StepResult]} in step order; on_done(label) is called
    each time one label's last step is judged.
    """
    sandbox = sandbox or Sandbox()
    results = {label: {} for label in targets}
    requests = []
    for label, programs in targets.items():
        for program in programs:
            if program.problem:
                results[label][program.step] = _failed_all(
                    program.step, program.path and str(program.path), program.problem)
                continue
            try:
                requests.append(request_for(program, label))
            except OSError as error:
                results[label][program.step] = _failed_all(
                    program.step, str(program.path), f"cannot read it: {error.strerror}")
            except Exception as error:  # noqa: BLE001 - this run fails, the class goes on
                results[label][program.step] = _failed_all(
                    program.step, str(program.path), unobserved(error))
    left = {label: len(programs) - len(results[label]) for label, programs in targets.items()}
    for label in [label for label, n in left.items() if n == 0]:
        if on_done:
            on_done(label)
    for result in sandbox.run(requests):
        label, program = result.request.tag
        try:
            judged = judge(program, result, sandbox.limits.propagation)
        except Exception as error:  # noqa: BLE001 - this run fails, the class goes on
            judged = _failed_all(program.step, str(program.path), unobserved(error))
        results[label][program.step] = judged
        left[label] -= 1
        if left[label] == 0 and on_done:
            on_done(label)
    return {label: [steps[s] for s in sorted(steps)] for label, steps in results.items()}
