"""`make step-NN`, `make diff-NN` and who may run them.

Every run happens in a throwaway frame with a root of its own (see own_root),
so the demos' mkdir /mytmp, queues and hostnames never reach the machine,
and /mytmp can be made present or missing without touching the real one.
"""
import os
import re

import pytest

from conformance.catalog import NAMESPACES, STEP_NAMES
from helpers import (DEMO_AFTER, DEMO_FRAME, FRAME_HOSTNAME, FRAME_LINK, IS_ROOT, ROOT,
                     demo, flag_names, in_frame, on_demos, refused, sections, step_path)

NOTICE = ("You are not root: the host side is the machine as you see it; the "
          "step side runs in a user namespace where root is you.")


@pytest.fixture(autouse=True)
def as_a_reader_types_it(monkeypatch):
    # Under `make test` the make in each frame would be a sub-make, and print
    # "Entering directory" lines a reader never sees.
    for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        monkeypatch.delenv(name, raising=False)


# The demos' frame (helpers.demo), for what else runs there.
FRAME_SETUP = FRAME_LINK + DEMO_FRAME


def framed(script, mytmp=False, user=None, setup=""):
    """in_frame on a root of its own; with user, as that uid with no caps;
    setup is more bash for the frame's root."""
    return in_frame(script, own_root=True, mytmp=mytmp, user=user, setup=FRAME_SETUP + setup)


def shown(out):
    """The demo's output, by heading: {"through steps/03_uts.py: hostname": "..."}."""
    return sections(out.split("\nWhat you just saw:")[0], prefix="── ")


def host_and_step(out, nn, cmd):
    seen = shown(out)
    return seen[f"on the host: {cmd}"], seen[f"through steps/{step_path(nn).name}: {cmd}"]


def processes(ps):
    return [line for line in ps.splitlines()[1:] if line.strip()]


def check_net(out, nn):
    host, step = host_and_step(out, nn, "ip a")
    assert "nskit0" in host
    assert "nskit0" not in step and re.search(r"^1: lo: .*state DOWN", step, re.M)


def check_mount(out, nn):
    host, step = host_and_step(out, nn, "mount")
    tmpfs = re.compile(r"^none on /mytmp type tmpfs", re.M)
    assert not tmpfs.search(host) and tmpfs.search(step)


def check_no_jail(out, nn):
    check_mount(out, nn)  # its mounts are its own, yet:
    step = shown(out)[f"through steps/{step_path(nn).name}: ls /"]
    assert {"usr", ROOT.parts[1], "mytmp"} <= set(step.split())


def check_hostname(out, nn):
    assert host_and_step(out, nn, "hostname") == (FRAME_HOSTNAME, "myhostname")


def check_queue(out, nn):
    keys = re.findall(r"^(0x[0-9a-f]+) ", shown(out)["on the host: ipcs -q"], re.M)
    assert len(keys) == 1 and keys[0] not in host_and_step(out, nn, "ipcs -q")[1]


def check_pids(out, nn):
    host, step = host_and_step(out, nn, "ps aux")
    assert len(processes(host)) > 1
    alone = processes(step)
    assert len(alone) == 1 and alone[0].split()[1] == "1" and alone[0].endswith("ps aux")


def check_nobody(out, nn):
    host, step = host_and_step(out, nn, "id")
    assert host.startswith("uid=0(root)") and step.startswith("uid=65534(nobody)")


# Whom `ls -la` of the checkout shows as its owner outside the step: root,
# unless the checkout is another user's, whom a user namespace cannot name.
CHECKOUT_OWNER = " root root " if IS_ROOT or ROOT.stat().st_uid == os.geteuid() else " nobody "


def check_files(out, nn):
    host, step = host_and_step(out, nn, "ls -la")
    assert CHECKOUT_OWNER in host
    assert " root " not in step and " nobody nogroup " in step


def check_same(out, nn):
    assert "through steps/00_skeleton.py: ip a" in shown(out)
    host, step = shown(out).values()
    assert host == step and "nskit0" in host


