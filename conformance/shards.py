"""A class graded across machines: `--shard K/N` grades a stable share of
the learners, and `merge` joins the shards' reports into the class's.

    python -m conformance --submissions DIR --shard K/N --csv shard-K/scores.csv ...
    python -m conformance merge --out DIR shard-1 shard-2 ... shard-N

A learner's shard comes from a hash of their folder's name (its bytes),
never from its position: the same learner is in the same shard whatever
else the class folder holds and in whatever order a machine lists it. Each
shard writes a manifest, shard.json, beside its scores.csv: which shard it
is, the whole class's names and those it graded, the course it was graded
with, and where its reports are. merge refuses shards that are not all N
of one class graded alike, or that overlap or miss a learner, with one
sentence; otherwise it writes the class's scores.csv, JSON, JUnit XML and
Gradescope folders as one run would have.
"""
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from . import report
from .text import shown, write_whole

MANIFEST = "shard.json"


class ShardError(Exception):
    """Shards that cannot be merged; the message says how to fix it."""


def parse(text):
    """(K, N) from "K/N", 1 <= K <= N."""
    k, slash, n = text.partition("/")
    if not (slash and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise ValueError(f"{text!r} is not a shard: give K/N, e.g. 2/3, with K from 1 to N")
    return int(k), int(n)


def shard_of(name, n):
    """The shard, 1 to n, of the learner whose folder is called name."""
    digest = hashlib.sha256(os.fsencode(name)).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def digest(names):
    return hashlib.sha256(b"\0".join(sorted(os.fsencode(n) for n in names))).hexdigest()


def write_manifest(folder, shard, learners, graded, roster, course, steps, reports):
    """shard.json in folder: (k, n), the class's learners' names, those this
    shard graded, a digest of the roster's names (or None), the course and
    steps graded, and {option: path} of the reports written."""
    folder = Path(folder)

    def where(path):
        path = Path(path).absolute()
        inside = folder.absolute() in path.parents
        return str(path.relative_to(folder.absolute()) if inside else path)

    manifest = {"shard": list(shard), "class": sorted(learners), "graded": list(graded),
                "roster": None if roster is None else digest(roster),
                "course": {"steps": list(steps), "points": course.points,
                           "visibility": course.visibility,
                           "stdout_visibility": course.stdout_visibility},
                "reports": {option: where(path) for option, path in reports.items() if path}}
    folder.mkdir(parents=True, exist_ok=True)
    # ASCII: a folder name that is not UTF-8 survives as an escape.
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


class Shard:
    def __init__(self, folder):
        self.folder = Path(folder)
        path = self.folder / MANIFEST if self.folder.is_dir() else self.folder
        try:
            self.manifest = json.loads(path.read_text())
            self.k, self.n = self.manifest["shard"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ShardError(f"{folder} holds no shard's {MANIFEST}: give merge the folders "
                             f"the shards wrote their scores.csv into, one per shard.")
        self.folder = path.parent
        self.graded = self.manifest["graded"]

    @property
    def name(self):
        return f"{self.k}/{self.n}"

    def report(self, option):
        where = self.manifest["reports"].get(option)
        if where is None:
            return None
        path = self.folder / where
        if not path.exists():
            raise ShardError(f"shard {self.name}'s {option.replace('_', '-')} report {path} is "
                             f"missing: copy the shard's folder whole, or grade it again.")
        return path


def check(shards):
    """Refuse shards that are not every shard of one class graded alike,
    that overlap, or that miss a learner."""
    first = shards[0]
    for shard in shards[1:]:
        for key, what in (("class", "class folders"), ("roster", "rosters"),
                          ("course", "course files or steps")):
            if shard.manifest[key] != first.manifest[key]:
                raise ShardError(f"shards {first.name} and {shard.name} were not graded alike "
                                 f"(their {what} differ): grade every shard with the same "
                                 f"command, --shard aside.")
        if shard.n != first.n:
            raise ShardError(f"shards {first.name} and {shard.name} split the class "
                             f"differently: grade every shard as K/{first.n}.")
        if set(shard.manifest["reports"]) != set(first.manifest["reports"]):
            raise ShardError(f"shards {first.name} and {shard.name} wrote different reports: "
                             f"give every shard the same --csv, --json, --junit and "
                             f"--gradescope-dir.")
    seen = {}
    for shard in shards:
        if shard.k in seen:
            raise ShardError(f"shard {shard.name} is given twice ({seen[shard.k].folder} and "
                             f"{shard.folder}): give each shard once.")
        seen[shard.k] = shard
    missing = [f"{k}/{first.n}" for k in range(1, first.n + 1) if k not in seen]
    if missing:
        raise ShardError(f"shard{'s' * (len(missing) > 1)} {', '.join(missing)} "
                         f"{'are' if len(missing) > 1 else 'is'} missing: merge all "
                         f"{first.n} shards of the class.")
    graded_by = {}
    for shard in shards:
        for label in shard.graded:
            if label in graded_by:
                raise ShardError(f"{label} was graded by shards {graded_by[label].name} and "
                                 f"{shard.name}: the shards overlap, so grade them again "
                                 f"with the same class folder.")
            if shard_of(label, shard.n) != shard.k:
                raise ShardError(f"shard {shard.name} graded {label}, who belongs to shard "
                                 f"{shard_of(label, shard.n)}/{shard.n}: grade it again.")
            graded_by[label] = shard
    missed = [label for label in first.manifest["class"] if label not in graded_by]
    if missed:
        who = ", ".join(f"{label} (shard {shard_of(label, first.n)}/{first.n})"
                        for label in missed[:5]) + (", ..." if len(missed) > 5 else "")
        raise ShardError(f"the shards miss {len(missed)} of the class's "
                         f"{len(first.manifest['class'])} learners: {who}; grade "
                         f"{'that shard' if len(missed) == 1 else 'those shards'} again.")
    # The class's order, as one run lists the class folder.
    return sorted(graded_by)


def merge(folders, out):
    """Join the shards in folders into out; returns {option: path} written."""
    shards = sorted((Shard(f) for f in folders), key=lambda s: s.k)
    if not shards:
        raise ShardError("no shards to merge: give merge every shard's folder.")
    learners = check(shards)
    out = Path(out)
    # Every shard's every report found before anything is written.
    reports = {option: [(shard, shard.report(option)) for shard in shards]
               for option in shards[0].manifest["reports"]}
    written = {}
    for option, where in shards[0].manifest["reports"].items():
        target = out / (Path(where).name if Path(where).is_absolute() else where)
        target.parent.mkdir(parents=True, exist_ok=True)
        JOIN[option](reports[option], learners, target)
        written[option] = target
    return written


def _join_csv(shards, learners, target):
    """One header; the graded learners in the class's order, then the
    roster's learners without a folder, as one run writes them."""
    header, rows, absent = None, {}, []
    for shard, path in shards:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            table = list(csv.reader(fh))
        if not table:
            raise ShardError(f"{path} is empty: grade shard {shard.name} again.")
        # A shard with no learners lists every step of the course: its
        # header is the class's only where it has rows.
        if len(table) > 1 and header is not None and table[0] != header:
            raise ShardError(f"{path} has other columns than the other shards' scores: "
                             f"grade every shard with the same steps and roster.")
        if len(table) > 1 or header is None:
            header = table[0]
        graded = {shown(label) for label in shard.graded}  # as scores.csv names them
        for row in table[1:]:
            if row and row[0] in graded:
                rows[row[0]] = row
            elif row:
                absent.append(row)
    text = io.StringIO()
    out = csv.writer(text)
    out.writerow(header)
    out.writerows([rows[shown(label)] for label in learners if shown(label) in rows])
    out.writerows(sorted(absent, key=lambda row: row[0]))
    write_whole(target, text.getvalue())


def _join_json(shards, learners, target):
    every = {}
    for _, path in shards:
        every.update(json.loads(Path(path).read_text(encoding="utf-8")))
    report.write_json(target, {shown(label): every[shown(label)] for label in learners
                               if shown(label) in every})


def _join_junit(shards, learners, target):
    # A shard's suites are its learners', in the order it graded them.
    suites = {}
    for shard, path in shards:
        suites.update(zip(shard.graded, ET.parse(path).getroot()))
    root = ET.Element("testsuites", name="nskit conformance")
    root.extend(suites[label] for label in learners if label in suites)
    ET.indent(root)
    write_whole(target, ET.tostring(root, encoding="unicode", xml_declaration=True))


def _join_gradescope(shards, learners, target):
    target.mkdir(parents=True, exist_ok=True)
    for shard, path in shards:
        for label in shard.graded:
            results = Path(path) / label / "results.json"
            if results.is_file() and not results.is_symlink():
                (target / label).mkdir(exist_ok=True)
                shutil.copyfile(results, target / label / "results.json")


# How each report a shard's manifest may name, by the grader's option, is joined.
JOIN = {"csv": _join_csv, "json": _join_json, "junit": _join_junit,
        "gradescope_dir": _join_gradescope}


def main(argv, prog):
    """prog --out DIR SHARD...: 0 once merged, 2 with one sentence otherwise."""
    if argv[:1] in (["-h"], ["--help"]):
        print(f"usage: {prog} --out DIR SHARD_FOLDER...\n\n{__doc__.split(chr(10) * 2)[2]}")
        return 0
    if len(argv) < 3 or argv[0] != "--out" or argv[1].startswith("-"):
        print(f"nskit: usage: {prog} --out DIR SHARD_FOLDER..., with every shard's folder "
              f"(where its shard.json is).", file=sys.stderr)
        return 2
    try:
        written = merge(argv[2:], argv[1])
    except ShardError as error:
        print(f"nskit: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"nskit: cannot merge the shards ({error.strerror}: {error.filename}): give "
              f"merge the shards' folders and a folder it may write to.", file=sys.stderr)
        return 2
    for option, path in written.items():
        print(f"{option.replace('_', '-')}: {path}")
    return 0
