#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image,
# with this zip unpacked in /autograder/source. It installs what the grader
# runs (python3, ip, ps, ipcs/unshare) and nskit's pinned requirements.
# AUTOGRADER_ROOT moves /autograder elsewhere (the kit's tests use a tmp tree).
set -euo pipefail
root=${AUTOGRADER_ROOT:-/autograder}
here=$(cd "$(dirname "$0")" && pwd)

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv iproute2 procps util-linux

python3 -m venv "$root/nskit-venv"
"$root/nskit-venv/bin/pip" install --quiet --disable-pip-version-check \
    -r "$here/nskit/requirements.txt"
chmod +x "$here/run_autograder"
echo "nskit: autograder ready; it grades /autograder/submission with $root/nskit-venv/bin/python"
