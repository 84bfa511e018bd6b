"""A course: which steps are graded, what each is worth, who sees which
check, and who the learners are.

    python -m conformance --submissions DIR --course course.toml --roster roster.csv

A course file is TOML:

    [points]        # the steps graded and what each is worth (default: 00-07, 10 each)
    00 = 5
    01 = 10
    07 = 20
    08 = 10         # beyond Part 1 (08 to 11): graded only when listed

    [visibility]    # Gradescope's: visible, hidden, after_due_date, after_published
    default = "visible"
    07 = "after_due_date"                                  # every check of a step
    "07 combined: leaves no process running" = "hidden"   # one check, by its name
    stdout = "hidden"   # the autograder's own output, on Gradescope (default: staff only)

A step's checks share its points equally; a check that failed or was skipped
earns nothing of its share.
"""
import csv
from dataclasses import dataclass, field

from .catalog import ALL_STEPS, STEP_NAMES
from .checks import checks_for

STEP_POINTS = 10
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
STDOUT = "stdout"     # [visibility]'s key for Gradescope's stdout_visibility


class CourseError(Exception):
    """A course or roster file the grader cannot use; the message says how to fix it."""


def check_name(step, title):
    return f"{step} {ALL_STEPS[step]}: {title}"


def status(check):
    """passed, failed or skipped: a check's own status where it has one."""
    return getattr(check, "status", None) or ("passed" if check.passed else "failed")


@dataclass
class Course:
    points: dict = field(default_factory=lambda: {nn: STEP_POINTS for nn in STEP_NAMES})
    visibility: dict = field(default_factory=dict)
    # Gradescope's stdout_visibility: who reads what run_autograder printed
    # (the table, and why a submission was not graded); staff alone by default.
    stdout_visibility: str = "hidden"

    @property
    def steps(self):
        return list(self.points)

    def step_points(self, step):
        return self.points.get(step, STEP_POINTS)

    def shares(self, step, count):
        """What each of a step's count checks is worth: equal shares, to the
        cent, that add up to the step's points exactly."""
        if not count:
            return []
        cents = round(self.step_points(step) * 100)
        base, extra = divmod(cents, count)
        return [(base + (i < extra)) / 100 for i in range(count)]

    def visibility_of(self, step, title):
        return (self.visibility.get(check_name(step, title)) or self.visibility.get(step)
                or self.visibility.get("default") or "visible")

    def checks(self, step_result):
        """[(check, points earned, points it is worth)] for one StepResult."""
        shares = self.shares(step_result.step, len(step_result.checks))
        return [(c, share if status(c) == "passed" else 0, share)
                for c, share in zip(step_result.checks, shares)]

    def earned(self, steps):
        """(points earned, points possible) over StepResults, to the cent."""
        got = out_of = 0
        for step in steps:
            for _, earned, worth in self.checks(step):
                got, out_of = got + earned, out_of + worth
        return round(got, 2), round(out_of, 2)


def number(value):
    """A number of points as people write it: 10, not 10.0."""
    return int(value) if float(value).is_integer() else round(value, 2)


def load(path):
    """The Course a course file describes."""
    # Imported here: most gradings have no course file, and it costs the
    # grader's start. Python 3.10 (Ubuntu 22.04, Gradescope's base image)
    # has no tomllib: tomli is the same parser.
    try:
        import tomllib
    except ModuleNotFoundError:
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as error:
        raise CourseError(f"cannot read the course file {path} ({error.strerror}): give "
                          f"--course a TOML file (see the README's \"Grading a course\").")
    except tomllib.TOMLDecodeError as error:
        raise CourseError(f"the course file {path} is not TOML ({error}): fix that line.")
    unknown = sorted(set(data) - {"points", "visibility"})
    if unknown:
        raise CourseError(f"the course file {path} has {', '.join(unknown)}: it may hold only "
                          f"[points] and [visibility].")
    points = {}
    for step, worth in (data.get("points") or {}).items():
        step = str(step).zfill(2)
        if step not in ALL_STEPS:
            raise CourseError(f"the course file {path} gives points to step {step}, which does "
                              f"not exist: the steps are {', '.join(ALL_STEPS)}.")
        if isinstance(worth, bool) or not isinstance(worth, (int, float)) or worth < 0:
            raise CourseError(f"the course file {path} gives step {step} {worth!r} points: "
                              f"give a number, 0 or more.")
        points[step] = worth
    if "points" in data and not points:
        raise CourseError(f"the course file {path} grades no step: list the steps graded "
                          f"under [points], e.g. 01 = 10.")
    names = {check_name(nn, c.title): nn for nn in ALL_STEPS for c in checks_for(nn)}
    visibility, stdout = {}, Course.stdout_visibility
    for key, seen_by in (data.get("visibility") or {}).items():
        if seen_by not in VISIBILITIES:
            raise CourseError(f"the course file {path} makes {key!r} {seen_by!r}: choose "
                              f"one of {', '.join(VISIBILITIES)}.")
        if key == STDOUT:
            stdout = seen_by
            continue
        if key != "default" and key.zfill(2) not in ALL_STEPS and key not in names:
            raise CourseError(f"the course file {path} sets the visibility of {key!r}, which "
                              f"is neither a step (e.g. 07), a check's name "
                              f"(e.g. {next(iter(names))!r}), nor {STDOUT}.")
        visibility[key.zfill(2) if key.zfill(2) in ALL_STEPS else key] = seen_by
    course = Course(visibility=visibility, stdout_visibility=stdout)
    if points:
        course.points = dict(sorted(points.items()))
    return course


# -- a roster ------------------------------------------------------------------------
# Column names as GitHub Classroom's and Gradescope's exports spell them.
FOLDER_COLUMNS = ("folder", "student_repository_name", "repository", "github_username",
                  "login", "username", "submission", "submission_id")
ID_COLUMNS = ("id", "roster_identifier", "identifier", "sid", "student_id", "student id",
              "github_id")
EMAIL_COLUMNS = ("email", "e-mail", "email address")


@dataclass
class Learner:
    folder: str
    id: str = ""
    email: str = ""


def _column(header, choices):
    lowered = {name.strip().lower(): name for name in header}
    return next((lowered[c] for c in choices if c in lowered), None)


def load_roster(path):
    """{folder: Learner} from a roster CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
            header = rows and list(rows[0]) or []
    except OSError as error:
        raise CourseError(f"cannot read the roster {path} ({error.strerror}): give --roster "
                          f"a CSV file with a folder column.")
    except (UnicodeDecodeError, csv.Error) as error:
        raise CourseError(f"the roster {path} is not a UTF-8 CSV file ({error}): export it "
                          f"again as CSV.")
    folder = _column(header, FOLDER_COLUMNS)
    if folder is None:
        raise CourseError(f"the roster {path} has no column naming each learner's folder: "
                          f"call one of its columns {' or '.join(FOLDER_COLUMNS[:3])}.")
    id_column, email = _column(header, ID_COLUMNS), _column(header, EMAIL_COLUMNS)
    roster = {}
    for row in rows:
        name = (row.get(folder) or "").strip()
        if name:
            roster[name] = Learner(name, (row.get(id_column) or "").strip() if id_column else "",
                                   (row.get(email) or "").strip() if email else "")
    return roster
