"""The task of each step, as the docstring of its file in work/.

Each says what to add, what to look at, and which section of the article
tells the story. They name the calls the article uses but give no code: the
article and `man 2 clone` have that. Step 00 has no task, so work/00 is the
skeleton as it is.
"""
from conformance.catalog import file_name as catalog_file_name
from conformance.commands import ran

HOW = """\
Try it:     sudo python3 work/{file} {cmd}
{grade}
Article:    "{section}" in Creating containers - Part 1: Namespaces
"""
INDENT = " " * 12

TASKS = {
    "01": ("ip a", "NET Namespace", """\
01 net, your task: run the command in a new network namespace.

Add the clone flag for a new network namespace to clone_flags, beside SIGCHLD.
The skeleton defines SIGCHLD as <signal.h> does; define the clone flag you
need as a constant too, with its value from `man 2 clone` or
/usr/include/linux/sched.h.

You should see: `ip a` lists only lo, DOWN, and none of the host's links.
"""),
    "02": ("mount", "MNT Namespace", """\
02 mount, your task: give the command a mount namespace of its own, with a
tmpfs on /mytmp that the host never sees.

Add the clone flag for a new mount namespace and run `mount`: nothing
changed. Read the article on why (the new namespace starts as a copy of the
host's mounts), then in child_exec, before the exec, mount a tmpfs on /mytmp
through libc's mount(2) (ctypes passes bytes for the strings). /mytmp must
exist first: the article makes it by hand.
On a host where / is mounted shared (systemd's default) your mount would
still leak out: see "Things the article does not tell you" in steps/README.md.

You should see: `mount` lists a tmpfs on /mytmp inside, `mount` on the host
does not, and `ls /` inside still shows the host's files.
"""),
    "03": ("hostname", "UTS Namespace", """\
03 uts, your task: let the command have a hostname of its own, myhostname.

Add the clone flag for a new UTS namespace, and in child_exec, before the
exec, set the hostname through libc's sethostname(2).

You should see: `hostname` prints myhostname inside, and the host keeps its
own name.
"""),
    "04": ("ipcs -q", "IPC Namespace", """\
04 ipc, your task: hide the host's SysV IPC objects from the command.

Add the clone flag for a new IPC namespace. Make a queue on the host first
(ipcmk -Q) so that there is something to hide, and remove it afterwards
(ipcrm -q ID).

You should see: `ipcs -q` inside lists no queue, while `ipcs -q` on the host
lists yours.
"""),
    "05": ("ps aux", "PID Namespace", """\
05 pid, your task: make the command PID 1 of a PID namespace of its own.

Add the clone flag for a new PID namespace and run `ps aux`: the host's
processes are still there. Read the article on why (ps reads /proc), then
give the child a mount namespace too and, in child_exec, replace /proc with
a fresh proc mount, without touching the host's /proc.

You should see: `ps aux` lists one process, itself, as PID 1.
"""),
    "06": ("id", "USER Namespace", """\
06 user, your task: run the command in a new user namespace, with no uid map.

Add the clone flag for a new user namespace, and nothing else.

You should see: `id` shows uid=65534(nobody) gid=65534(nogroup), and
`ls -la` shows every file owned by nobody nogroup.
"""),
    "07": ("bash", "In the end...", """\
07 combined, your task: all six namespaces at once.

Put everything from 01 to 06 together: every clone flag, the tmpfs on
/mytmp, the hostname and a fresh /proc. Some of it behaves differently
inside a new user namespace: where a call fails, read why in steps/README.md.

You should see: in the shell, `ip a`, `mount`, `hostname`, `ipcs -q`,
`ps aux` and `id` each show what steps 01 to 06 showed.
"""),
}


# Beyond Part 1: each starts from the learner's own copy of an earlier step
# (catalog.BASE_STEP), as the series' isolate starts from a UTS step.
HOW_BEYOND = """\
Try it:     {sudo}python3 work/{file} {cmd}
{compare}{grade}
Article:    {section}
"""