CHECKS = {
    "00": [check_same],
    "01": [check_net],
    "02": [check_no_jail],
    "03": [check_hostname],
    "04": [check_queue],
    "05": [check_pids],
    "06": [check_nobody, check_files],
    "07": [check_nobody, check_hostname, check_pids, check_net, check_queue, check_mount],
}

# What the frame looks like after a demo (DEMO_AFTER): it must match what it was before.
def left_as_found(result, mytmp=False):
    after = result.out.split("== after\n", 1)[1].split()
    assert after[:3] == [FRAME_HOSTNAME, "0", "0"], result
    # The /mytmp a demo made is gone again; one that was there stays.
    assert (after[3:] == ["/mytmp"]) == mytmp, result


@pytest.mark.parametrize("nn", on_demos(*STEP_NAMES))
def test_step_shows_the_outcome_and_leaves_nothing(nn):
    result = demo(nn)
    assert "@@exit 0" in result.out, result
    assert "What you just saw:" in result.out
    for check in CHECKS[nn]:
        check(result.out, nn)
    left_as_found(result)


@pytest.mark.parametrize("nn", on_demos(*list(STEP_NAMES)[1:]))
def test_step_checks_reject_the_skeleton_in_its_place(nn):
    """The checks above see the namespace, not just a heading: with the
    skeleton bound over step NN, the demo runs as well as ever and each
    check says no (a missing section would be a KeyError, not a no)."""
    result = demo(nn, prefix=f"mount --bind steps/00_skeleton.py {step_path(nn)} && ")
    assert "@@exit 0" in result.out and "What you just saw:" in result.out, result
    left_as_found(result)
    for check in CHECKS[nn]:
        with pytest.raises(AssertionError):
            check(result.out, nn)


@pytest.mark.parametrize("nn, flag, undo", [
    ("03", "CLONE_NEWUTS", "changed the host's hostname"),
    ("02", "CLONE_NEWNS", "left its tmpfs mounted on the host's /mytmp"),
])
def test_step_missing_its_flag_is_undone_and_named(nn, flag, undo):
    broken = f"/tmp/{step_path(nn).name}"
    result = framed(f"sed 's/{flag} | SIGCHLD/SIGCHLD/' {step_path(nn)} > {broken} && "
                    f"! cmp -s {broken} {step_path(nn)} && "
                    f"mount --bind {broken} {step_path(nn)} && make step-{nn}" + DEMO_AFTER)
    assert undo in result.err and flag in result.err, result
    left_as_found(result)


@pytest.mark.parametrize("nn", STEP_NAMES)
def test_diff_shows_the_flags(nn):
    result = in_frame(f"make diff-{nn}")
    assert result.code == 0, result
    if nn == "00":
        assert "skeleton" in result.out and "make diff-01" in result.out
    else:
        assert result.out.startswith("--- steps/00_skeleton.py")
    for flag in flag_names(nn):
        assert re.search(rf"^\+.*{flag}", result.out, re.M), flag
        assert not re.search(rf"^-.*{flag}", result.out, re.M), flag


def test_unknown_step_is_named():
    result = in_frame("make step-12; echo exit=$?; make diff-12; echo exit=$?")
    assert result.err.count("There is no step 12: the steps are 00 01") == 2, result
    assert result.out.split() == ["exit=2", "exit=2"]


@pytest.mark.parametrize("nn", on_demos("03", "05", "02"))
def test_user_gets_a_user_namespace(nn):
    result = demo(nn, user=65534)
    assert "@@exit 0" in result.out, result
    assert result.out.split("\n", len(NAMESPACES) + 1)[-1].startswith(NOTICE + "\n"), result
    for check in CHECKS[nn]:
        check(result.out, nn)
    left_as_found(result, mytmp=True)


@pytest.mark.parametrize("nn", on_demos("03"))
def test_root_gets_no_user_namespace(nn):
    result = demo(nn)
    assert NOTICE not in result.out and "@@exit 0" in result.out, result


def test_user_without_mytmp_is_asked_for_sudo_mkdir():
    result = framed("make step-02" + DEMO_AFTER, user=65534)
    assert "@@exit 0" not in result.out, result
    assert "run `sudo mkdir /mytmp`" in result.err
    assert len(result.err.strip().splitlines()) == 2  # the sentence, make's own line
    assert "Traceback" not in result.err


