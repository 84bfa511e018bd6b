"""What `make step-NN` teaches beyond the steps' own output: the article's
in-between stages of 02 and 05, the namespace table that ends every demo
(and its twin in steps/README.md), the host side as an ordinary user sees
it, the demos of 08 and 09, the article's sections, `make diff-NN` and the
exercises beyond Part 1.

Every demo runs in a throwaway frame on a root of its own (helpers.in_frame's
own_root), as tests/test_make.py's do.
"""
import re
import shlex
import subprocess

import pytest

from helpers import (ARTICLE, DEMO_AFTER, DEMO_FRAME, FRAME_HOSTNAME, IS_ROOT, NS_IDS, PYTHON,
                     ROOT, SECOND, demo as framed_demo, in_frame, needs_articles, on_demo,
                     on_demos, sections as marked_sections, sleepers, step_path)
from tools.frame import expose_to_users

from conformance.catalog import (ALL_STEPS, BASE_STEP, NAMESPACES,  # noqa: E402
                                NEW_NAMESPACES)
from demo import rootfs, scenes  # noqa: E402
from tools import ns_tables  # noqa: E402

USER = 65534
ESC = "\033["


@pytest.fixture(autouse=True)
def as_a_reader_types_it(monkeypatch):
    for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def demo(nn, user=None, env="", prefix=""):
    """`make step-NN` in a frame (helpers.demo, which test_make reads too),
    after the frame's own namespace ids; it ran to its end."""
    result = framed_demo(nn, user, env, prefix)
    assert "@@exit 0" in result.out, result
    return result


def sections(out):
    """{heading: body} for the demo's `── heading` lines."""
    return marked_sections(out.split("\n@@exit")[0], prefix="── ")


def frame_ids(out):
    lines = out.split("@@frame\n", 1)[1].splitlines()[:len(NAMESPACES)]
    return {line.split(":")[0]: line for line in lines}


def table(out):
    """The namespace table: {ns: (host's, command's, verdict)}."""
    body = [v for k, v in sections(out).items() if k.startswith("namespaces:")][0]
    rows = {}
    for line in body.splitlines()[1:]:
        cells = re.sub(r"\033\[[0-9;]*m", "", line).split()
        if cells and cells[0] in NAMESPACES:
            rows[cells[0]] = (cells[1], cells[2], " ".join(cells[3:]))
    return rows


def processes(ps):
    return [line for line in ps.splitlines()[1:] if line.split()[1:2] and line.split()[1].isdigit()]


def is_make(process):
    """The demo's own `make step-NN`, as ps shows it (cut to the terminal's width)."""
    return re.search(r" \d+:\d\d make\b", process)


# The in-between stages: the flag alone, and "Nothing changed. Whaaat???".

ALONE = {"02": "through the skeleton with CLONE_NEWNS alone: mount",
         "03": "through the skeleton with CLONE_NEWUTS alone: hostname",
         "05": "through the skeleton with CLONE_NEWPID alone: ps aux"}


def check_mount_alone(seen, key=ALONE["02"]):
    stage, why = seen[key].rsplit("\n", 1)
    assert stage == seen["on the host: mount"], seen  # the host's mounts, all of them
    assert "Nothing changed" in why and "Whaaat???" in why and "/proc" in why


def check_ps_alone(seen, key=ALONE["05"]):
    stage, why = seen[key].rsplit("\n", 1)
    mine = [p for p in processes(stage) if is_make(p)]
    assert len(processes(stage)) > 1 and mine, seen  # the host's processes, make among them
    assert "WTF???" in why and "ps reads /proc" in why


def check_hostname_alone(seen, key=ALONE["03"]):
    stage, why = seen[key].rsplit("\n", 1)
    assert stage == seen["on the host: hostname"], seen  # inherited
    assert "The exact same output" in why and "sethostname" in why


IN_BETWEEN = {"02": check_mount_alone, "03": check_hostname_alone, "05": check_ps_alone}
FINISHED = {"02": "through steps/02_mount.py: mount", "03": "through steps/03_uts.py: hostname",
            "05": "through steps/05_pid.py: ps aux"}


