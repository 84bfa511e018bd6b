"""What the grader asks a program to run: the witness (see witness.py).

The command is one path, /nskit/witness. It announces itself, waits until the
grader has read the kernel's facts about it, and only then runs the article's
commands for the step, so the learner reads what the article shows. Their
output is kept for the report and never graded: a program may print what it
likes and gains nothing by it.
"""
from .catalog import ALL_STEPS, ARTICLE_COMMANDS, BEYOND_PART_1
from .witness import DONE, READY, SHELL, WITNESS


def script(step):
    """The witness's script: first /nskit/ready, held by the grader until the
    witness has been seen, then the article's commands."""
    lines = [f"#!{SHELL}", READY]
    if step in BEYOND_PART_1:
        # The command is to die with its parent whatever it does: one that
        # ignores SIGTERM outlives a parent whose death signal is SIGTERM.
        lines.insert(1, "trap '' TERM")
    for command in ARTICLE_COMMANDS.get(step, []):
        lines.append(f'echo "$ {command}"; {command} 2>&1')
    if step in BEYOND_PART_1:
        lines.append(DONE)  # held while the grader kills the parent (witness.py)
    return ("\n".join(lines) + "\n").encode()


def command():
    """The CMD [ARGS...] a program under test is given."""
    return [WITNESS]


def files(step):
    """What the run's root must hold for the witness of this step."""
    assert step in ALL_STEPS
    out = {WITNESS: script(step), READY: f"#!{SHELL}\n".encode()}
    if step in BEYOND_PART_1:
        out[DONE] = out[READY]
    return out