BEYOND_TASKS = {
    "08": ("hostname", "isolate, in Deep dive into Linux namespaces", """\
08 isolate, your task: keep the parent in charge of the child it clones.

This file starts as your 03 (the skeleton if you have no work/03_uts.py yet:
do 03's task first). Add a pipe between parent and child: make it before
clone; in child_exec, close the writing end and wait in read(2) until the
parent has written "OK"; in the parent, after clone, write "OK" and close.
Before it waits, the child asks the kernel for SIGKILL when its parent dies
(prctl(2), PR_SET_PDEATHSIG); then it checks that its parent is still the
one it had, since the parent may have died just before.

You should see: `hostname` prints myhostname, as in 03. Then run
`sleep 60` through it in the background and kill the parent (kill -KILL
PID, the python3 process): the sleep is gone too, where 03's lives on.
"""),
    "09": ("id", "the user namespace post of the same series", """\
09 uid_map, your task: become root in your user namespace, without sudo.

This file starts as your 06 (the skeleton if you have no work/06_user.py
yet: do 06's task first). Add 08's pipe and death signal. Between clone and
"OK", the parent writes three files of the child, /proc/PID/setgroups
("deny"), then /proc/PID/uid_map and /proc/PID/gid_map, one line each:
"0 <your uid> 1" (and your gid). Only a process outside the new user
namespace may write them: that is why the child must wait.

You should see, as an ordinary user: `id` prints uid=0(root) gid=0(root),
`cat /proc/self/uid_map` prints 0, your uid, 1, and a file you own shows
as root's in `ls -l`. No sudo.
"""),
    "10": ("sh", "MNT Namespace in Creating containers - Part 1 (\"like using pivot_root\")", """\
10 pivot_root, your task: give the command a root filesystem of its own.

This file starts as your 09 (the skeleton if you have no work/09_uid_map.py
yet: do 09's task first). `make rootfs` builds a small root in rootfs/
(busybox); NSKIT_ROOTFS may name another folder, and the grader sets it to
the one it gives your program. Add mount and PID namespaces. In child_exec,
once the parent's "OK" has come: make every mount private, bind the new
root onto itself (pivot_root wants a mount point), mount a fresh proc on
its proc folder, then pivot_root(2) into it (libc has no wrapper: call
syscall() with the number from <asm/unistd.h>) and unmount the old root,
so that nothing of the host's stays mounted. chroot(2) is not enough: it
changes one process's root, and the host's stays mounted under it.
In a PID namespace of its own the child's getppid() is 0: 09's check of
its parent must go (the pipe's end tells it instead).

You should see, as an ordinary user: `ls /` lists the small root, `mount`
shows / and /proc and no folder of the machine, `ps` shows the shell as
PID 1. No sudo.
"""),
    "11": ("sh", "NET Namespace in Creating containers - Part 1 (\"setup a veth interface\")", """\
11 veth, your task: a network that works, a veth pair to the host.

This file starts as your 10 (the skeleton if you have no work/10_pivot_root.py
yet: do 10's task first). Add a network namespace. Between clone and "OK",
the parent makes a veth pair, puts one end into the child's network
namespace (its pid names it), gives its own end 10.11.0.1/24 and brings it
up. The child, after the "OK", gives its end 10.11.0.2/24 and brings it and
lo up. Over rtnetlink with Python's socket module (RTM_NEWLINK,
RTM_NEWADDR: steps/README.md says where to read), or by running `ip` from
the parent, as you prefer. The host's end is a link on the host: sudo.

You should see: `ip a` inside lists lo and the end you moved in, with
10.11.0.2, and none of the host's links; `ping -c 1 10.11.0.1` is answered.
The pair goes away with the command.
"""),
}


def grade_lines(nn, commands, every=True):
    """How to grade step nn, with the command that works where the exercise
    is: "Grade it:" and the command, then every step's, then what to do first."""
    lines = [f"Grade it:   {commands.grade_step(nn)}"]
    if every:
        also = f"(every step: {commands.grade})"
        if len(lines[0]) + 3 + len(also) <= 79:
            lines[0] += f"   {also}"
        else:
            lines.append(INDENT + also)
    if commands.first:
        lines.append(f"{INDENT}(once, first: {commands.first})")
    return "\n".join(lines)


def compare_line(nn, file, commands):
    """Where the kit's own step is, to compare with: its demo, and its file
    in a checkout; nothing where neither is at hand."""
    if not commands.demo:
        return ""
    diff = f"; diff steps/{file} work/{file}" if commands.checkout else ""
    return f"Compare:    {commands.demo.format(nn=nn)} runs the kit's own{diff}\n"


def docstring(nn, file, commands=None):
    """The module docstring of work/<file> for step nn: the task, then how to
    try it and grade it with the commands of where it is written."""
    commands = commands or ran()
    if nn in BEYOND_TASKS:
        cmd, section, task = BEYOND_TASKS[nn]
        sudo = "" if nn in ("09", "10") else "sudo "
        return task + "\n" + HOW_BEYOND.format(
            file=file, cmd=cmd, section=section, sudo=sudo,
            compare=compare_line(nn, file, commands),
            grade=grade_lines(nn, commands, every=False))
    cmd, section, task = TASKS[nn]
    return task + "\n" + HOW.format(file=file, cmd=cmd, section=section,
                                    grade=grade_lines(nn, commands))


def file_name(nn):
    return f"{catalog_file_name(nn)}.py"