@pytest.mark.parametrize("user", [None, USER], ids=["root", "user"])
@pytest.mark.parametrize("nn", on_demos("02", "03", "05"))
def test_in_between_stage_shows_the_host_then_the_finished_step(nn, user):
    seen = sections(demo(nn, user).out)
    IN_BETWEEN[nn](seen)
    heads = list(seen)
    assert heads.index(ALONE[nn]) < heads.index(FINISHED[nn])


@pytest.mark.parametrize("nn", on_demos("02", "03", "05"))
def test_in_between_check_rejects_the_finished_step(nn):
    """The finished step in the in-between's place fails the check: it sees
    the difference the in-between stage must not."""
    seen = sections(demo(nn).out)
    seen[FINISHED[nn]] += "\n" + seen[ALONE[nn]].rsplit("\n", 1)[1]
    with pytest.raises(AssertionError):
        IN_BETWEEN[nn](seen, key=FINISHED[nn])


@on_demo("02")
def test_step_02_runs_the_host_s_mount_after_the_step_as_the_article_does():
    seen = sections(demo("02").out)
    heads = list(seen)
    after = "on the host, after the step: mount"
    assert heads.index(FINISHED["02"]) < heads.index(after) < heads.index(
        "through steps/02_mount.py: ls /")
    assert "none on /mytmp type tmpfs" in seen[FINISHED["02"]]
    assert re.fullmatch(r"   … \d+ lines, none with /mytmp", seen[after]), seen[after]


@on_demo("03")
def test_step_03_shows_the_host_s_hostname_after_the_step():
    seen = sections(demo("03").out)
    assert seen[FINISHED["03"]] == "myhostname"
    after = seen["on the host, after the step: hostname"].splitlines()
    assert after[0] == FRAME_HOSTNAME and after[1].startswith("What you just saw:"), after


def pid1_end(seen):
    (key,) = [k for k in seen if k.startswith("on the host, after the step: the processes in")]
    return seen[key]


@on_demo("05")
@pytest.mark.parametrize("user", [None, USER], ids=["root", "user"])
def test_step_05_shows_pid_1_s_end_take_the_namespace_with_it(user):
    result = demo("05", user)
    seen = sections(result.out)
    started = seen["through steps/05_pid.py: sh -c " + shlex.quote(scenes.PID1_ENDS)]
    assert started.startswith("PID 1 started sleep 60 as PID "), started
    assert pid1_end(seen).startswith("0 left: the kernel killed the sleep"), seen
    assert sleepers(result.out) == 0


def test_pid_1_s_end_check_rejects_a_step_without_a_pid_namespace():
    """The skeleton in 05's place: its sleep outlives the command, in the
    host's own PID namespace (the frame's, which ends it)."""
    result = in_frame(f"{shlex.quote(PYTHON)} -c 'from demo import scenes; "
                      f"scenes.pid1_ends(\"steps/00_skeleton.py\")'" + DEMO_AFTER)
    seen = sections(result.out)
    assert re.match(r"[1-9]\d* left, the sleep among them", pid1_end(seen)), result
    assert sleepers(result.out) == 1, result


# The namespace table.

def check_table(out, nn):
    rows, frame = table(out), frame_ids(out)
    assert set(rows) == set(NAMESPACES), out
    for ns, (host, command, verdict) in rows.items():
        assert host == frame[ns], (ns, out)
        assert (command != host) == (ns in NEW_NAMESPACES[nn]), (ns, out)
        assert (verdict == "new") == (ns in NEW_NAMESPACES[nn]), (ns, out)


@pytest.mark.parametrize("nn", on_demos(*ALL_STEPS))
def test_table_marks_exactly_the_steps_new_namespaces(nn):
    check_table(demo(nn).out, nn)  # the demo the other tests of nn read (table() drops colours)


@pytest.mark.parametrize("nn", on_demos("01", "05", "08"))
def test_table_check_rejects_the_skeleton_in_the_steps_place(nn):
    result = demo(nn, prefix=f"mount --bind steps/00_skeleton.py {step_path(nn)} && ")
    with pytest.raises(AssertionError):
        check_table(result.out, nn)


