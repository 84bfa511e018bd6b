"""Grading inside a throwaway virtual machine, where the machine refuses the
namespaces every graded run needs (a container under Docker's default seccomp
profile, as Gradescope, PrairieLearn and a plain `docker run` start one).

The VM is a second wall, not a replacement for the sandbox: the grader runs
inside it as it does on a machine (`--vm never`), every run in its own
throwaway host. virtme-ng boots the machine's kernel package in QEMU with the
machine's own / as the VM's root, exported read-only by QEMU itself (9p's
readonly=on: root inside the VM cannot remount it writable); what the VM
writes to /etc, /tmp, /var ... lands in overlays in its own memory and dies
with it. One folder is shared writable: a fresh, empty one that receives the
reports, copied out to where they were asked for once the VM has stopped.

KVM where /dev/kvm works; QEMU's emulator (TCG) where it does not or where a
KVM start fails (a nested /dev/kvm can open and still refuse the guest).
"""
import os
import platform
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ("apt-get install qemu-system-x86 linux-image-amd64 busybox-static binutils file, and "
           "pip install -r requirements-vm.txt (virtme-ng)")
# Folders the VM covers with its own tmpfs: host folders there need a share.
COVERED = ("/run", "/var/tmp", "/var/log", "/var/cache", "/dev")
# The grader's options that name a file or folder it writes.
OUTPUTS = ("--json", "--gradescope", "--junit", "--csv", "--gradescope-dir", "--prairielearn",
           "--classroom")
# ... and that name a file or folder it reads.
INPUTS = ("--target", "--submissions", "--course", "--roster")
# Drivers udev would load at boot that grading never uses; under TCG each
# costs a second or more (kvm alone about ten).
IDLE_DRIVERS = ("kvm,kvm_intel,kvm_amd,powernow_k8,acpi_cpufreq,pcspkr,iTCO_wdt,"
                "iTCO_vendor_support,i6300esb,ahci,libahci,sr_mod,cdrom,sg,aesni_intel,"
                "ghash_clmulni_intel,crc32_pclmul,crc32c_intel,sha512_ssse3,sha256_ssse3,"
                "sha1_ssse3,serio_raw,evdev,joydev,psmouse,i2c_i801,lpc_ich,button,bochs,drm,"
                "qemu_fw_cfg,intel_rapl_msr,intel_rapl_common,intel_pmc_core,rapl,floppy")
# QEMU's emulator runs a program several times slower than the machine: a run
# that fits its timeout natively must fit it there too.
TCG_SLOWER = 3
KVM_BOOT = 60  # seconds for a KVM guest to start the script, before TCG is tried
BOOT_BUDGET = 300  # seconds for a TCG boot on a busy machine, before any grading
# The VM's memory (NSKIT_VM_MEMORY): its grader, its kernel and two runs at once.
MEMORY = os.environ.get("NSKIT_VM_MEMORY", "2G")


class NoVM(Exception):
    """No VM can start here; the message names what is missing and the fix."""


