"""The kit's vocabulary, in one place: the steps, the six namespaces, the
clone flags. Everything else imports these names.

Words, used the same way everywhere:
  the machine   the real computer the grader or a test runs on;
  the run's host  the throwaway host a graded run gets (conformance/sandbox);
  the frame     the throwaway namespaces a test of the kit runs in (tests/).
"""

# step number -> its name, as in NN_<name>.py; graded by default.
STEP_NAMES = {
    "00": "skeleton", "01": "net", "02": "mount", "03": "uts",
    "04": "ipc", "05": "pid", "06": "user", "07": "combined",
}

# Steps beyond Part 1, from the "Deep dive into Linux namespaces" series: the
# parent holds its child on a pipe until it has set it up; then a root
# filesystem of the command's own, and a network that works, where the
# article's MNT and NET sections stop. Never graded by default; only a course
# file or --step asks for them.
BEYOND_PART_1 = {"08": "isolate", "09": "uid_map", "10": "pivot_root", "11": "veth"}

# Every step the kit has, in order.
ALL_STEPS = {**STEP_NAMES, **BEYOND_PART_1}

# The step each step beyond Part 1 is a full copy of (`make diff-NN`).
BASE_STEP = {"08": "03", "09": "06", "10": "09", "11": "10"}

# The six namespaces the article creates, as /proc/PID/ns names them.
NAMESPACES = ("ipc", "mnt", "net", "pid", "user", "uts")

# The namespaces each step's command must have of its own.
NEW_NAMESPACES = {
    "00": set(), "01": {"net"}, "02": {"mnt"}, "03": {"uts"}, "04": {"ipc"},
    "05": {"pid", "mnt"}, "06": {"user"}, "07": set(NAMESPACES),
    "08": {"uts"}, "09": {"user"}, "10": {"user", "mnt", "pid"},
    "11": {"user", "mnt", "pid", "net"},
}

# The steps that pivot into a root filesystem of their own: the folder named
# by this variable, which `make rootfs` builds (tools/rootfs.py), and which
# the grader provides in every run of theirs.
ROOTFS_VARIABLE = "NSKIT_ROOTFS"
OWN_ROOT = ("10", "11")

# <sched.h> and <signal.h>, x86_64 and arm64.
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
SIGCHLD = 17
CLONE_FLAG_OF = {"mnt": CLONE_NEWNS, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC,
                 "user": CLONE_NEWUSER, "pid": CLONE_NEWPID, "net": CLONE_NEWNET}
# namespace -> its flag's name: "mnt" -> "CLONE_NEWNS".
CLONE_FLAG_NAME = {ns: name for name, value in list(globals().items())
                   if name.startswith("CLONE_NEW") for ns, flag in CLONE_FLAG_OF.items()
                   if flag == value}

# The article's commands, per step: what its "./net ip a" and the others show,
# run by the witness once released (probe.py), each after a "$ <command>" line.
ARTICLE_COMMANDS = {"01": ["ip a"], "02": ["mount", "ls /"], "03": ["hostname"],
                    "04": ["ipcs -q"], "05": ["ps aux"], "06": ["id", "ls -la /"],
                    "00": ["hostname", "ip a"], "08": ["hostname"], "09": ["id", "ls -la /"],
                    "10": ["ls /", "mount", "ps aux"], "11": ["ip a"]}
ARTICLE_COMMANDS["07"] = [command for step in ("01", "02", "03", "04", "05", "06")
                          for command in ARTICLE_COMMANDS[step] if command != "ls /"]


def file_name(nn):
    """The file a step's program is named after: 04 -> 04_ipc."""
    return f"{nn}_{ALL_STEPS[nn]}"