def table_lines(out):
    return [v for k, v in sections(out).items() if k.startswith("namespaces:")][0].splitlines()


@on_demo("03")
def test_table_colours_the_new_rows_on_a_terminal_only():
    coloured = table_lines(demo("03").out)  # the frame's output is a terminal
    assert [line.split()[0].split("m")[-1] for line in coloured if ESC in line] == ["uts"]
    for env in ("NO_COLOR=1", ""):
        plain = demo("03", env=env, prefix="exec > >(cat); " if not env else "").out
        assert ESC not in "\n".join(table_lines(plain)), plain
        (marked,) = [line for line in table_lines(plain) if line.endswith(" new")]
        assert marked.startswith("uts ")


def test_readme_tables_are_up_to_date_and_the_check_catches_an_edit():
    done = subprocess.run([PYTHON, "tools/ns_tables.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = ns_tables.README.read_text()
    for nn in ALL_STEPS:
        assert f"#### `{step_path(nn).stem}.py`" in text
    stale = text.replace("`uts:[its own]` | **new**", "`uts:[the host's]` |  ", 1)
    assert stale != text and ns_tables.updated(stale) != stale
    with pytest.raises(ValueError):
        ns_tables.updated(text.replace(ns_tables.END, ""))
    # The map: a row per step, "new" under exactly the namespaces it makes.
    body = text.split(ns_tables.begin("ns-map"))[1].split(ns_tables.end("ns-map"))[0]
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in body.splitlines() if line.startswith("| `")]
    assert [row[0].split()[0] for row in rows] == [f"`{step_path(nn).stem}`" for nn in ALL_STEPS]
    for nn, row in zip(ALL_STEPS, rows):
        assert {ns for ns, cell in zip(NAMESPACES, row[1:]) if cell == "**new**"} == \
            NEW_NAMESPACES[nn], row
    stale = text.replace("| `01_net` | · | · | **new** |", "| `01_net` | · | · | · |", 1)
    assert stale != text and ns_tables.updated(stale) == text
    with pytest.raises(ValueError):
        ns_tables.updated(text.replace(ns_tables.begin("ns-map"), ""))


def test_steps_readme_opens_with_a_warm_up_and_the_map_before_the_steps():
    text = ns_tables.README.read_text()
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads[:3] == ["## Warm-up: namespaces from the shell", "## The map", "## The steps"]
    warm_up = text.split("## Warm-up")[1].split("## The map")[0]
    for command in ("ls -l /proc/$$/ns", "unshare -u", "nsenter -t PID -u", "lsns -t uts"):
        assert command in warm_up, command
    assert "Why `CLONE_NEWNS` and not `CLONE_NEWMNT`?" in text.split("## The steps")[0]


def test_the_warm_up_does_what_it_says():
    """The warm-up's commands, run as it tells, the second terminal's after
    the first has renamed its namespace (a FIFO says when)."""
    script = """
    ls -l /proc/$$/ns | grep -c ' -> '
    mkfifo /tmp/renamed
    unshare -u sh -c 'hostname warmup; echo > /tmp/renamed; exec sleep 60' &
    pid=$!
    read _ < /tmp/renamed
    echo "@@host"; hostname
    echo "@@nsenter"; nsenter -t $pid -u hostname
    echo "@@lsns"; lsns -n -t uts -o PID | grep -cx " *$pid"
    echo "@@inode"; [ "$(readlink /proc/$pid/ns/uts)" != "$(readlink /proc/$$/ns/uts)" ] && echo another
    kill $pid
    """
    result = in_frame(f"hostname {FRAME_HOSTNAME}; " + script, own_root=True)
    seen = marked_sections("@@count\n" + result.out)
    assert int(seen["count"]) >= len(NAMESPACES), result
    assert seen["host"] == FRAME_HOSTNAME and seen["nsenter"] == "warmup", result
    assert seen["lsns"] == "1" and seen["inode"] == "another", result


# As an ordinary user: the machine as they see it.

@on_demo("05")
def test_user_sees_the_machine_on_the_host_side():
    seen = sections(demo("05", user=USER).out)
    host = processes(seen["on the host: ps aux"])
    assert any(is_make(p) for p in host), seen
    assert all(p.split()[0] == "nobody" for p in host), seen  # not root: no user namespace
    (alone,) = processes(seen["through steps/05_pid.py: ps aux"])
    assert alone.split()[1] == "1"


@on_demo("06")
def test_user_is_themselves_on_the_host_side_and_told_where_the_step_runs():
    out = demo("06", user=USER).out
    assert ("\nYou are not root: the host side is the machine as you see it; "
            "the step side runs in a user namespace") in out
    seen = sections(out)
    assert seen["on the host: id"].startswith(f"uid={USER}(nobody)")
    assert {ns: v for ns, (_, _, v) in table(out).items() if v} == {"user": "new"}


@on_demo("05")
def test_user_table_names_the_demos_own_user_namespace():
    out = demo("05", user=USER).out
    assert {ns: v for ns, (_, _, v) in table(out).items() if v} == {
        "mnt": "new", "pid": "new", "user": "demo's"}
    assert "made by the user namespace the demo runs the step in" in out


def test_the_old_way_of_wrapping_the_whole_demo_fails_the_user_checks():
    """Run whole inside a user namespace, as the kit once did, the demo's
    host side is the wrapper's: root, and only the wrapper's processes."""
    old = ("unshare --user --map-root-user --mount --pid --fork --mount-proc "
           f"--propagation private {shlex.quote(PYTHON)} -m demo 06")
    result = in_frame(old + DEMO_AFTER, own_root=True, mytmp=True, user=USER, setup=DEMO_FRAME)
    assert "@@exit 0" in result.out, result
    with pytest.raises(AssertionError):
        assert sections(result.out)["on the host: id"].startswith(f"uid={USER}(nobody)")


# 08 and 09 in the demo.

@on_demo("08")
def test_step_08_kills_the_command_with_its_parent_where_03_does_not():
    out = demo("08").out
    seen = sections(out)
    assert seen["through steps/08_isolate.py: hostname"] == "myhostname"
    assert "still runs" in seen["through steps/03_uts.py: sleep 60, then kill -KILL the step, "
                                "its parent"]
    assert "is gone" in seen["through steps/08_isolate.py: sleep 60, then kill -KILL the step, "
                             "its parent"]
    assert sleepers(out) == 0  # the demo killed 03's sleep


@on_demo("09")
def test_step_09_makes_an_ordinary_user_root_inside():
    seen = sections(demo("09", user=USER).out)
    assert seen["through steps/06_user.py: id"].startswith("uid=65534(nobody)")
    assert seen["through steps/09_uid_map.py: id"].startswith("uid=0(root) gid=0(root)")
    assert seen["through steps/09_uid_map.py: cat /proc/self/uid_map"].split() == [
        "0", str(USER), "1"]
    (host,) = [v for k, v in seen.items() if k.startswith("on the host: ls -l")]
    (step,) = [v for k, v in seen.items() if k.startswith("through steps/09_uid_map.py: ls -l")]
    assert " nobody nogroup " in host and " root root " in step


def test_step_09_as_root_runs_its_step_side_as_an_ordinary_user():
    """Root's own map would be "0 0 1": root inside is root outside, and the
    point is lost. As root, the step side runs as the user who ran sudo."""
    if not IS_ROOT:
        pytest.skip("as an ordinary user the step side is that user already (tested above)")
    result = in_frame(f"{NS_IDS} SUDO_UID={USER} make --no-print-directory step-09" + DEMO_AFTER,
                      own_root=True, setup=DEMO_FRAME + expose_to_users())
    assert "@@exit 0" in result.out, result
    seen = sections(result.out)
    assert seen["through steps/09_uid_map.py: id"].startswith("uid=0(root) gid=0(root)")
    assert seen["through steps/09_uid_map.py: cat /proc/self/uid_map"].split() == [
        "0", str(USER), "1"], seen
    assert seen["on the host: id"].startswith(f"uid={USER}"), seen


# 10 and 11 in the demo.

@on_demo("10")
@pytest.mark.parametrize("user", [None, USER], ids=["root", "user"])
def test_step_10_shows_the_small_root_after_the_hosts(user):
    seen = sections(demo("10", user=user).out)
    host, step = seen["on the host: mount"], seen["through steps/10_pivot_root.py: mount"]
    assert [line.split()[2] for line in step.splitlines()] == ["/", "/proc"], seen
    assert len(host.splitlines()) > 2, seen
    assert seen["through steps/10_pivot_root.py: ls /"].split() == sorted(rootfs.FOLDERS)
    assert seen["on the host: ls /"].split() != sorted(rootfs.FOLDERS)
    ps = seen["through steps/10_pivot_root.py: ps"].split("\nWhat you just saw")[0].splitlines()
    assert len(ps) == 2 and ps[1].split()[:3] == ["1", "root", "ps"], seen


@on_demo("11")
@pytest.mark.parametrize("user", [None, USER], ids=["root", "user"])
def test_step_11_shows_the_pair_and_the_ping_and_leaves_no_link(user):
    out = demo("11", user=user).out
    seen = sections(out)
    inside = seen["through steps/11_veth.py: ip a"]
    assert re.findall(r"^\d+: (\w+)", inside, re.M) == ["lo", "eth0"], seen
    assert "inet 10.11.0.2/24" in inside
    assert "1 packets received" in seen["through steps/11_veth.py: ping -c 1 -W 5 10.11.0.1"]
    (during,) = [v for k, v in seen.items() if k.startswith("on the host, while")]
    assert re.search(r"^\d+: nskit\d+\s+inet 10\.11\.0\.1/24", during, re.M), seen
    assert seen["on the host, after: ip -o link | grep nskit"].startswith("(none"), seen
    assert {ns: v for ns, (_, _, v) in table(out).items() if v} == {
        "mnt": "new", "net": "new", "pid": "new", "user": "new"}


# Names, diffs and exercises.

# The series' posts: 08 and 09; 10 and 11 stand beside the sections of Part 1 they go on from.
SERIES = {"08", "09"}


def test_every_demo_names_its_article_and_section():
    for nn in scenes.SCENES:
        assert scenes.ARTICLE[nn].startswith(scenes.SECOND) == (nn in SERIES)
    # skeleton.c is given in the NET section.
    assert scenes.SCENES["00"].__doc__.startswith("NET Namespace")


@needs_articles
def test_the_demos_of_10_and_11_quote_the_article_word_for_word():
    text = " ".join(ARTICLE.read_text().split())
    assert sorted(scenes.QUOTES) == ["10", "11"]
    for words in [w for quoted in scenes.QUOTES.values() for w in quoted]:
        assert words in text, words


@needs_articles
def test_every_demo_s_section_is_in_its_article():
    first, second = ARTICLE.read_text(), SECOND.read_text()
    for nn, scene in scenes.SCENES.items():
        if nn in SERIES:
            assert "isolate" in second
        else:
            assert f"## {scene.__doc__.split(':')[0]}\n" in first, nn


GALLERY_C = ROOT / "tests" / "gallery" / "c"


@needs_articles
def test_the_gallery_calls_the_article_s_only_the_files_it_gives():
    """tests/gallery/c: each file says whose it is, and a file called the
    article's is one the article makes (`cp skeleton.c NAME.c`)."""
    article = ARTICLE.read_text()
    for source in sorted(GALLERY_C.glob("*.c")):
        head = source.read_text().splitlines()[0]
        named = re.search(r"the article's (\w+\.c)", head)
        if named:
            assert f"cp skeleton.c {named[1]}" in article or named[1] == "skeleton.c", head
        else:
            assert "the kit's" in head, head
    # The article's last section gives no code: 07 is the kit's.
    assert "the kit's" in (GALLERY_C / "07_combined.c").read_text().splitlines()[0]


def _listing(text, start, end):
    """The code lines of a listing of the article's, from start to end."""
    lines = text[text.index(start):].splitlines()
    code = lines[:next(i for i, line in enumerate(lines) if line.strip() == end) + 1]
    # The article's copy shows "&params" as an entity gone wrong: "¶ms".
    return [line.strip().replace("\u00b6", "&para") for line in code
            if line.strip() and not line.strip().startswith("//")]


@needs_articles
def test_isolate_in_the_gallery_holds_deep_dive_s_main_and_cmd_exec():
    isolate = {line.strip() for line in
               (ROOT / "tests" / "gallery" / "c-beyond" / "isolate.c").read_text().splitlines()}
    second = SECOND.read_text()
    for start, end in (("int main(int argc", "return 0;"), ("static int cmd_exec", "return 1;")):
        listing = _listing(second, start, end)
        assert len(listing) > 8 and [line for line in listing if line not in isolate] == [], start
    assert "PR_SET_PDEATHSIG" in second and "prctl(PR_SET_PDEATHSIG, SIGKILL)" in " ".join(isolate)


def make(*args):
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True)


