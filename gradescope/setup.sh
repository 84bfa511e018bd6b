#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image,
# with this zip unpacked in /autograder/source. It installs what the grader
# runs (python3, ip, ps, ipcs/unshare) and nskit's pinned requirements, and
# what grading inside a throwaway VM needs where the container refuses
# namespaces, as Gradescope's does: User-mode Linux, which boots in seconds,
# and QEMU (a kernel, busybox and virtme-ng) where UML cannot run.
# AUTOGRADER_ROOT moves /autograder elsewhere (the kit's tests use a tmp tree).
set -euo pipefail
root=${AUTOGRADER_ROOT:-/autograder}
here=$(cd "$(dirname "$0")" && pwd)

# The distribution's kernel package: Gradescope's base image is Ubuntu.
kernel=linux-image-generic
if grep -qx 'ID=debian' /etc/os-release 2>/dev/null; then kernel=linux-image-amd64; fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv iproute2 procps util-linux
apt-get install -y -qq --no-install-recommends user-mode-linux qemu-system-x86 "$kernel" \
    busybox-static binutils file zstd

python3 -m venv "$root/nskit-venv"
"$root/nskit-venv/bin/pip" install --quiet --disable-pip-version-check \
    -r "$here/nskit/requirements.txt" -r "$here/nskit/requirements-vm.txt"
# Compiled now: User-mode Linux sees this folder read-only, and would compile
# every module at every start.
"$root/nskit-venv/bin/python" -m compileall -q "$here/nskit" >/dev/null
chmod +x "$here/run_autograder"
echo "nskit: autograder ready; it grades /autograder/submission with $root/nskit-venv/bin/python"
