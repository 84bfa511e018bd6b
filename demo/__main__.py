"""python -m demo NN: decide where the demo for step NN can run, and run it.

As root on Linux it runs right here. For an ordinary user the host side
runs right here too, showing the machine as they see it, and the step side
in a user namespace where root is them, if the kernel allows it. Elsewhere
the kit's container runs it (`tools/docker-run make step-NN`), or, without
Docker, a throwaway VM (conformance/vm.py): the same demo, as root of a
machine of its own.
"""
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import sh

from conformance import vm
from conformance.commands import ran
from demo import scenes

ROOT = Path(__file__).resolve().parent.parent
DOCKER_RUN = ROOT / "tools" / "docker-run"

USERNS = scenes.USERNS_PROC  # the most any step side needs
NOTICE = ("You are not root: the host side is the machine as you see it; the "
          "step side runs in a user namespace where root is you.")


def fail(message):
    print(message, file=sys.stderr)
    return 1


def userns_allowed():
    # Trying is the only reliable test: sysctls, seccomp filters and LSMs
    # all refuse user namespaces in their own way.
    return allowed([*USERNS, "true"])


# What the demo makes, as root: refused by seccomp filters like Docker's default.
ROOT_NS = ["unshare", "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "true"]


def allowed(argv):
    try:
        sh.Command(argv[0])(*argv[1:])
    except (sh.ErrorReturnCode, sh.CommandNotFound):
        return False
    return True


def in_vm(nn, why, machine):
    print(f"{why} and Docker is missing: running it in a throwaway VM ({machine.name}, which "
          f"boots {machine.boots}).", flush=True)
    with tempfile.TemporaryDirectory(prefix="nskit-demo-") as shared:
        status = Path(shared, "status")
        script = f"{shlex.quote(sys.executable)} -m demo {nn} 2>&1; echo $? > {status}"
        try:
            machine.run(script, shared, show=True)
        except vm.NoVM as error:
            return fail(f"The VM did not run the demo: {error}.")
        return int(status.read_text().strip() or 1) if status.exists() else 1


def in_container(nn, why, remedy):
    if not shutil.which("docker"):
        try:
            return in_vm(nn, why, vm.find()[0])
        except vm.NoVM as no_vm:
            return fail(f"{why} and Docker is missing: install Docker "
                        f"(https://docs.docker.com/get-docker/){remedy}; a VM would do too, "
                        f"but {no_vm}.")
    if not os.access(DOCKER_RUN, os.X_OK):
        return fail(f"{why} and tools/docker-run is missing from this "
                    f"checkout: restore it (git checkout tools){remedy}.")
    print(f"{why}: running it in the kit's container "
          f"(tools/docker-run make step-{nn}).", flush=True)
    os.execv(DOCKER_RUN, [str(DOCKER_RUN), "make", f"step-{nn}"])


def main(args):
    if len(args) != 1 or args[0] not in scenes.SCENES:
        return fail(f"usage: {ran().demo.format(nn='NN')}, with NN one of "
                    f"{', '.join(scenes.SCENES)}.")
    nn = args[0]
    os.chdir(ROOT)
    if os.uname().sysname != "Linux":
        return in_container(nn, "Namespaces are Linux's", "")
    if os.geteuid() == 0:
        if allowed(ROOT_NS):
            return scenes.play(nn)
        return in_container(nn, "Namespaces are refused here (a seccomp filter or security "
                                "policy, as in a container started with Docker's defaults)", "")
    if userns_allowed():
        print(NOTICE, flush=True)
        return scenes.play(nn, user=True)
    return in_container(nn, "You are not root and user namespaces are refused here",
                        f", or run it as root: sudo {ran().demo.format(nn=nn)}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