def _find(name):
    """A program on PATH, or beside this Python (a venv's bin, not activated)."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if os.access(beside, os.X_OK) else None


def kernel():
    """The kernel the VM boots: NSKIT_VM_KERNEL, else the newest in /boot."""
    chosen = os.environ.get("NSKIT_VM_KERNEL")
    if chosen:
        return Path(chosen)
    found = sorted(Path("/boot").glob("vmlinuz-*"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


@dataclass
class Machine:
    vng: str
    kernel: Path

    @classmethod
    def find(cls):
        """The pieces a VM needs, or NoVM naming those that are missing."""
        missing = []
        if os.environ.get("NSKIT_VM") == "never":
            raise NoVM("NSKIT_VM is never")
        if platform.machine() != "x86_64":
            raise NoVM(f"nskit starts a VM on x86_64 only, not {platform.machine()}")
        if not shutil.which("qemu-system-x86_64"):
            missing.append("QEMU (qemu-system-x86_64)")
        image = kernel()
        if image is None:
            missing.append("a kernel in /boot")
        elif not os.access(image, os.R_OK):
            missing.append(f"a kernel this user may read ({image} is not readable: "
                           f"run as root)" if image.exists() else f"the kernel {image}")
        if not any(shutil.which(b) for b in ("busybox", "busybox-static")):
            missing.append("busybox")
        # virtme-ng reads the kernel's version and checks busybox with these
        missing += [f"{tool} ({package})" for tool, package in (("file", "file"),
                    ("strings", "binutils")) if not shutil.which(tool)]
        vng = _find("vng")
        if not vng:
            missing.append("virtme-ng (vng)")
        if missing:
            raise NoVM(f"no VM can start here: {', '.join(missing)} missing "
                       f"(install: {INSTALL})")
        return cls(vng, image)

    def kvm(self):
        """Whether to try KVM first: only trying tells whether it works."""
        return os.access("/dev/kvm", os.R_OK | os.W_OK)

    def command(self, script, shared_rw, shared_ro, kvm):
        cmd = [self.vng, "--run", str(self.kernel), "--user", "root", "--force-9p",
               "--memory", MEMORY, "--cpus", str(os.cpu_count() or 1),
               "--append", f"module_blacklist={IDLE_DRIVERS}", "--rwdir", str(shared_rw),
               "--cwd", str(ROOT), "--exec", script]
        for path in shared_ro:
            cmd[1:1] = ["--rodir", str(path)]
        if not kvm:
            cmd[1:1] = ["--disable-kvm"]
        return cmd

    def run(self, script, shared_rw, shared_ro=(), timeout=BOOT_BUDGET, log=None, show=False):
        """Boot, run script (bash) as the VM's root, stop. KVM first where it
        may work; TCG when KVM is absent or its start fails, which a script
        that never got to run tells (it writes shared_rw/.ran first).
        script may be a function of the way ("KVM" or "TCG") that gives it.
        With show, what the script prints goes straight to stdout.
        Returns "KVM" or "TCG"; NoVM when the VM did not run the script."""
        marker = Path(shared_rw) / ".ran"
        tried = []
        for kvm in ([True, False] if self.kvm() else [False]):
            how = "KVM" if kvm else "TCG"
            body = script(how) if callable(script) else script
            body = f"touch {shlex.quote(str(marker))} && {body}"
            out = _run(self.command(body, shared_rw, shared_ro, kvm), timeout, log, show,
                       (marker, KVM_BOOT if kvm else timeout))
            if marker.exists():
                return how
            tried.append(f"with {how}: {out}")
        raise NoVM(f"the VM did not start ({'; '.join(tried)})")


def _run(cmd, timeout, log, show=False, booted=None):
    """Run vng in a session of its own; on timeout, or when booted, a
    (marker, seconds) pair, finds no marker after those seconds, kill that
    session (QEMU included) by its id. Returns the last line vng printed."""
    env = dict(os.environ, PATH=f"{Path(cmd[0]).parent}:{os.environ.get('PATH', '')}")
    with tempfile.TemporaryFile() as out:
        sys.stdout.flush()
        # QEMU reopens the file it writes to from its start: a pipe, never our stdout.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if show else out,
                                stderr=out, env=env, start_new_session=True)
        try:
            _wait(proc, timeout, booted, proc.stdout if show else None)
        except subprocess.TimeoutExpired as late:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return f"stopped after {late.timeout:.0f} s"
        finally:
            if proc.returncode is None:  # interrupted: the VM stops with the grader
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        out.seek(0)
        text = out.read().decode(errors="replace")
    if log:
        Path(log).write_text(text)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _wait(proc, timeout, booted, pipe):
    """Wait for vng to end, copying what the VM prints from pipe (if any) to
    stdout as it comes; TimeoutExpired past the timeout, or when the marker
    of booted is still missing after its seconds (a KVM that hangs)."""
    started = time.monotonic()
    marker, boot = booted or (None, timeout)
    while True:
        now = time.monotonic() - started
        if now >= timeout or (marker and now >= boot and not marker.exists()):
            raise subprocess.TimeoutExpired("vng", now)
        if pipe is None:
            try:
                proc.wait(0.5)
                return
            except subprocess.TimeoutExpired:
                continue
        if select.select([pipe], [], [], 0.5)[0]:
            chunk = os.read(pipe.fileno(), 1 << 16)
            if not chunk:
                pipe = None
                continue
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()


def _covered(path):
    return any(Path(path).is_relative_to(c) for c in COVERED)


def command_line(args, parser):
    """The grader's command line for options parsed by parser, each spelt out
    in full once (an abbreviation argparse accepted, --js for --json, is
    the option it stands for), defaults left out."""
    argv = []
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        name = max(action.option_strings, key=len)
        for one in value if isinstance(value, list) else [value]:
            argv += [name, str(one)]
    return argv


def _option(argv, name):
    """The value of --name in a command line from command_line(), or None."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _rewrite(argv, outputs, default_csv):
    """argv with --vm dropped, inputs made absolute, and every output sent to
    a file of the shared folder; {shared file: where the user wants it}."""
    inner, wanted, i = [], {}, 0
    argv = list(argv)
    while i < len(argv):
        arg, value = argv[i], None
        name = arg.split("=", 1)[0]
        if name in (*OUTPUTS, *INPUTS, "--vm"):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
        i += 1
        if value is None:
            inner.append(arg)
        elif name in INPUTS:
            inner += [name, str(Path(value).resolve())]
        elif name in OUTPUTS:
            shared = outputs / name.lstrip("-")
            wanted[shared] = Path(value)
            inner += [name, str(shared)]
    if default_csv and not any(shared.name == "csv" for shared in wanted):
        shared = outputs / "csv"
        wanted[shared] = Path(default_csv)
        inner += ["--csv", str(shared)]
    return inner + ["--vm", "never"], wanted