def test_diff_00_says_what_00_is_and_where_to_go():
    done = make("diff-00")
    assert done.returncode == 0 and "skeleton" in done.stdout and "make diff-01" in done.stdout


@pytest.mark.parametrize("nn, base, added", [("10", "09", "pivot_root"), ("11", "10", "veth")])
def test_diff_of_10_and_11_is_against_the_step_before(nn, base, added):
    done = make(f"diff-{nn}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"--- {step_path(base).relative_to(ROOT)}")
    assert re.search(rf"^\+.*{added}", done.stdout, re.M)


@pytest.mark.parametrize("nn, base", [("08", "03"), ("09", "06")])
def test_diff_of_a_step_beyond_part_1_is_against_its_base(nn, base):
    done = make(f"diff-{nn}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"--- {step_path(base).relative_to(ROOT)}")
    assert f"+++ {step_path(nn).relative_to(ROOT)}" in done.stdout
    assert re.search(r"^\+.*PR_SET_PDEATHSIG", done.stdout, re.M)
    assert (nn == "09") == bool(re.search(r"^\+.*uid_map", done.stdout, re.M))


def test_readme_07_claims_are_what_the_kernel_says():
    """steps/README.md quotes what 07's shell answers: the same words here."""
    script = (f"{shlex.quote(PYTHON)} {step_path('07')} bash -c "
              "'hostname foo; touch /mytmp/x; touch /tmp/x'; stat -c %u /tmp/x")
    run = in_frame(script, own_root=True, mytmp=True)
    readme = (ROOT / "steps" / "README.md").read_text()
    for said in ("you must be root", "Value too large for defined data type"):
        assert said in run.err and said in readme, run
    assert run.out.split() == ["0"]  # /tmp/x is the machine's, and root's
    assert "`touch /tmp/x` works, and makes a file on the real machine" in readme


def test_exercise_beyond_starts_from_the_learners_own_base(tmp_path):
    work = tmp_path / "work"
    assert make("exercise", f"WORK={work}").returncode == 0
    (work / "03_uts.py").write_text('"""my 03"""\nMINE = 3\n')
    done = make("exercise-beyond", f"WORK={work}")
    assert done.returncode == 0 and ("wrote 08_isolate.py, 09_uid_map.py, 10_pivot_root.py, "
                                     "11_veth.py") in done.stdout
    ours = (work / "08_isolate.py").read_text()
    assert ours.startswith('"""08 isolate, your task:') and ours.endswith("MINE = 3\n")
    theirs = (work / "09_uid_map.py").read_text()  # 06 untouched: from the skeleton
    assert '"""09 uid_map, your task:' in theirs and "clone_flags = SIGCHLD" in theirs
    assert "make step-09" in theirs and "no sudo" in theirs.lower()
    again = make("exercise-beyond", f"WORK={work}")
    assert "kept as they were: 08_isolate.py, 09_uid_map.py, 10_pivot_root.py" in again.stdout
    assert (work / "08_isolate.py").read_text() == ours


def test_makefile_knows_the_catalogs_steps_and_bases():
    makefile = (ROOT / "Makefile").read_text()
    steps = re.search(r"^STEPS := (.*)$", makefile, re.M).group(1).split()
    bases = re.search(r"^BASES := (.*)$", makefile, re.M).group(1).split()
    assert steps == list(ALL_STEPS)
    assert dict(b.split(":") for b in bases) == BASE_STEP
