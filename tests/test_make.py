"""`make step-NN`, `make diff-NN` and who may run them.

Every run happens in a throwaway frame with a root of its own (see own_root),
so the demos' mkdir /mytmp, queues and hostnames never reach the machine,
and /mytmp can be made present or missing without touching the real one.
"""
import os
import re
from shlex import quote

import pytest

from conftest import PYTHON, ROOT, in_frame, step_path

STEPS = ["00", "01", "02", "03", "04", "05", "06", "07"]
FLAGS = {"01": "CLONE_NEWNET", "02": "CLONE_NEWNS", "03": "CLONE_NEWUTS",
         "04": "CLONE_NEWIPC", "05": "CLONE_NEWPID", "06": "CLONE_NEWUSER",
         "07": "CLONE_NEWUSER"}
FRAME_HOST = "nskit-frame"
NOTICE = "You are not root: running in a user namespace where root is you."


@pytest.fixture(autouse=True)
def as_a_reader_types_it(monkeypatch):
    # Under `make test` the make in each frame would be a sub-make, and print
    # "Entering directory" lines a reader never sees.
    for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        monkeypatch.delenv(name, raising=False)


# A host worth comparing with, where no test may start a container: a known
# name, a link of its own, and every docker binary covered by an empty file.
HOST = (f"hostname {FRAME_HOST} && ip link add nskit0 type veth peer name nskit1 && "
        "touch /tmp/.no-docker && for d in $(which -a docker); do "
        "mount --bind /tmp/.no-docker $d; done; ")


def framed(script, mytmp=False, user=None):
    """in_frame on a root of its own; with user, as that uid with no caps."""
    return in_frame(script, own_root=True, mytmp=mytmp, user=user, setup=HOST)


def sections(out):
    """The demo's output, by heading: {"through steps/03_uts.py: hostname": "..."}."""
    parts = re.split(r"^── (.*)$", out.split("\nWhat you just saw:")[0], flags=re.M)
    return {head: body.strip("\n") for head, body in zip(parts[1::2], parts[2::2])}


def host_and_step(out, nn, cmd):
    seen = sections(out)
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
    step = sections(out)[f"through steps/{step_path(nn).name}: ls /"]
    assert {"usr", ROOT.parts[1], "mytmp"} <= set(step.split())


def check_hostname(out, nn):
    assert host_and_step(out, nn, "hostname") == (FRAME_HOST, "myhostname")


def check_queue(out, nn):
    (key,) = re.findall(r"^(0x[0-9a-f]+) ", sections(out)["on the host: ipcs -q"], re.M)
    assert key not in host_and_step(out, nn, "ipcs -q")[1]


def check_pids(out, nn):
    host, step = host_and_step(out, nn, "ps aux")
    assert len(processes(host)) > 1
    (alone,) = processes(step)
    assert alone.split()[1] == "1" and alone.endswith("ps aux")


def check_nobody(out, nn):
    host, step = host_and_step(out, nn, "id")
    assert host.startswith("uid=0(root)") and step.startswith("uid=65534(nobody)")


def check_files(out, nn):
    host, step = host_and_step(out, nn, "ls -la")
    assert " root root " in host
    assert " root " not in step and " nobody nogroup " in step


def check_same(out, nn):
    assert "through steps/00_skeleton.py: ip a" in sections(out)
    host, step = sections(out).values()
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

# What the frame looks like after a demo: it must match what it was before.
AFTER = ("; echo \"exit=$?\"; echo '== after'; hostname; ipcs -q | grep -c '^0x'; "
         "grep -c ' /mytmp ' /proc/self/mounts; ls -d /mytmp 2>&1")


def left_as_found(result, mytmp=False):
    after = result.out.split("== after\n", 1)[1].split()
    assert after[:3] == [FRAME_HOST, "0", "0"], result
    # The /mytmp a demo made is gone again; one that was there stays.
    assert (after[3:] == ["/mytmp"]) == mytmp, result


@pytest.mark.parametrize("nn", STEPS)
def test_step_shows_the_outcome_and_leaves_nothing(nn):
    result = framed(f"make step-{nn}" + AFTER)
    assert "exit=0" in result.out, result
    assert "What you just saw:" in result.out
    for check in CHECKS[nn]:
        check(result.out, nn)
    left_as_found(result)


@pytest.mark.parametrize("nn", STEPS[1:])
def test_step_checks_reject_the_skeleton_in_its_place(nn):
    """The checks above see the namespace, not just a heading: with the
    skeleton bound over step NN, each of them fails."""
    result = framed(f"mount --bind steps/00_skeleton.py {step_path(nn)} && "
                    f"make step-{nn}" + AFTER)
    left_as_found(result)
    for check in CHECKS[nn]:
        with pytest.raises((AssertionError, KeyError, ValueError)):
            check(result.out, nn)


@pytest.mark.parametrize("nn, flag, undo", [
    ("03", "CLONE_NEWUTS", "changed the host's hostname"),
    ("02", "CLONE_NEWNS", "left its tmpfs mounted on the host's /mytmp"),
])
def test_step_missing_its_flag_is_undone_and_named(nn, flag, undo):
    broken = f"/tmp/{step_path(nn).name}"
    result = framed(f"sed 's/{flag} | SIGCHLD/SIGCHLD/' {step_path(nn)} > {broken} && "
                    f"! cmp -s {broken} {step_path(nn)} && "
                    f"mount --bind {broken} {step_path(nn)} && make step-{nn}" + AFTER)
    assert undo in result.err and flag in result.err, result
    left_as_found(result)