def grade(argv, why, timeout, run_timeout):
    """Grade inside a VM: the same command line (command_line()), with --vm never inside, and
    under TCG each run's timeout (run_timeout) TCG_SLOWER times as long.
    Prints what the grader inside printed, copies its reports out, and
    returns its exit status. NoVM when no VM can start or it did not run."""
    machine = Machine.find()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nskit-vm-") as tmp:
        tmp = Path(tmp)
        outputs = tmp / "out"
        outputs.mkdir()
        submissions = _option(argv, "--submissions")
        inner, wanted = _rewrite(argv, outputs, "scores.csv" if submissions else None)
        read = [Path(v).resolve() for v in map(lambda n: _option(argv, n), INPUTS) if v]
        shared_ro = sorted({str(p) for p in (ROOT, Path(sys.prefix),
                                             *(p if p.is_dir() else p.parent for p in read))
                            if _covered(p)})

        def script(how):
            slower = ["--timeout", f"{run_timeout * TCG_SLOWER:g}"] if how == "TCG" else []
            grader = shlex.join([sys.executable, "-m", "conformance", *inner, *slower])
            return (f"{grader} >{outputs}/.stdout 2>{outputs}/.stderr; "
                    f"echo $? >{outputs}/.status")
        how = machine.run(script, outputs, shared_ro, timeout, log=tmp / "vng.log")
        status = _read(outputs / ".status").strip()
        if not status.isdigit():
            raise NoVM(f"the grader inside the VM did not finish ({_last(tmp / 'vng.log')})")
        out = _read(outputs / ".stdout")
        for shared, where in wanted.items():
            out = out.replace(str(shared), str(where))
            _copy_out(shared, where)
        sys.stdout.write(out)
        sys.stderr.write(_read(outputs / ".stderr"))
        status = int(status)
        seconds = time.monotonic() - started
        engine = ("KVM" if how == "KVM" else f"TCG, QEMU's emulator: no usable KVM, so "
                  f"{TCG_SLOWER} times the timeout")
        if status in (0, 1):
            print(f"graded inside a VM: {why} ({engine}; {seconds:.1f} s with the boot)",
                  flush=True)
        return status


# What comes out of the shared folder is read as regular files only, never
# through a link: root in the VM writes there, and a link it made to a file of
# the machine must not carry that file into a report.
def _open(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def _read(path, limit=64 << 20):
    with (_open(path) or open(os.devnull, "rb")) as fh:
        return fh.read(limit).decode(errors="replace")


def _copy_out(shared, where):
    """shared (a file or a folder of files) to where, regular files only."""
    if os.path.isdir(shared) and not os.path.islink(shared):
        for entry in os.scandir(shared):
            _copy_out(Path(entry.path), Path(where, entry.name))
        return
    source = _open(shared)
    if source is None:
        return
    with source:
        Path(where).parent.mkdir(parents=True, exist_ok=True)
        with open(where, "wb") as out:
            shutil.copyfileobj(source, out)


def _last(log):
    try:
        lines = Path(log).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "it printed nothing"
