"""Steps 10 and 11, beyond Part 1: a root of the command's own, and a
network that works, seen from the frame around them.

- 10: inside, `ls /` is the small root and `mount` lists / and /proc only;
  `ps` shows the command as PID 1; seen from outside, the command's mount
  namespace holds nothing of the frame's (its old root is gone) and the
  command's / is that namespace's root (no chroot); the frame's mounts are
  unchanged. As root and as an ordinary user.
- 11: inside, `lo` and `eth0` only, eth0 UP with 10.11.0.2, and a ping of
  the parent's end is answered; while it runs, the frame holds the parent's
  end with 10.11.0.1; after it, no link of the pair is left. As an ordinary
  user it says in one sentence that it needs sudo.
- `make rootfs` (demo/rootfs.py): busybox and a link per command, built once.

Every check is also shown to fail a wrong program of helpers.WRONG_BEYOND.
Everything runs in a throwaway frame (helpers.in_frame).
"""
import difflib
import re
import shlex
from pathlib import Path

import pytest

from helpers import (HELD, PYTHON, in_frame, readable_folder, sections, small_root, step_or_wrong,
                     step_path)

from conformance.catalog import ROOTFS_VARIABLE
from demo import rootfs

USER = 65534
WRONG = None  # the folder of wrong programs
ROOTFS = None  # the small root the steps pivot into


@pytest.fixture(scope="module", autouse=True)
def folders():
    """The small root, and a folder for wrong programs, which an ordinary
    user's frames read too."""
    global WRONG, ROOTFS
    ROOTFS = small_root()
    with readable_folder("nskit-own-root-") as WRONG:
        yield


def program(name):
    """A step (10, 11) or a wrong program of helpers.WRONG_BEYOND (its name)."""
    return step_or_wrong(name, WRONG)


def py(path, held=False):
    """The step at path, with the small root; held: its parent held before
    each of its writes (helpers.HELD), so that a child that does not wait
    for the OK goes first."""
    hold = f"-c {shlex.quote(HELD)} " if held else ""
    return (f"{ROOTFS_VARIABLE}={shlex.quote(str(ROOTFS))} {shlex.quote(PYTHON)} {hold}"
            f"{shlex.quote(str(path))}")


# -- 10 -------------------------------------------------------------------------

INSIDE_10 = ("echo @@ls; ls /; echo @@mounts; cat /proc/mounts; echo @@ps; ps; "
             "echo @@id; id")
# The command waits; meanwhile the frame reads its mount namespace from the
# namespace's own root (nsenter -m), and the command's /, then lets it end.
OUTSIDE_10 = r'''
echo @@before; cat /proc/self/mountinfo
coproc STEP {{ {prog} sh -c 'echo up; read _; echo @@inside; {inside}'; }}
P=$STEP_PID; read -r -u "${{STEP[0]}}" up
C=$(pgrep -n -f "^sh -c echo up")
IN="nsenter -t $C -U -m -p --preserve-credentials"
echo @@namespace; $IN cat /proc/self/mountinfo
echo @@roots; stat -L -c '%d %i' "/proc/$C/root"; $IN stat -c '%d %i' /
echo go >&"${{STEP[1]}}"
cat <&"${{STEP[0]}}"
wait "$P"; echo "@@code"; echo $?
echo @@after; cat /proc/self/mountinfo
'''


def seen_10(path, user=None):
    script = OUTSIDE_10.format(prog=py(path), inside=INSIDE_10)
    run = in_frame(script, user=user)
    seen = sections(run.out)
    seen["err"] = run.err
    return seen


def mount_points(mountinfo):
    return [line.split()[4] for line in mountinfo.splitlines() if line.strip()]


def check_small_root(seen):
    """Inside: the small root, / and /proc only, the shell PID 1."""
    assert seen.get("code") == "0", seen
    assert seen["ls"].split() == sorted(rootfs.FOLDERS), seen
    assert sorted(line.split()[1] for line in seen["mounts"].splitlines()) == ["/", "/proc"], seen
    ps = [line.split() for line in seen["ps"].splitlines()[1:]]
    assert ps and ps[0][0] == "1" and len(ps) <= 2, seen  # sh, and ps itself
    assert seen["id"].startswith("uid=0(root) gid=0(root)"), seen


