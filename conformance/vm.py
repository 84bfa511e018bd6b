"""Grading inside a throwaway virtual machine, where the machine refuses the
namespaces every graded run needs (a container under Docker's default seccomp
profile, as Gradescope, PrairieLearn and a plain `docker run` start one).

The VM is a second wall, not a replacement for the sandbox: the grader runs
inside it as it does on a machine (`--vm never`), every run in its own
throwaway host. Its root is the machine's own /, read-only; one folder is
shared writable: a fresh, empty one that receives the reports, copied out
(regular files only) to where they were asked for once the VM has stopped.

Two VMs, the first that can run here (find):

- User-mode Linux (UML): a Linux kernel that is a program of the machine,
  booted in about two seconds, no KVM needed. Its root is the machine's / by
  hostfs, whose every access is a system call of the UML process: UML runs
  as an unused uid of its own, so what its root could ever write on the
  machine is what that nobody may (the shared folder, world-writable ones),
  however it remounts. Its processes are processes of the machine, traced by
  its kernel: the container around it stays the outer wall.
- QEMU (virtme-ng) boots the machine's kernel package with / exported
  read-only by QEMU itself (9p's readonly=on); what the VM writes to /etc,
  /tmp, /var ... lands in overlays in its own memory and dies with it. KVM
  where /dev/kvm works; QEMU's emulator (TCG) where it does not or where a
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
from importlib.util import find_spec
from pathlib import Path

from . import ids
from .rootfs import hidden_ancestor
from .text import write_whole

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ("apt-get install qemu-system-x86 linux-image-amd64 busybox-static binutils file, and "
           "pip install -r requirements-vm.txt (virtme-ng)")
UML_INSTALL = "apt-get install user-mode-linux"
KINDS = ("auto", "uml", "qemu")
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
# UML has one processor: its grader and one run at a time.
UML_MEMORY = "512M"
# A program runs slower in UML than on the machine (every system call and page
# fault is a round trip through its kernel): the timeout grows as under TCG.
UML_SLOWER = 3
UML_BOOT = 30  # seconds for UML to start the script, however busy the machine
UML_MODULES = Path("/usr/lib/uml/modules")
CAP_DAC_READ_SEARCH = 2
# Where UML's init and shared folder go: a folder UML sees (not below the
# /dev and /run of its own), on a mount that allows exec, as hostfs asks the
# machine whether init may run. Its memory file, mapped executable, goes there
# too, never in /dev/shm: Docker's is noexec, and a machine's is everyone's to
# see while the VM runs.
SCRATCH = (os.environ.get("TMPDIR"), "/tmp", "/var/tmp")
HIDDEN_FROM_UML = ("/dev", "/run", "/proc", "/sys")


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
    """QEMU, through virtme-ng."""
    vng: str
    kernel: Path
    name, boots = "QEMU", "in half a minute without KVM"

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


class UML:
    """User-mode Linux, booted with the machine's / as its root, read-only:
    it runs as an unused uid that may write none of the machine's files,
    and reads them all (CAP_DAC_READ_SEARCH, alone) where the grader may
    grant that, else what all may read, with copies of the grader's inputs.
    The init it runs (init_script) mounts what the grader needs, runs the
    script, and powers off: an init that ends makes a kernel panic."""
    name, boots = "User-mode Linux", "in a few seconds"

    def __init__(self, binary, uid, reads_all, scratch):
        self.binary, self.uid, self.reads_all, self.scratch = binary, uid, reads_all, scratch

    @classmethod
    def find(cls):
        """UML, or NoVM: "not installed", or one sentence on why it cannot run."""
        if os.environ.get("NSKIT_VM") == "never":
            raise NoVM("NSKIT_VM is never")
        binary = os.environ.get("NSKIT_VM_UML") or shutil.which("linux.uml")
        if not binary or not os.access(binary, os.X_OK):
            raise NoVM(f"User-mode Linux is not installed ({UML_INSTALL})")
        if platform.machine() != "x86_64":
            raise NoVM(f"nskit starts User-mode Linux on x86_64 only, not {platform.machine()}")
        if os.geteuid() != 0 or not ids.in_the_machines_user_namespace():
            raise NoVM("it runs only for the machine's root, who can run it as an unused uid "
                       "that may write none of the machine's files")
        if not shutil.which("setpriv"):
            raise NoVM("setpriv (util-linux), which starts it as an unused uid, is missing")
        if _read_text("/proc/sys/kernel/yama/ptrace_scope") == "3":
            raise NoVM("ptrace is disabled here (kernel.yama.ptrace_scope is 3), and its "
                       "kernel traces every process it runs")
        scratch = next((d for d in SCRATCH if d and _exec_allowed(d) and not any(
            Path(d).is_relative_to(h) for h in HIDDEN_FROM_UML)), None)
        if scratch is None:
            raise NoVM("no folder for its memory file allows exec here (/tmp and /var/tmp "
                       "are noexec): set TMPDIR to one that does")
        uid = ids.unused_range(1, base=ids.unused_range() + ids.RANGE)
        machine = cls(binary, uid, _capable(CAP_DAC_READ_SEARCH), Path(scratch))
        needed = [ROOT / "conformance" / "cli.py", Path(os.__file__), Path(find_spec("tabulate").origin)]
        probe = subprocess.run([*machine.as_uid(), sys.executable, "-S", "-c",
                                "import sys; [open(p, 'rb').close() for p in sys.argv[1:]]",
                                *map(str, needed)], capture_output=True, text=True)
        if probe.returncode != 0:
            raise NoVM(f"the unused uid it runs as cannot run nskit's Python "
                       f"({_last_line(probe.stderr)}): make nskit and its Python readable by all")
        return machine

    def as_uid(self):
        """The command line prefix that runs a program as UML's uid."""
        # hostfs asks access(2) too, which drops capabilities for a uid other
        # than root, unless no_setuid_fixup says otherwise.
        caps = ["--inh-caps=-all,+dac_read_search", "--ambient-caps=-all,+dac_read_search",
                "--bounding-set=-all,+dac_read_search", "--securebits=+no_setuid_fixup"] \
            if self.reads_all else ["--inh-caps=-all", "--bounding-set=-all"]
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                *caps, "--no-new-privs", "--"]

    def run(self, script, shared_rw, shared_ro=(), timeout=BOOT_BUDGET, log=None, show=False):
        """Boot, run script (sh) as UML's root, stop. shared_rw and the
        folders of shared_ro are seen at their own paths: shared_rw through a
        fresh folder of UML's, copied back (regular files only) once it has
        stopped; each of shared_ro as it is where UML's uid may read all of
        it, else a copy. Returns "UML"; NoVM when it did not run the script."""
        with tempfile.TemporaryDirectory(prefix="nskit-uml-", dir=self.scratch) as tmp:
            tmp = Path(tmp)
            rw = tmp / "rw"
            memory = tmp / "memory"
            for folder in (rw, memory):
                folder.mkdir(exist_ok=True)
                os.chown(folder, self.uid, self.uid)
            os.chmod(tmp, 0o711)
            copies = [(_copy_in(p, tmp / "in" / str(i)), p)
                      for i, p in enumerate(map(Path, shared_ro)) if not self.sees(p)]
            marker = Path(shared_rw) / ".ran"
            body = script("UML") if callable(script) else script
            init = tmp / "init"
            init.write_text(self.init_script(rw, Path(shared_rw), copies,
                                             f"touch {shlex.quote(str(marker))} && {body}"))
            init.chmod(0o755)
            cmd = [*self.as_uid(), self.binary, f"mem={UML_MEMORY}", "rootfstype=hostfs",
                   "rootflags=/", "ro", f"init={init}", "quiet", "noreboot", f"uml_dir={memory}",
                   # the kernel's console to stderr; what the script prints to stdout
                   "con=null", "con0=null,fd:2", "ssl=null", "ssl0=null,fd:1"]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(memory),
                   "HOME": str(memory)}
            try:
                out = _run(cmd, timeout, log, show, (rw / ".ran", UML_BOOT), env=env)
            finally:
                shutil.rmtree(memory, ignore_errors=True)
            _copy_out(rw, shared_rw)
        if not marker.exists():
            raise NoVM(f"User-mode Linux did not start ({out})")
        return "UML"

    def sees(self, path):
        """Whether UML's root sees all of path, at its own path."""
        return not any(path.is_relative_to(h) for h in HIDDEN_FROM_UML) and (
            self.reads_all or _readable(path))

    def init_script(self, rw, shared_rw, copies, body):
        """UML's init: a writable /run, veth, the shared folder (rw, a
        folder of the machine's, at shared_rw), each copy at the path it is
        a copy of, then body."""
        lines = ["#!/bin/sh", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "export PATH TMPDIR=/run/tmp", "exec >/dev/console 2>&1",
                 "mount -t proc -o nosuid,nodev,noexec proc /proc",
                 "mount -t sysfs -o nosuid,nodev,noexec sysfs /sys",
                 "mount -t cgroup2 cgroup2 /sys/fs/cgroup",
                 "mount -t tmpfs -o mode=0755 tmpfs /run", "mkdir -m 1777 /run/tmp /dev/shm",
                 "mount -t tmpfs -o mode=1777 tmpfs /dev/shm",
                 # a step's placeholder veth pair: the driver is a module in UML
                 f"insmod {UML_MODULES}/$(uname -r)/kernel/drivers/net/veth.ko"]
        covered = set()
        for source, target in [(rw, shared_rw), *copies]:
            anchor = None if self.reads_all else hidden_ancestor(target)
            if anchor is not None and anchor != target and anchor not in covered:
                # Folders UML's uid cannot enter: the target is made in a tmpfs over them.
                covered.add(anchor)
                lines.append(f"mount -t tmpfs -o mode=0755 nskit {shlex.quote(str(anchor))}")
            if anchor not in (None, target) or target.is_relative_to("/run"):
                folder = target if source.is_dir() else target.parent
                lines.append(f"mkdir -p {shlex.quote(str(folder))}")
                if not source.is_dir():
                    lines.append(f"touch {shlex.quote(str(target))}")
            # The shared folder by hostfs, writable; a copy bound from UML's read-only /.
            lines.append(f"mount -t hostfs -o {shlex.quote(str(source))} nskit {shlex.quote(str(target))}"
                         if source == rw else
                         f"mount --bind {shlex.quote(str(source))} {shlex.quote(str(target))}")
        lines += [f"cd {shlex.quote(str(ROOT))}", "exec >/dev/ttyS0 2>&1", body, "sync",
                  f"{shlex.quote(sys.executable)} -S -c 'import ctypes; "
                  f"ctypes.CDLL(None).reboot(0x4321FEDC)'",  # LINUX_REBOOT_CMD_POWER_OFF
                  "poweroff -f"]
        return "\n".join(lines) + "\n"


