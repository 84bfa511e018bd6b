"""Build the Gradescope autograder zip:

    python -m gradescope.bundle OUT.zip [--course FILE]

At the zip's root: setup.sh and run_autograder, as Gradescope wants them;
below nskit/: the grader (conformance/, gradescope/), its pinned
requirements, step 00 as reference/00_skeleton.py, and the course file as
course.toml when one is given (checked first: a wrong one is refused here,
not found out by the first learner). The zip is the same byte for byte for
the same sources.
"""
import sys
import zipfile
from pathlib import Path

from conformance.course import CourseError, load

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
AT_ROOT = ["setup.sh", "run_autograder"]
PACKAGES = ["conformance", "gradescope"]
WHEN = (2024, 1, 1, 0, 0, 0)


def members(course=None):
    """(name in the zip, file, executable?) for everything the bundle holds."""
    if course:
        yield "nskit/course.toml", Path(course), False
    yield from ((name, HERE / name, True) for name in AT_ROOT)
    yield "nskit/requirements.txt", ROOT / "requirements.txt", False
    yield "nskit/requirements-vm.txt", ROOT / "requirements-vm.txt", False
    # A program known to pass, graded first to tell whether grading works here.
    yield "nskit/reference/00_skeleton.py", ROOT / "steps" / "00_skeleton.py", False
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            yield f"nskit/{package}/{path.name}", path, False


def build(out, course=None):
    if course:
        load(course)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path, executable in members(course):
            info = zipfile.ZipInfo(name, WHEN)
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return out


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    course = None
    if len(args) == 3 and args[1] == "--course":
        args, course = args[:1], args[2]
    if len(args) != 1 or not args[0].endswith(".zip"):
        print("usage: python -m gradescope.bundle OUT.zip [--course FILE]", file=sys.stderr)
        return 2
    try:
        out = build(args[0], course)
    except CourseError as error:
        print(f"nskit: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"nskit: cannot write {args[0]} ({error.strerror}): choose a folder you can "
              f"write to.", file=sys.stderr)
        return 2
    print(f"{out}: upload it as the autograder of a Gradescope programming assignment"
          + (f", with the course file {course}." if course else "."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
