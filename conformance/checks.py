"""The table of expected outcomes: what each step must show, and a hint for
a learner when it does not.

A check looks at the evidence of one run: the View of the command inside (see
probe.py), the throwaway host before and after the run, and what the program
left running. It returns whether it passed and what it saw. Hints point at
the next thing to do, not at the code that does it.
"""
from dataclasses import dataclass

from .catalog import NAMESPACES, NEW_NAMESPACES, STEP_NAMES as STEPS
NOT_RUN = "the command's output never came back"


@dataclass
class Evidence:
    view: object          # probe.View, or None when the command's output never came back
    before: dict          # the throwaway host before the run (sandbox.snapshot)
    after: dict
    leftover: list
    output: str
    token: str


@dataclass
class Check:
    title: str
    judge: object         # Evidence -> (passed, what was seen)
    hint: str
    needs_view: bool = True


def _names(items):
    return ", ".join(items) or "none"


def _mytmp_lines(mountinfo):
    return [line for line in mountinfo.splitlines() if line.split()[4:5] == ["/mytmp"]]


def _proc_lines(mountinfo):
    return [line for line in mountinfo.splitlines() if line.split()[4:5] == ["/proc"]]


# -- outcomes --------------------------------------------------------------------

def sees_the_host(ev):
    view, host = ev.view, ev.before
    wrong = []
    if view.hostname != host["hostname"]:
        wrong.append(f"hostname {view.hostname!r}, not the host's {host['hostname']!r}")
    if sorted(view.links) != sorted(host["links"]):
        wrong.append(f"links {_names(view.links)}, not the host's {_names(host['links'])}")
    if not set(host["queues"]) <= set(view.queues):
        wrong.append("ipcs -q does not list the host's queue")
    if not any(pid == 1 and ev.token not in args for pid, args in view.ps):
        wrong.append("ps does not show the host's PID 1")
    return not wrong, "; ".join(wrong) or "the host's hostname, links, queue and processes"


def only_lo_down(ev):
    links = ev.view.links
    seen = _names(f"{name} {state}" for name, state in links.items())
    return links == {"lo": "DOWN"}, seen


def tmpfs_inside(ev):
    found = [fs for _, target, fs in ev.view.mounts if target == "/mytmp"]
    return "tmpfs" in found, f"/mytmp: {_names(found)}" if found else "nothing mounted on /mytmp"


def tmpfs_not_on_host(ev):
    leaked = len(_mytmp_lines(ev.after["mounts"])) - len(_mytmp_lines(ev.before["mounts"]))
    return leaked <= 0, f"{leaked} new mount(s) on the host's /mytmp" if leaked > 0 else "nothing"


def no_jail(ev):
    inside = {name for name, _, _ in ev.view.ls if name not in (".", "..")}
    missing = sorted(set(ev.before["root"]) - inside)
    return bool(inside) and not missing, f"missing: {_names(missing)}" if missing else "the host's files"


def myhostname(ev):
    return ev.view.hostname == "myhostname", f"hostname {ev.view.hostname!r}"


def host_hostname_kept(ev):
    before, after = ev.before["hostname"], ev.after["hostname"]
    return before == after, f"{before!r} became {after!r}" if before != after else "unchanged"


def no_queue(ev):
    raw_ok = ev.view.queues == []
    seen = _names(hex(key) for key in ev.view.queues)
    return raw_ok and ev.before["queues"] != [], f"queues: {seen}"


def pid1_alone(ev):
    ps = ev.view.ps
    first = dict(ps).get(1, "nothing")
    others = [args for pid, args in ps if pid != 1 and not args.startswith("ps ")]
    ok = ev.token in first and not others
    seen = f"PID 1 is {first[:40]!r}" + (f", and {len(others)} other process(es)" if others else "")
    return ok, seen


def host_proc_kept(ev):
    ok = ev.after["proc"] and _proc_lines(ev.after["mounts"]) == _proc_lines(ev.before["mounts"])
    return ok, "unchanged" if ok else "the host's /proc was unmounted or replaced"


def id_nobody(ev):
    return ev.view.id.startswith("uid=65534(nobody) gid=65534(nogroup)"), ev.view.id[:60]


def ls_nobody(ev):
    owners = {f"{owner}/{group}" for _, owner, group in ev.view.ls}
    return owners == {"nobody/nogroup"}, f"owners: {_names(sorted(owners))}"


# -- every step --------------------------------------------------------------------