def test_refusal_filter_refuses_user_namespaces_only():
    result = framed(refused("unshare --user true; echo userns=$?; unshare --fork true; "
                            "echo plain=$?; id -u"), user=65534)
    assert "userns=1" in result.out and "plain=0" in result.out, result


def test_user_without_user_namespaces_and_docker_is_told_to_install_it():
    result = framed(refused("NSKIT_VM=never make step-03" + DEMO_AFTER), user=65534)
    assert "@@exit 0" not in result.out, result
    (sentence,) = [line for line in result.err.splitlines() if not line.startswith("make:")]
    assert sentence.startswith("You are not root and user namespaces are refused here "
                               "and Docker is missing: install Docker")
    assert "sudo make step-03" in sentence and NOTICE not in result.out


@pytest.mark.parametrize("docker_run", ["kept", "missing"])
def test_user_without_user_namespaces_is_handed_to_the_container(docker_run):
    # A docker that only records its calls: the hand-off is tested, no container starts.
    fake = ("mkdir /tmp/bin && printf '#!/bin/sh\\necho \"$*\" >> /tmp/docker.log\\nexit 1\\n' "
            "> /tmp/bin/docker && chmod +x /tmp/bin/docker && ")
    # As a copy without tools/ has it: covered by an empty file no one may run.
    hide = "touch /tmp/.none && mount --bind /tmp/.none tools/docker-run && "
    result = framed(fake + refused("PATH=/tmp/bin:$PATH make step-03; "
                                   "echo exit=$?; echo '== docker'; cat /tmp/docker.log"),
                    user=65534, setup=hide if docker_run == "missing" else "")
    assert "exit=0" not in result.out, result
    asked = result.out.split("== docker\n", 1)[1].strip()
    if docker_run == "kept":
        assert "running it in the kit's container (tools/docker-run make step-03)" in result.out
        assert asked, result
    else:
        assert "tools/docker-run is missing" in result.err and not asked, result


def test_not_linux_goes_to_the_container(monkeypatch, capsys, tmp_path):
    from demo import __main__ as demo

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker
    monkeypatch.setattr(os, "execv", pytest.fail)  # and surely no container
    real = tuple(os.uname())
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Darwin",) + real[1:]))
    assert demo.main(["03"]) == 1
    assert capsys.readouterr().err.startswith("Namespaces are Linux's and Docker is missing")


def test_make_uses_only_the_venv_python():
    # A pyenv shim that fails loudly, first on PATH: make must never reach it.
    shim = ("mkdir /tmp/shim && for p in python python3; do "
            "printf '#!/bin/sh\\necho SHIM >&2; exit 99\\n' > /tmp/shim/$p; "
            "chmod +x /tmp/shim/$p; done && ")
    result = framed(shim + "PATH=/tmp/shim:$PATH make step-03 diff-03" + DEMO_AFTER)
    assert "@@exit 0" in result.out and "SHIM" not in result.err, result
    assert "python3 " not in in_frame("make -n step-03 diff-03 test").out


def check_help_lists(help_text, makefiles):
    """Every target a reader may type has its line in `make help`."""
    targets = set()
    for text in makefiles:
        targets |= set(re.findall(r"^([a-z][a-z-]*):(?!=)", text, re.M))
    listed = set(re.findall(r"^([a-z][a-z-]*)", help_text, re.M))
    missing = targets - listed
    assert not missing, f"make help lacks {sorted(missing)}"


def test_make_help_lists_every_target():
    result = in_frame("make --no-print-directory help")
    assert result.code == 0, result
    makefiles = [(ROOT / name).read_text() for name in ("Makefile", "docker.mk")]
    check_help_lists(result.out, makefiles)
    assert re.search(r"^step-NN: ", result.out, re.M) and re.search(r"^diff-NN: ", result.out, re.M)


def test_help_check_rejects_a_target_without_its_line():
    with pytest.raises(AssertionError, match=r"make help lacks \['secret'\]"):
        check_help_lists("test: every test\n", ["test: setup\nsecret: setup\n"])