def find(kind=None):
    """The VM to grade in: User-mode Linux where it is installed and can run
    here, else QEMU; kind (uml, qemu; NSKIT_VM_KIND) asks for one. Returns
    (machine, note): note says why UML was passed over where it is installed.
    NoVM names what is missing."""
    kind = kind or os.environ.get("NSKIT_VM_KIND", "auto")
    if kind == "qemu":
        return Machine.find(), None
    try:
        return UML.find(), None
    except NoVM as error:
        if kind == "uml":
            raise NoVM(f"User-mode Linux cannot grade here: {error}") from None
        installed = "not installed" not in str(error)
        note = f"User-mode Linux cannot run here: {error}; QEMU grades instead" if installed else None
        try:
            return Machine.find(), note
        except NoVM as no_qemu:
            raise NoVM(f"{no_qemu}; nor can User-mode Linux: {error}") from None


def _read_text(path):
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _exec_allowed(folder):
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_NOEXEC == 0 and os.access(folder, os.W_OK))
    except OSError:
        return False


def _capable(cap):
    """Whether this process may hand capability cap on (its bounding set has it)."""
    for line in (_read_text("/proc/self/status") or "").splitlines():
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) >> cap & 1)
    return False


def _last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "it printed nothing"


def _readable(path):
    """Whether other users may read all of path: its folders and files."""
    if hidden_ancestor(path) is not None:
        return False
    if not path.is_dir():
        return bool(path.stat().st_mode & 0o004)
    for folder, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            mode = os.lstat(os.path.join(folder, name)).st_mode
            if stat.S_ISLNK(mode):
                continue
            need = 0o005 if stat.S_ISDIR(mode) else 0o004
            if mode & need != need:
                return False
    return True