def check_old_root_gone(seen):
    """Outside: the command's namespace holds / and /proc only, its / is
    that namespace's root, and the frame's own mounts are unchanged."""
    assert seen.get("code") == "0", seen
    assert sorted(mount_points(seen["namespace"])) == ["/", "/proc"], seen["namespace"]
    command, namespace = seen["roots"].splitlines()
    assert command == namespace, seen["roots"]
    assert seen["after"] == seen["before"], seen


@pytest.mark.parametrize("user", [None, USER], ids=["root", "user"])
def test_10_shell_has_a_root_of_its_own(user):
    seen = seen_10(step_path("10"), user)
    check_small_root(seen)
    check_old_root_gone(seen)


def test_10_as_a_user_is_root_inside_without_sudo():
    seen = seen_10(step_path("10"), USER)
    assert seen["id"].startswith("uid=0(root)"), seen


@pytest.mark.parametrize("name", ["10_no_pivot", "10_no_proc"])
def test_small_root_check_rejects(name):
    with pytest.raises(AssertionError):
        check_small_root(seen_10(program(name)))


@pytest.mark.parametrize("name", ["10_chroot", "10_old_root_kept", "10_no_pivot"])
def test_old_root_check_rejects(name):
    with pytest.raises(AssertionError):
        check_old_root_gone(seen_10(program(name)))


def test_the_chroot_looks_right_from_inside():
    """Why the check looks from outside: inside, a chroot shows what a pivot does."""
    check_small_root(seen_10(program("10_chroot")))


def test_10_without_a_root_filesystem_says_how_to_make_one():
    run = in_frame(f"{ROOTFS_VARIABLE}=/nonexistent {shlex.quote(PYTHON)} "
                   f"{shlex.quote(str(step_path('10')))} true; echo \"@@$?\"")
    assert run.out.split() == ["@@1"], run
    assert run.err.splitlines() == [
        "10_pivot_root.py: /nonexistent is no root filesystem (it has no /proc): make rootfs "
        "builds one, or name yours in NSKIT_ROOTFS"], run


# -- 11 -------------------------------------------------------------------------

INSIDE_11 = ("echo @@links; cat /proc/net/dev; echo @@addr; ip -o -4 addr; echo @@up; "
             "ip -o link show eth0 2>&1; echo @@ping; "
             "ping -c 1 -W 5 10.11.0.1 >/dev/null && echo answered")
# The frame: its placeholder pair, then the command, held while the frame
# reads its own links, then let go; then the frame's links again.
OUTSIDE_11 = r'''
ip link add nskit0 type veth peer name nskit1 || exit 99
echo @@before; ip -o link | cut -d: -f2 | sort
coproc STEP {{ {prog} sh -c 'echo up; read _; {inside}'; }}
P=$STEP_PID; read -r -u "${{STEP[0]}}" up
echo @@during; ip -o -4 addr; ip -o link
echo go >&"${{STEP[1]}}"
cat <&"${{STEP[0]}}"
wait "$P"; echo "@@code"; echo $?
echo @@after; ip -o link | cut -d: -f2 | sort
'''


def seen_11(path, user=None, held=False):
    run = in_frame(OUTSIDE_11.format(prog=py(path, held), inside=INSIDE_11), user=user)
    seen = sections(run.out)
    seen["err"] = run.err
    return seen


def link_names(proc_net_dev):
    return sorted(line.split(":")[0].strip() for line in proc_net_dev.splitlines()[2:])


def check_network(seen):
    """Inside: lo and eth0 only, eth0 up with 10.11.0.2/24, and the ping answered."""
    assert seen.get("code") == "0", seen
    assert link_names(seen["links"]) == ["eth0", "lo"], seen
    assert re.search(r"eth0\s+inet 10\.11\.0\.2/24", seen["addr"]), seen
    assert re.search(r"<[^>]*\bUP\b[^>]*>", seen["up"]), seen
    assert seen["ping"] == "answered", seen


def check_parents_end(seen):
    """Outside, while it runs: the parent's end with 10.11.0.1, paired with a
    link in another namespace; after it: the frame's links as they were."""
    during = seen["during"]
    (end,) = re.findall(r"^\d+: (nskit\d+)\s+inet 10\.11\.0\.1/24", during, re.M) or [None]
    assert end, during
    assert re.search(rf"^\d+: {end}@if\d+:.*link-netnsid", during, re.M), during
    assert seen["after"] == seen["before"], seen


