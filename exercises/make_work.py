"""Write the exercises into a folder (default work/): NN_<name>.py for every
step, each the skeleton with that step's task as its docstring.

    python -m exercises.make_work [DIR]
    python -m exercises.make_work --beyond [DIR]

--beyond writes the steps beyond Part 1 (08 to 11) instead, each your own
copy of its base step in DIR (or the skeleton, if you have none yet).
Files already in DIR are kept as they are: run it again to get back a file
you deleted, never to lose one you edited.
"""
import ast
import sys
from pathlib import Path

from conformance.catalog import BASE_STEP, BEYOND_PART_1
from conformance.catalog import STEP_NAMES
from conformance.commands import ran

from .tasks import TASKS, docstring, file_name

ROOT = Path(__file__).resolve().parent.parent
SKELETON = ROOT / "skeleton" / "skeleton.py"


class WorkError(Exception):
    """A folder the exercises cannot go into; the message says what to do."""


def with_docstring(source, text):
    """source with its module docstring replaced by text, every other byte kept."""
    node = ast.parse(source).body[0]
    if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)):
        raise WorkError(f"{SKELETON} has no module docstring to replace: restore it from git.")
    lines = source.splitlines(keepends=True)
    # ast counts lines from 1; the docstring ends its line (nothing else follows it).
    return "".join(lines[:node.lineno - 1] + [f'"""{text}"""\n'] + lines[node.end_lineno:])


def exercise(nn, skeleton):
    return skeleton if nn not in TASKS else with_docstring(skeleton, docstring(nn, file_name(nn)))


def beyond_source(nn, folder, skeleton):
    """The learner's own base step for nn, if it is there and has a
    docstring to replace; the skeleton otherwise."""
    try:
        own = (folder / file_name(BASE_STEP[nn])).read_text()
        return with_docstring(own, docstring(nn, file_name(nn)))
    except (OSError, SyntaxError, ValueError, IndexError, WorkError):
        return with_docstring(skeleton, docstring(nn, file_name(nn)))


def make_work(folder, beyond=False):
    """Write every missing exercise into folder (with beyond, those of the
    steps beyond Part 1); returns (written, kept) file names."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise WorkError(f"{folder} is a file, not a folder: move it away, or give make_work "
                        f"another folder.")
    try:
        skeleton = SKELETON.read_text()
    except OSError as error:
        raise WorkError(f"cannot read {SKELETON} ({error.strerror}): restore it with "
                        f"git checkout skeleton/skeleton.py.") from None
    folder.mkdir(parents=True, exist_ok=True)
    written, kept = [], []
    for nn in BEYOND_PART_1 if beyond else STEP_NAMES:
        path = folder / file_name(nn)
        source = beyond_source(nn, folder, skeleton) if beyond else exercise(nn, skeleton)
        try:
            with open(path, "x") as fh:       # "x": never overwrite
                fh.write(source)
            written.append(path.name)
        except FileExistsError:
            kept.append(path.name)
    return written, kept


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    beyond = args[:1] == ["--beyond"]
    args = args[1:] if beyond else args
    if len(args) > 1 or any(a.startswith("-") for a in args):
        # Only this module's own command line gets here: make and nskit pass a folder.
        print("usage: python -m exercises.make_work [--beyond] [DIR]", file=sys.stderr)
        return 2
    folder = Path(args[0] if args else "work")
    try:
        written, kept = make_work(folder, beyond)
    except WorkError as error:
        print(f"nskit: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"nskit: cannot write the exercises into {folder} ({error.strerror}): "
              f"choose a folder you can write to.", file=sys.stderr)
        return 2
    if written:
        print(f"{folder}/: wrote {', '.join(written)}")
    if kept:
        print(f"{folder}/: kept as they were: {', '.join(kept)}")
    if beyond:
        print(f"Next: open {folder}/{file_name('08')} and do what its docstring asks.")
    else:
        print(f"Next: open {folder}/{file_name('01')}, do what its docstring asks, "
              f"then {ran().grade_step('01', folder)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