def ran(ev):
    if ev.view is not None:
        return True, "its output came back"
    lines = [line.strip() for line in ev.output.splitlines() if line.strip() and "@@nskit" not in line]
    if not lines:
        return False, NOT_RUN
    # Python's error is its last line; where a program failed, its first.
    shown = lines if len(lines) <= 3 else [lines[0], "...", *lines[-2:]]
    return False, f"{NOT_RUN}; it printed: {' | '.join(shown)[:300]}"


def namespaces_for(step):
    def judge(ev):
        host = ev.before["ns"]
        new = {name for name in NAMESPACES if ev.view.ns.get(name, host[name]) != host[name]}
        return new == NEW_NAMESPACES[step], f"new: {_names(sorted(new))}"
    return judge


def host_unchanged(ev):
    changed = [key for key in ("hostname", "mounts", "queues", "links", "proc")
               if ev.before[key] != ev.after[key]]
    return not changed, f"changed: {_names(changed)}" if changed else "unchanged"


def nothing_left(ev):
    left = ev.leftover
    return not left, f"{len(left)} still running: {_names(a[:30] for a in left[:3])}" if left else "none"


def _namespace_title(step):
    new = sorted(NEW_NAMESPACES[step])
    if not new:
        return "runs in the host's namespaces"
    if len(new) == len(NAMESPACES):
        return "new namespaces: all six"
    return f"new namespaces: {' and '.join(new)}, no other"


OUTCOMES = {
    "00": [Check("sees what the host sees", sees_the_host,
                 "The skeleton adds no namespace: the command should see the host's "
                 "hostname, links, queues and processes. Is clone_flags only SIGCHLD?")],
    "01": [Check("ip a lists only lo, DOWN", only_lo_down,
                 "The command still sees the host's network: which namespace gives the "
                 "child a network stack of its own? (article: NET Namespace)")],
    "02": [Check("a tmpfs is mounted on /mytmp inside", tmpfs_inside,
                 "Nothing on /mytmp inside: child_exec mounts a tmpfs there before it "
                 "runs the command (article: MNT Namespace)."),
           Check("the tmpfs never shows on the host", tmpfs_not_on_host,
                 "The tmpfs reached the host: mount it in a mount namespace of the child's "
                 "own, with every mount made private first.", needs_view=False),
           Check("ls / still shows the host's files", no_jail,
                 "A mount namespace is not a jail: the command should still see the host's "
                 "files in / (no chroot, no pivot_root).")],
    "03": [Check("hostname prints myhostname inside", myhostname,
                 "child_exec should set the hostname to myhostname before it runs the "
                 "command, in a UTS namespace of its own (article: UTS Namespace)."),
           Check("the host's hostname is unchanged", host_hostname_kept,
                 "The host's hostname changed: sethostname ran in the host's UTS "
                 "namespace. Which namespace keeps it to the child?", needs_view=False)],
    "04": [Check("ipcs -q inside lists no queue", no_queue,
                 "ipcs -q inside still lists the host's queue: which namespace gives the "
                 "child SysV IPC objects of its own? (article: IPC Namespace)")],
    "05": [Check("ps shows the command as PID 1, alone", pid1_alone,
                 "ps still lists the host's processes: is the child in a new PID namespace, "
                 "and was /proc remounted inside a new mount namespace? (article: PID Namespace)"),
           Check("the host's /proc is untouched", host_proc_kept,
                 "The host's /proc changed: remount /proc only in a mount namespace of the "
                 "child's own, with every mount made private first.", needs_view=False)],
    "06": [Check("id shows nobody/nogroup", id_nobody,
                 "id should show nobody: the command runs in a new user namespace that has "
                 "no uid map yet (article: USER Namespace)."),
           Check("ls -la shows nobody/nogroup", ls_nobody,
                 "ls -la should show every file as nobody/nogroup, as seen from a user "
                 "namespace without a mapping.")],
}
OUTCOMES["07"] = [check for step in ("01", "02", "03", "04", "05", "06") for check in OUTCOMES[step]]


def checks_for(step):
    """Every check of a step, in the order reports list them."""
    return [
        Check("runs the command it is given", ran,
              "Nothing came back from the command: does child_exec exec sys.argv[1:], "
              "and does the parent wait for the child?", needs_view=False),
        Check(_namespace_title(step), namespaces_for(step),
              "clone_flags decides which namespaces the child gets: it should hold this "
              "step's namespace(s) and SIGCHLD, nothing else."),
        *OUTCOMES[step],
        Check("leaves the host unchanged", host_unchanged,
              "The host's hostname, mounts, queues, links or /proc changed: whatever the "
              "child changes must happen in namespaces of its own.", needs_view=False),
        Check("leaves no process running", nothing_left,
              "Processes outlived the program: the parent waits for its child, and the "
              "command's own children end with it.", needs_view=False),
    ]