@pytest.mark.parametrize("held", [False, True], ids=["free", "held"])
def test_11_has_a_network_that_works(held):
    seen = seen_11(step_path("11"), held=held)
    check_network(seen)
    check_parents_end(seen)


@pytest.mark.parametrize("name", ["11_end_in_parent", "11_no_address", "11_no_wait"])
def test_network_check_rejects(name):
    with pytest.raises(AssertionError):
        check_network(seen_11(program(name), held=True))


def test_parents_end_check_rejects_the_end_left_in_the_parent():
    with pytest.raises(AssertionError):
        check_parents_end(seen_11(program("11_end_in_parent")))


def test_11_as_a_user_asks_for_sudo_in_one_sentence():
    run = in_frame(f"{py(step_path('11'))} true; echo \"@@$?\"; ip -o link | grep -c nskit",
                   user=USER)
    assert run.out.split() == ["@@1", "0"], run
    (line,) = run.err.splitlines()
    assert line.startswith("11_veth.py: ip link add nskit") and line.endswith(
        "Operation not permitted; a link on the host needs root: run it with sudo"), run


# -- as every step does ------------------------------------------------------------

@pytest.mark.parametrize("nn", ["10", "11"])
def test_usage_missing_command_and_exit_status(nn):
    run = in_frame(f"{py(step_path(nn))}; echo \"@@$?\"; "
                   f"{py(step_path(nn))} nskit-no-such-command; echo \"@@$?\"; "
                   f"{py(step_path(nn))} sh -c 'echo hi; exit 3' | cat; echo \"@@${{PIPESTATUS[0]}}\"")
    assert run.out.split() == ["@@2", "@@127", "hi", "@@3"], run
    name = step_path(nn).name
    assert run.err.splitlines() == [f"usage: {name} CMD [ARGS...]",
                                    f"{name}: nskit-no-such-command: command not found"], run


# -- make rootfs --------------------------------------------------------------------

def test_rootfs_is_busybox_and_a_link_per_command_built_once(tmp_path):
    target = tmp_path / "root"
    assert rootfs.build(target) is True
    assert sorted(p.name for p in target.iterdir()) == sorted(rootfs.FOLDERS)
    assert (target / "bin" / "sh").readlink() == Path("busybox")
    assert not rootfs.dynamic(target / "bin" / "busybox")
    assert rootfs.size(target) < 4 << 20
    stamp = (target / "bin" / "busybox").stat().st_mtime_ns
    assert rootfs.build(target) is False
    assert (target / "bin" / "busybox").stat().st_mtime_ns == stamp


def test_rootfs_refuses_a_folder_of_something_else(tmp_path):
    (tmp_path / "mine").write_text("keep me")
    with pytest.raises(rootfs.Trouble, match="is not a root filesystem built here"):
        rootfs.build(tmp_path)
    assert (tmp_path / "mine").read_text() == "keep me"


def test_rootfs_refuses_a_dynamic_busybox_and_names_the_package(monkeypatch):
    monkeypatch.setattr(rootfs, "CANDIDATES", (PYTHON,))
    with pytest.raises(rootfs.Trouble, match="busybox-static"):
        rootfs.find_busybox()
    monkeypatch.setattr(rootfs, "CANDIDATES", ("/nonexistent/busybox",))
    with pytest.raises(rootfs.Trouble, match="not installed: apt-get install busybox-static"):
        rootfs.find_busybox()


# -- the files ----------------------------------------------------------------------

# What each may take out of the step before it, besides the docstring.
REMOVED = {
    "10": ["PARENT = os.getpid()",
           "    # The parent may have died before the line above: then nobody would kill us.",
           "    if os.getppid() != PARENT:",
           '        die("the parent died before the command could start")',
           "    clone_flags = CLONE_NEWUSER | SIGCHLD"],
    "11": ["    clone_flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | SIGCHLD"],
}


@pytest.mark.parametrize("nn, base", [("10", "09"), ("11", "10")])
def test_a_full_copy_of_the_step_before_plus_its_lesson(nn, base):
    new, old = step_path(nn).read_text(), step_path(base).read_text()
    body = lambda text: text.split('"""', 2)[2].splitlines()  # noqa: E731
    removed = [line[1:] for line in difflib.unified_diff(body(old), body(new), lineterm="", n=0)
               if line.startswith("-") and not line.startswith("---")]
    assert removed == REMOVED[nn], removed
    assert ("SYS_PIVOT_ROOT" if nn == "10" else "VETH_INFO_PEER") in new
