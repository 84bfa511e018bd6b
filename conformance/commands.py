"""The command a person ran, so that every message names one that works where
they are: `make grade` in a checkout of the kit, `nskit grade` where the
package is installed, `python -m conformance` otherwise, and in a GitHub
Classroom template (no Makefile; the grader in .nskit/, pushed to be graded)
what works there. NSKIT_COMMAND says which: the Makefile's targets set it to
make, the nskit command to nskit, and `make classroom-template` to classroom.
"""
import os
from dataclasses import dataclass

VARIABLE = "NSKIT_COMMAND"
WORK = "work"


@dataclass(frozen=True)
class Commands:
    prog: str                 # the grader, as its usage line names it
    help: str                 # where the grader's options are listed
    grade: str                # grades work/, every step
    step: str                 # grades work/'s step {nn}
    target: str               # the same, for another folder: {target}
    demo: str = None          # a step's demo, {nn}
    exercise: str = None      # writes the exercises into work/
    shell: str = "make shell, in a checkout of the kit"   # the privileged container
    default_target: str = None   # what the grader grades when told nothing
    checkout: bool = False       # run in a checkout of the kit: steps/ is at hand
    first: str = None            # what must be done once before grading
    merge: str = "python -m conformance merge"   # joins a class's shards

    def grade_step(self, nn, folder=WORK):
        """The command that grades step nn of folder."""
        text = self.step.format(nn=nn)
        if str(folder).rstrip("/") != WORK:
            text = text.replace(self.grade, self.target.format(target=folder), 1)
        return text

    def grade_all(self, folder=WORK):
        return self.grade if str(folder).rstrip("/") == WORK else self.target.format(target=folder)


KINDS = {
    "make": Commands(prog="make grade", help="make help", grade="make grade",
                     step="make grade STEP={nn}", target="make grade TARGET={target}",
                     demo="make step-{nn}", exercise="make exercise", shell="make shell",
                     checkout=True),
    "nskit": Commands(prog="nskit grade", help="nskit grade --help", grade="nskit grade",
                      step="nskit grade --step {nn}", target="nskit grade --target {target}",
                      demo="nskit step {nn}", exercise="nskit exercise", default_target=WORK,
                      merge="nskit merge"),
    "python": Commands(prog="python -m conformance", help="python -m conformance --help",
                       grade="python -m conformance --target work",
                       step="python -m conformance --target work --step {nn}",
                       target="python -m conformance --target {target}",
                       demo="python -m demo {nn}", exercise="python -m exercises.make_work",
                       shell="make shell", checkout=True),
    # The template's workflow grades every push; on the learner's machine the
    # grader runs from its copy in .nskit/, once its requirements are installed.
    "classroom": Commands(prog="python -m conformance", help="python -m conformance --help",
                          grade="git push, then read the Actions run's summary",
                          step="cd .nskit && python3 -m conformance --target .. --step {nn}",
                          # A template's work/ is at its top, whatever it was written as.
                          target="cd .nskit && python3 -m conformance --target ..",
                          first="pip install -r .nskit/requirements.txt"),
}


def ran():
    """The Commands of what the person ran."""
    return KINDS.get(os.environ.get(VARIABLE, ""), KINDS["python"])