def _copy_in(path, copy):
    """A copy of path that all may read (its .git left out: never graded)."""
    copy.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(copy.parent, 0o755)
    if path.is_dir():
        shutil.copytree(path, copy, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    else:
        shutil.copyfile(path, copy)
    for folder, dirs, files in os.walk(copy):
        os.chmod(folder, 0o755)
        for name in files:
            target = os.path.join(folder, name)
            if not os.path.islink(target):
                os.chmod(target, os.stat(target).st_mode | 0o444)
    return copy


def _run(cmd, timeout, log, show=False, booted=None, env=None):
    """Run the VM's command in a session of its own; on timeout, or when
    booted, a (marker, seconds) pair, finds no marker after those seconds,
    kill that session (the whole VM) by its id. Returns the last line it
    printed."""
    env = env or dict(os.environ, PATH=f"{Path(cmd[0]).parent}:{os.environ.get('PATH', '')}")
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


def grade(argv, why, timeout, run_timeout, kind=None):
    """Grade inside a VM (find(kind)): the same command line (command_line()),
    with --vm never inside, and under TCG or UML each run's timeout
    (run_timeout) TCG_SLOWER or UML_SLOWER times as long. Prints what the
    grader inside printed, copies its reports out, and returns its exit
    status. NoVM when no VM can start or it did not run."""
    machine, note = find(kind)
    if note:
        print(f"nskit: {note}.", file=sys.stderr, flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nskit-vm-") as tmp:
        tmp = Path(tmp)
        outputs = tmp / "out"
        outputs.mkdir()
        submissions = _option(argv, "--submissions")
        inner, wanted = _rewrite(argv, outputs, "scores.csv" if submissions else None)
        read = [Path(v).resolve() for v in map(lambda n: _option(argv, n), INPUTS) if v]
        if machine.name == UML.name:
            shared_ro = read  # each at its own path, a copy where UML's uid may not read it
        else:
            shared_ro = sorted({str(p) for p in (ROOT, Path(sys.prefix),
                                                 *(p if p.is_dir() else p.parent for p in read))
                                if _covered(p)})

        def script(how):
            slower = {"TCG": TCG_SLOWER, "UML": UML_SLOWER}.get(how)
            slower = ["--timeout", f"{run_timeout * slower:g}"] if slower else []
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
        if status in (0, 1) and how == "UML":
            print(f"graded inside User-mode Linux: {why} ({UML_SLOWER} times the timeout; "
                  f"{seconds:.1f} s with the boot)", flush=True)
        elif status in (0, 1):
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
        write_whole(where, source)


def _last(log):
    try:
        return _last_line(Path(log).read_text(errors="replace"))
    except OSError:
        return "no log"
