"""Grading inside a throwaway virtual machine, where the machine refuses the
namespaces every graded run needs (a container under Docker's default seccomp
profile, as Gradescope, PrairieLearn and a plain `docker run` start one).

The VM is a second wall, not a replacement for the sandbox: the grader
outside finds the programs and hands them to a grader inside (remote.py),
which runs each as on a machine (`--vm never`), in its own throwaway host,
and sends back their results as data; the grader outside writes every
report from them. The VM's root is the machine's own /, read-only; one
folder is shared writable: a fresh, empty one that receives the results,
read (regular files only) once the VM has stopped.

Two VMs, the first that can run here (find):

- User-mode Linux (UML): a Linux kernel that is a program of the machine,
  booted in about two seconds, no KVM needed. It has one processor, so one
  boots per core, each grading a part of the runs (split). Its root is the machine's / by
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
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from . import ids, remote
from .catalog import ARTICLE_COMMANDS
from .rootfs import hidden_ancestor
from .text import write_whole

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ("apt-get install qemu-system-x86 linux-image-amd64 busybox-static binutils file, and "
           "pip install -r requirements-vm.txt (virtme-ng)")
UML_INSTALL = "apt-get install user-mode-linux"
KINDS = ("auto", "uml", "qemu")
# Folders the VM covers with its own tmpfs: host folders there need a share.
COVERED = ("/run", "/var/tmp", "/var/log", "/var/cache", "/dev")
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
# UMLs booted at once for one grading: one per core, at most this many.
UML_AT_ONCE = 4
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
        """Boot, run script (sh) as UML's root, stop: run_all with one part."""
        return self.run_all([(script, shared_rw, log)], shared_ro, timeout, show)

    def run_all(self, parts, shared_ro=(), timeout=BOOT_BUDGET, show=False):
        """Boot one UML per part, (script, shared_rw, log), all at once; each
        runs its script (sh) as its root, and stops. Each shared_rw and the
        folders of shared_ro are seen at their own paths: shared_rw through a
        fresh folder of that UML's, copied back (regular files only) once it
        has stopped; each of shared_ro as it is where UML's uid may read all
        of it, else a copy. With show (one part), what the script prints goes
        to stdout. Returns "UML"; NoVM when one did not run its script."""
        with tempfile.TemporaryDirectory(prefix="nskit-uml-", dir=self.scratch) as tmp:
            tmp = Path(tmp)
            os.chmod(tmp, 0o711)
            copies = [(_copy_in(p, tmp / "in" / str(i)), p)
                      for i, p in enumerate(map(Path, shared_ro)) if not self.sees(p)]
            boots, folders = [], []
            for i, (script, shared_rw, log) in enumerate(parts):
                own = tmp / f"uml-{i}"
                rw, memory = own / "rw", own / "memory"
                for folder in (own, rw, memory):
                    folder.mkdir()
                    os.chown(folder, self.uid, self.uid)
                marker = Path(shared_rw) / ".ran"
                body = script("UML") if callable(script) else script
                init = own / "init"
                init.write_text(self.init_script(rw, Path(shared_rw), copies,
                                                 f"touch {shlex.quote(str(marker))} && {body}"))
                init.chmod(0o755)
                cmd = [*self.as_uid(), self.binary, f"mem={UML_MEMORY}", "rootfstype=hostfs",
                       "rootflags=/", "ro", f"init={init}", "quiet", "noreboot",
                       # RAID's boot-time benchmarks, most of a second, for disks it never has
                       "initcall_blacklist=raid6_select_algo,calibrate_xor_blocks",
                       f"uml_dir={memory}",
                       # the kernel's console to stderr; what the script prints to stdout
                       "con=null", "con0=null,fd:2", "ssl=null", "ssl0=null,fd:1"]
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TMPDIR": str(memory),
                       "HOME": str(memory)}
                boots.append((cmd, log, (rw / ".ran", UML_BOOT), env))
                folders.append((rw, memory, shared_rw, marker))
            try:
                outs = _run_all(boots, timeout, show)
            finally:
                for _, memory, _, _ in folders:
                    shutil.rmtree(memory, ignore_errors=True)
            for rw, _, shared_rw, _ in folders:
                _copy_out(rw, shared_rw)
        for (_, _, _, marker), out in zip(folders, outs):
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
        # Powered off by the kernel's magic key, which the shell writes
        # without starting a program, while init waits (its end would be a
        # panic); by reboot(2) where that key is missing.
        lines += [f"cd {shlex.quote(str(ROOT))}", "exec >/dev/ttyS0 2>&1", body, "sync",
                  "echo o >/proc/sysrq-trigger && sleep 10",
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
    """_run_all for one VM."""
    return _run_all([(cmd, log, booted, env)], timeout, show)[0]


def _run_all(runs, timeout, show=False):
    """Run each VM's command, (cmd, log, booted, env), at once, each in a
    session of its own; on timeout, or when booted, a (marker, seconds) pair,
    finds no marker after those seconds, kill that session (the whole VM)
    by its id. With show (one VM), what it prints goes to stdout as it comes.
    Returns the last line each printed."""
    with ExitStack() as stack:
        procs, files = [], []
        sys.stdout.flush()
        try:
            for cmd, log, booted, env in runs:
                env = env or dict(os.environ, PATH=f"{Path(cmd[0]).parent}:{os.environ.get('PATH', '')}")
                out = stack.enter_context(tempfile.TemporaryFile())
                # QEMU reopens the file it writes to from its start: a pipe, never our stdout.
                procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE if show else out,
                                              stderr=out, env=env, start_new_session=True))
                files.append(out)
            late = _wait(procs, timeout, [booted for _, _, booted, _ in runs],
                         procs[0].stdout if show else None)
        finally:
            for proc in procs:
                if proc.returncode is None:  # interrupted: the VM stops with the grader
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        lasts = []
        for (_, log, _, _), proc, out, stopped in zip(runs, procs, files, late):
            out.seek(0)
            text = out.read().decode(errors="replace")
            if log:
                Path(log).write_text(text)
            lines = [line for line in text.strip().splitlines() if line.strip()]
            lasts.append(f"stopped after {stopped:.0f} s" if stopped else
                         lines[-1] if lines else f"exit status {proc.returncode}")
    return lasts


