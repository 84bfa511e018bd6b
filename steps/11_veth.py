#!/usr/bin/env python3
"""11 veth: 10 with a network that works, a veth pair to the host.

Beyond Part 1: the article leaves the network namespace "pretty useless",
a lone loopback, and says what Docker does next: "setup a veth interface so
that your container has it's own ip address". It is 10
(steps/10_pivot_root.py) plus a network namespace: before its "OK", the
parent makes a veth pair, a cable with two ends, and puts one end into the
child's namespace as eth0; its own end gets 10.11.0.1. The child, once it
has the "OK", gives eth0 10.11.0.2 and brings it and lo up: `ping 10.11.0.1`
from inside reaches the parent's end. It talks to the kernel as `ip` does,
over rtnetlink. `make diff-11` shows what 10 lacked.

The host's end of the pair is a link on the host: it needs root (sudo). The
pair would go with the child's namespace; the parent removes it once the
command has ended.

Usage: python3 THIS_FILE CMD [ARGS...]
"""
import ctypes
import errno
import os
import socket
import struct
import sys

STACKSIZE = 1024 * 1024
SIGCHLD, SIGINT, SIGPIPE = 17, 2, 13  # as in <signal.h>, x86_64 and arm64
SIG_DFL, SIG_IGN = 0, 1
SIGKILL = 9
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_PRIVATE, MNT_DETACH = 0x1000, 0x4000, 0x40000, 2
SYS_PIVOT_ROOT = 155 if os.uname().machine == "x86_64" else 41  # x86_64, arm64: no libc wrapper
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>
# <linux/rtnetlink.h>, <linux/if_link.h>, <linux/veth.h>, <linux/if_addr.h>
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR = 16, 17, 20
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFLA_IFNAME, IFLA_LINKINFO, IFLA_NET_NS_PID = 3, 18, 19
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP = 0x1
HOST_ADDRESS, CHILD_ADDRESS, PREFIX_LENGTH = "10.11.0.1", "10.11.0.2", 24
CHILD_END = b"eth0"

libc = ctypes.CDLL(None, use_errno=True)
# clone() calls back into Python on the child's own stack, as it calls
# child_exec in the C.
CHILD_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
PROG = os.path.basename(sys.argv[0])
# The pipe between parent and child (close-on-exec: the command never gets it).
READ_END, WRITE_END = os.pipe()
ROOTFS = os.fsencode(os.environ.get("NSKIT_ROOTFS") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), os.pardir, "rootfs")))


def die(message, status=1):
    # os._exit, not sys.exit: the clone child must never return into the
    # parent's Python code, and the flush keeps the message when stderr is a pipe.
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    os._exit(status)


def failed(call):
    return f"{call} failed: {os.strerror(ctypes.get_errno())}"


def attribute(kind, payload):
    """A netlink attribute: its length, its type, the payload, padded to 4 bytes."""
    size = 4 + len(payload)
    return struct.pack("HH", size, kind) + payload + bytes(-size % 4)


def link(name, up=False, *attributes):
    """struct ifinfomsg for the link called name (the kernel finds it by its
    name), up or down, and more attributes."""
    return (struct.pack("BxHiII", socket.AF_UNSPEC, 0, 0, IFF_UP if up else 0, IFF_UP)
            + attribute(IFLA_IFNAME, name + b"\0") + b"".join(attributes))


def address(name, ip):
    """struct ifaddrmsg: ip/PREFIX_LENGTH on the link called name."""
    try:
        index = socket.if_nametoindex(os.fsdecode(name))
    except OSError:
        raise OSError(errno.ENODEV, f"there is no link {os.fsdecode(name)} here") from None
    raw = socket.inet_aton(ip)
    return (struct.pack("BBBBi", socket.AF_INET, PREFIX_LENGTH, 0, 0, index)
            + attribute(IFA_LOCAL, raw) + attribute(IFA_ADDRESS, raw))


