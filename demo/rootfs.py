"""Build a small root filesystem for steps 10 and 11 (make rootfs): the
distribution's statically linked busybox, a link to it for each of its
commands, and the folders a root needs. No network: busybox comes from the
package busybox-static, already on the machine.

    python -m demo.rootfs [DIR]     build it in DIR (default: rootfs/ in the kit)

A folder already built is left as it is. Steps 10 and 11 use rootfs/ unless
NSKIT_ROOTFS names another folder.
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "rootfs"
# Where the distribution's busybox-static puts it (Debian, Ubuntu, Fedora).
CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/sbin/busybox", "/usr/sbin/busybox")
INSTALL = "apt-get install busybox-static (Fedora: dnf install busybox)"
FOLDERS = ("bin", "dev", "etc", "proc", "root", "sys", "tmp")
# Names for the ids `id` and `ls -l` show inside.
ETC = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "group": "root:x:0:\nnogroup:x:65534:\n",
}
PT_INTERP = 3  # an ELF program header asking for a dynamic loader


class Trouble(Exception):
    """Why no root filesystem could be built; the message says what to do."""


def dynamic(path):
    """Whether the ELF file at path needs a dynamic loader (and so the
    machine's libraries, which the small root will not have)."""
    with open(path, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            raise Trouble(f"{path} is not a 64-bit ELF program: install busybox-static ({INSTALL})")
        phoff, = struct.unpack_from("<Q", head, 0x20)
        size, count = struct.unpack_from("<HH", head, 0x36)
        fh.seek(phoff)
        table = fh.read(size * count)
    return any(struct.unpack_from("<I", table, i * size)[0] == PT_INTERP for i in range(count))


def find_busybox():
    for path in CANDIDATES:
        if os.path.isfile(path):
            if dynamic(path):
                raise Trouble(f"{path} is linked dynamically and would not run in a small root: "
                              f"install the static one, {INSTALL}")
            return path
    raise Trouble(f"busybox is not installed: {INSTALL}")


def build(target):
    """Build the root filesystem at target; False when one is there already."""
    target = Path(target)
    if (target / "bin" / "busybox").is_file() and (target / "proc").is_dir():
        return False
    if target.exists() and any(target.iterdir()):
        raise Trouble(f"{target} exists and is not a root filesystem built here: "
                      "remove it, or name another folder")
    busybox = find_busybox()
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed: never half a root under its name.
    staging = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=target.parent))
    try:
        for name in FOLDERS:
            (staging / name).mkdir()
        (staging / "tmp").chmod(0o1777)
        shutil.copy(busybox, staging / "bin" / "busybox")
        for applet in applets:
            if applet != "busybox" and "/" not in applet:
                (staging / "bin" / applet).symlink_to("busybox")
        for name, text in ETC.items():
            (staging / "etc" / name).write_text(text)
        staging.chmod(0o755)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True


def size(folder):
    return sum(p.lstat().st_size for p in Path(folder).rglob("*") if p.is_file()
               and not p.is_symlink())


def main(args):
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print("usage: python -m demo.rootfs [DIR]", file=sys.stderr)
        return 2
    target = Path(args[0]) if args else DEFAULT
    try:
        made = build(target)
    except Trouble as trouble:
        print(f"nskit: {trouble}.", file=sys.stderr)
        return 1
    except (OSError, subprocess.CalledProcessError) as error:
        why = getattr(error, "strerror", None) or str(error)
        print(f"nskit: cannot build the root filesystem in {target} ({why}): "
              "choose a folder you can write to.", file=sys.stderr)
        return 1
    what = "built" if made else "already there"
    print(f"{target}: a root filesystem of {size(target) >> 10} KiB, {what} "
          f"(busybox: sh, ls, mount, ps, ip, ping...).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