def _wait(procs, timeout, booted, pipe):
    """Wait for every VM to end, copying what one prints from pipe (if any)
    to stdout as it comes; a VM past the timeout, or whose marker of booted
    is still missing after its seconds (a KVM that hangs), is killed. Returns,
    for each, the seconds after which it was killed, or None."""
    started = time.monotonic()
    late = [None] * len(procs)
    while pipe is not None or any(proc.poll() is None for proc in procs):
        now = time.monotonic() - started
        for i, proc in enumerate(procs):
            marker, boot = booted[i] or (None, timeout)
            if proc.returncode is None and (now >= timeout or (
                    marker and now >= boot and not marker.exists())):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                late[i] = now
        if pipe is None:
            time.sleep(0.05)
        elif select.select([pipe], [], [], 0.05)[0]:
            chunk = os.read(pipe.fileno(), 1 << 16)
            if not chunk:
                pipe = None
                continue
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    return late


def _covered(path):
    return any(Path(path).is_relative_to(c) for c in COVERED)


def cores():
    """The cores this grader may use: its CPU affinity, within the CPU quota
    of the cgroup it sees as its root (a container's --cpus)."""
    n = len(os.sched_getaffinity(0))
    quota, _, period = (_read_text("/sys/fs/cgroup/cpu.max") or "max").partition(" ")
    if quota.isdigit() and period.isdigit() and int(period):
        n = min(n, -(-int(quota) // int(period)))
    return max(1, n)


def cost(program):
    """About how long a program's run takes, in runs of one article command:
    one that is not run (missing, unreadable) costs nothing."""
    return 0 if program.problem else len(ARTICLE_COMMANDS.get(program.step, ())) + 4


def split(targets, n):
    """targets, {label: [Program]}, in at most n parts of about equal cost,
    the costliest runs first, each to the part with least so far; each part
    keeps targets' order of labels and programs. Never an empty part but the
    one of no targets."""
    load, parts = [0] * n, [{} for _ in range(n)]
    every = [(label, p) for label, programs in targets.items() for p in programs]
    for label, program in sorted(every, key=lambda run: -cost(run[1])):
        k = load.index(min(load))
        load[k] += cost(program)
        parts[k].setdefault(label, []).append(program)
    parts = [{label: sorted(part[label], key=targets[label].index)
              for label in targets if label in part} for part in parts if part]
    return parts or [{}]


def grade(targets, limits, jobs, reads, why, timeout, kind=None):
    """Grade targets ({label: [Program]}) inside VMs (find(kind)) as
    `--vm never` would here, with each run's timeout UML_SLOWER or
    TCG_SLOWER times as long under UML or TCG, and return their results,
    {label: [StepResult]}, for the grader to report. User-mode Linux has one
    processor: one boots per core, each grading a part (split); the runs of
    QEMU's VM share its processors. reads are the folders the programs are in.
    One line says where it was graded. NoVM when no VM can start, or one did
    not grade its part."""
    machine, note = find(kind)
    if note:
        print(f"nskit: {note}.", file=sys.stderr, flush=True)
    started = time.monotonic()
    runs = sum(not p.problem for programs in targets.values() for p in programs)
    uml = machine.name == UML.name
    parts = split(targets, max(1, min(cores(), runs, UML_AT_ONCE)) if uml else 1)
    with tempfile.TemporaryDirectory(prefix="nskit-vm-") as tmp:
        tmp = Path(tmp)
        given, folders = tmp / "parts", []
        given.mkdir()
        os.chmod(tmp, 0o711)
        os.chmod(given, 0o755)
        for i, part in enumerate(parts):
            (given / f"{i}.json").write_text(remote.part(part, limits, jobs))
            folders.append(tmp / f"out-{i}")
            folders[-1].mkdir()
        read = [Path(p).resolve() for p in reads]
        shared_ro = [given, *read] if uml else sorted(
            {str(p) for p in (ROOT, Path(sys.prefix), given, *read) if _covered(p)})

        def script(i, out):
            def body(how):
                slower = {"TCG": TCG_SLOWER, "UML": UML_SLOWER}.get(how, 1)
                grader = shlex.join([sys.executable, "-m", "conformance", remote.COMMAND,
                                     str(given / f"{i}.json"), str(out / "results.json"),
                                     f"{slower:g}"])
                return f"{grader} >{out}/.stdout 2>{out}/.stderr; echo $? >{out}/.status"
            return body

        shares = [(script(i, out), out, tmp / f"vm-{i}.log") for i, out in enumerate(folders)]
        how = (machine.run_all(shares, shared_ro, timeout) if uml else
               machine.run(*shares[0][:2], shared_ro, timeout, log=shares[0][2]))
        results = {label: [] for label in targets}
        for i, (part, out) in enumerate(zip(parts, folders)):
            said = _read(out / ".stderr")
            sys.stderr.write(said)
            if _read(out / ".status").strip() != "0":
                raise NoVM(f"the grader inside the VM did not finish "
                           f"({_last_line(said) if said.strip() else _last(tmp / f'vm-{i}.log')})")
            try:
                for label, steps in remote.read_results(_read(out / "results.json"), part).items():
                    results[label] += steps
            except ValueError as error:
                raise NoVM(f"the grader inside the VM gave no results: {error}") from None
    seconds = time.monotonic() - started
    if how == "UML":
        at_once = f"{len(parts)} at once, one per core; " if len(parts) > 1 else ""
        print(f"graded inside User-mode Linux: {why} ({at_once}{UML_SLOWER} times the timeout; "
              f"{seconds:.1f} s with the boot)", flush=True)
    else:
        engine = ("KVM" if how == "KVM" else f"TCG, QEMU's emulator: no usable KVM, so "
                  f"{TCG_SLOWER} times the timeout")
        print(f"graded inside a VM: {why} ({engine}; {seconds:.1f} s with the boot)", flush=True)
    return {label: sorted(steps, key=lambda s: s.step) for label, steps in results.items()}


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