@pytest.mark.parametrize("nn", STEPS)
def test_diff_shows_the_flag(nn):
    result = in_frame(f"make diff-{nn}")
    assert result.code == 0, result
    if nn == "00":
        assert result.out == ""
    else:
        assert result.out.startswith("--- steps/00_skeleton.py")
        assert re.search(rf"^\+.*{FLAGS[nn]}", result.out, re.M)
        assert not re.search(rf"^-.*{FLAGS[nn]}", result.out, re.M)


def test_unknown_step_is_named():
    result = in_frame("make step-09; echo exit=$?; make diff-09; echo exit=$?")
    assert result.err.count("There is no step 09: the steps are 00 01") == 2, result
    assert result.out.split() == ["exit=2", "exit=2"]


@pytest.mark.parametrize("nn", ["03", "05", "02"])
def test_user_gets_a_user_namespace(nn):
    result = framed(f"make step-{nn}" + AFTER, mytmp=True, user=65534)
    assert "exit=0" in result.out, result
    assert result.out.startswith(NOTICE + "\n")
    for check in CHECKS[nn]:
        check(result.out, nn)
    left_as_found(result, mytmp=True)


def test_root_gets_no_user_namespace():
    result = framed("make step-03")
    assert NOTICE not in result.out and result.code == 0, result


def test_user_without_mytmp_is_asked_for_sudo_mkdir():
    result = framed("make step-02" + AFTER, user=65534)
    assert "exit=0" not in result.out, result
    assert "run `sudo mkdir /mytmp`" in result.err
    assert len(result.err.strip().splitlines()) == 2  # the sentence, make's own line
    assert "Traceback" not in result.err


# Refuses every new user namespace, as Docker's default seccomp profile does:
# unshare(2) and clone(2) with CLONE_NEWUSER fail with EPERM, and clone3,
# whose flags a filter cannot read, is "missing", so glibc falls back to clone.
NO_USERNS = r'''
import ctypes, os, platform, struct, sys
NR = {"x86_64": (0xC000003E, 272, 56, 435), "aarch64": (0xC00000B7, 97, 220, 435)}
arch, unshare, clone, clone3 = NR[platform.machine()]
LD, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06
ALLOW, ERRNO = 0x7FFF0000, 0x00050000
prog = [(LD, 0, 0, 4), (JEQ, 0, 8, arch), (LD, 0, 0, 0), (JEQ, 5, 0, clone3),
        (JEQ, 1, 0, unshare), (JEQ, 0, 4, clone), (LD, 0, 0, 16),
        (JSET, 0, 2, 0x10000000), (RET, 0, 0, ERRNO | 1), (RET, 0, 0, ERRNO | 38),
        (RET, 0, 0, ALLOW)]
code = b"".join(struct.pack("HBBI", *insn) for insn in prog)
buf = ctypes.create_string_buffer(code)
fprog = struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(fprog)) == 0  # PR_SET_SECCOMP, FILTER
os.execvp(sys.argv[1], sys.argv[1:])
'''


def refused(script):
    return f"{PYTHON} -c {quote(NO_USERNS)} bash -c {quote(script)}"


def test_refusal_filter_refuses_user_namespaces_only():
    result = framed(refused("unshare --user true; echo userns=$?; unshare --fork true; "
                            "echo plain=$?; id -u"), user=65534)
    assert "userns=1" in result.out and "plain=0" in result.out, result


def test_user_without_user_namespaces_and_docker_is_told_to_install_it():
    result = framed(refused("NSKIT_VM=never make step-03" + AFTER), user=65534)
    assert "exit=0" not in result.out, result
    (sentence,) = [line for line in result.err.splitlines() if not line.startswith("make:")]
    assert sentence.startswith("You are not root and user namespaces are refused here "
                               "and Docker is missing: install Docker")
    assert "sudo make step-03" in sentence and NOTICE not in result.out


def test_user_without_user_namespaces_is_handed_to_the_container():
    # A docker that only records its calls: the hand-off is tested, no container starts.
    fake = ("mkdir /tmp/bin && printf '#!/bin/sh\\necho \"$*\" >> /tmp/docker.log\\nexit 1\\n' "
            "> /tmp/bin/docker && chmod +x /tmp/bin/docker && ")
    result = framed(fake + refused("PATH=/tmp/bin:$PATH make step-03; "
                                   "echo exit=$?; echo '== docker'; cat /tmp/docker.log"),
                    user=65534)
    assert "exit=0" not in result.out, result
    if os.access(ROOT / "tools" / "docker-run", os.X_OK):
        assert "running it in the kit's container (tools/docker-run make step-03)" in result.out
        assert result.out.split("== docker\n", 1)[1].strip()  # docker was asked
    else:
        assert "tools/docker-run is missing" in result.err


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
    result = framed(shim + "PATH=/tmp/shim:$PATH make step-03 diff-03" + AFTER)
    assert "exit=0" in result.out and "SHIM" not in result.err, result
    assert "python3 " not in in_frame("make -n step-03 diff-03 test").out