def network(kind, body, what, flags=0):
    """One request to the kernel's network setup over rtnetlink, as `ip`
    sends it (what: its `ip` command); raises OSError if the kernel refuses."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.send(struct.pack("IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0)
                + body)
        error, = struct.unpack_from("i", nl.recv(4096), 16)
    if error:
        raise OSError(-error, f"{what} failed: {os.strerror(-error)}")


# child_exec is the function run in the new process that clone creates.
def child_exec(stuff):
    argv = sys.argv[1:]
    # Killed by the kernel, whatever the command does, if the parent dies.
    if libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0:
        die(failed("prctl PR_SET_PDEATHSIG"))
    # Had the parent died before the line above, read() below would see the
    # pipe's end: getppid() cannot tell, it is 0 in a PID namespace of our own.
    # Our copy of the writing end must go, or read() could never see the end.
    os.close(WRITE_END)
    # Wait for "setup done": until the maps are written, we are nobody.
    if os.read(READ_END, 2) != b"OK":
        die("the parent ended before it finished setting up")
    os.close(READ_END)
    # The parent has put the pair's other end in here as eth0: it gets its
    # address, and it and the loopback come up.
    try:
        network(RTM_NEWLINK, link(b"lo", up=True), "ip link set lo up")
        network(RTM_NEWADDR, address(CHILD_END, CHILD_ADDRESS),
                f"ip addr add {CHILD_ADDRESS}/{PREFIX_LENGTH} dev eth0", NLM_F_CREATE | NLM_F_EXCL)
        network(RTM_NEWLINK, link(CHILD_END, up=True), "ip link set eth0 up")
    except OSError as error:
        die(error.strerror)
    # No mount of ours may reach the host's namespace (systemd mounts / shared),
    # and pivot_root refuses shared mounts: every mount private first.
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        die(failed("mount --make-rprivate /"))
    # pivot_root wants the new root to be a mount point: bind it onto itself.
    if libc.mount(ROOTFS, ROOTFS, None, MS_BIND | MS_REC, None) != 0:
        die(failed(f"mount --bind {os.fsdecode(ROOTFS)}"))
    # A proc of our PID namespace, mounted while the host's is still in sight:
    # in a user namespace the kernel mounts a proc only beside a visible one.
    if libc.mount(b"proc", ROOTFS + b"/proc", b"proc", 0, None) != 0:
        die(failed(f"mount proc on {os.fsdecode(ROOTFS)}/proc"))
    os.chdir(ROOTFS)
    # pivot_root(".", ".") puts the old root on top of the new one, at "/";
    # unmounting "." takes it off, with every mount of the host's below it
    # (pivot_root(2): no folder to make for the old root).
    if libc.syscall(SYS_PIVOT_ROOT, b".", b".") != 0:
        die(failed("pivot_root"))
    if libc.umount2(b".", MNT_DETACH) != 0:
        die(failed("umount the old root"))
    os.chdir("/")
    # Python set SIGPIPE to ignored, which exec would pass on to the command.
    libc.signal(SIGPIPE, ctypes.c_void_p(SIG_DFL))
    sys.stdout.flush()
    # libc's execvp, as in the C: os.execvp imports the warnings module first.
    args = [os.fsencode(arg) for arg in argv]
    libc.execvp(args[0], (ctypes.c_char_p * (len(args) + 1))(*args, None))
    if ctypes.get_errno() == errno.ENOENT:
        die(f"{argv[0]}: command not found", 127)
    die(failed(f"execvp {argv[0]}"), 126)
    return 1


def main():
    if len(sys.argv) < 2:
        print(f"usage: {PROG} CMD [ARGS...]", file=sys.stderr)
        return 2
    if not os.path.isdir(ROOTFS + b"/proc"):
        die(f"{os.fsdecode(ROOTFS)} is no root filesystem (it has no /proc): "
            "make rootfs builds one, or name yours in NSKIT_ROOTFS")
    child_stack = ctypes.create_string_buffer(STACKSIZE)
    # The stack grows down, so clone is given its top end.
    stack_top = ctypes.c_void_p(ctypes.addressof(child_stack) + STACKSIZE)
    clone_flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | SIGCHLD

    pid = libc.clone(CHILD_FUNC(child_exec), stack_top, clone_flags, None)
    if pid == -1:
        if ctypes.get_errno() == errno.EPERM:
            die("clone failed: creating namespaces needs root (CAP_SYS_ADMIN); "
                "run it with sudo, or inside the privileged container: make shell")
        die(failed("clone"))
    os.close(READ_END)
    # Only a process outside the new user namespace may map its ids. One line
    # each: uid 0 inside is our uid outside. setgroups must be denied before an
    # unprivileged parent may write gid_map, or the child could drop groups.
    for name, line in ((b"setgroups", b"deny"),
                       (b"uid_map", b"0 %d 1" % os.getuid()),
                       (b"gid_map", b"0 %d 1" % os.getgid())):
        path = b"/proc/%d/%s" % (pid, name)
        try:
            fd = os.open(path, os.O_WRONLY)
            os.write(fd, line)
            os.close(fd)
        except OSError as error:
            die(f"write {line.decode()} to {path.decode()} failed: {error.strerror}")
    # The veth pair: our end here, named after the child, the other made right
    # in the child's network namespace. Only a process outside may do it, and
    # the pair goes away with that namespace.
    host_end = b"nskit%d" % pid
    peer = link(CHILD_END, False, attribute(IFLA_NET_NS_PID, struct.pack("I", pid)))
    veth = attribute(IFLA_INFO_KIND, b"veth") + attribute(IFLA_INFO_DATA,
                                                          attribute(VETH_INFO_PEER, peer))
    try:
        network(RTM_NEWLINK, link(host_end, False, attribute(IFLA_LINKINFO, veth)),
                f"ip link add {host_end.decode()} type veth peer name eth0 netns {pid}",
                NLM_F_CREATE | NLM_F_EXCL)
        network(RTM_NEWADDR, address(host_end, HOST_ADDRESS),
                f"ip addr add {HOST_ADDRESS}/{PREFIX_LENGTH} dev {host_end.decode()}",
                NLM_F_CREATE | NLM_F_EXCL)
        network(RTM_NEWLINK, link(host_end, up=True), f"ip link set {host_end.decode()} up")
    except OSError as error:
        os.kill(pid, SIGKILL)  # before it finds the pipe closed and says so too
        root = "; a link on the host needs root: run it with sudo" if error.errno == errno.EPERM else ""
        die(error.strerror + root)
    # The child may go on: the setup is done.
    if os.write(WRITE_END, b"OK") != 2:
        die(failed("write to the pipe"))
    os.close(WRITE_END)
    # Ctrl-C reaches the command too; the parent stays to report how it ended.
    libc.signal(SIGINT, ctypes.c_void_p(SIG_IGN))
    _, status = os.waitpid(pid, 0)
    # The pair would go with the child's namespace, once the kernel gets round
    # to freeing it: removed now, its address is free for the next run.
    try:
        network(RTM_DELLINK, link(host_end), f"ip link del {host_end.decode()}")
    except OSError:
        pass  # gone already
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    code = main()
    # os._exit skips tearing the interpreter down: a third of its start-up.
    sys.stdout.flush()
    os._exit(code)
