"""The table of expected outcomes: what each step must show, and a hint for
a learner when it does not.

A check reads the kernel's facts about the command the program ran (the
witness, see witness.py), the run's host before and after the run, and what
the program left running; never what the command printed. Checks depend on
each other, as check50's do: a check whose needs do not all pass is skipped,
"skipped: needs <title>", and earns nothing, so one cause shows as one
failure. A step's checks of the program's manners (it ran its command,
waited for it, left the host as it was) earn only when the step's own
outcome holds. Hints point at the next thing to do, not at the code that
does it, and each says what was seen.
"""
from dataclasses import dataclass, field

from .catalog import BEYOND_PART_1, NAMESPACES, NEW_NAMESPACES, SIGCHLD
from .witness import OVERFLOW_ID, mapped

NOT_RUN = "the command never ran"
SKIPPED = "skipped: needs "
RAN = "runs the command it is given"
WAITS = "waits for its command"
HOST = "leaves the host unchanged"
NO_PROCESS = "leaves no process running"


@dataclass
class Evidence:
    witness: dict         # the kernel's facts about the command (witness.observe), or None
    watch: dict           # how it was started and released (witness.Watch.result), or {}
    before: dict          # the run's host before the run (runinit.snapshot)
    after: dict
    leftover: list
    output: str           # what the program printed: only ever shown
    propagation: str = "shared"


@dataclass
class Check:
    title: str
    judge: object         # Evidence -> (passed, seen) or (passed, seen, hint)
    hint: str
    needs: tuple = ()     # titles of the checks it needs
    outcome: bool = False  # part of what the step is for (see checks_for)
    needs_outcome: bool = False  # earns only when the step's outcome holds
    after_all: bool = False  # needs every other check of its step but NO_PROCESS


def _names(items):
    return ", ".join(items) or "none"


def _mounted_on(mounts, point):
    """The file system type on top at a mount point, or None."""
    return next((fs for _, target, fs in reversed(mounts) if target == point), None)


def _mountinfo_lines(mountinfo, point):
    return [line for line in mountinfo.splitlines() if line.split()[4:5] == [point]]


WHY_SHARED = ("The run's host mounts / shared, as systemd hosts do today (the article's 2014 "
              "hosts mounted it private): a mount namespace copied from it stays joined to it "
              "until the child makes all of its mounts private, and only then ")


# -- outcomes --------------------------------------------------------------------

def sees_the_host(ev):
    w, host = ev.witness, ev.before
    wrong = []
    if w["hostname"] != host["hostname"]:
        wrong.append(f"hostname {w['hostname']!r}, not the host's {host['hostname']!r}")
    if sorted(w["links"]) != sorted(host["links"]):
        wrong.append(f"links {_names(w['links'])}, not the host's {_names(host['links'])}")
    if not set(host["queues"]) <= set(w["queues"]):
        wrong.append("not the host's SysV queue")
    if w["root"] != ev.watch["host"]["root"]:
        wrong.append("not the host's /")
    return not wrong, "; ".join(wrong) or "the host's hostname, links, queue and /"


def only_lo_down(ev):
    links = ev.witness["links"]
    seen = "links: " + _names(f"{name} {state}" for name, state in links.items())
    return links == {"lo": "DOWN"}, seen


def tmpfs_inside(ev):
    found = _mounted_on(ev.witness["mounts"], "/mytmp")
    return found == "tmpfs", f"/mytmp: {found}" if found else "nothing mounted on /mytmp"


def tmpfs_not_on_host(ev):
    leaked = len(_mountinfo_lines(ev.after["mounts"], "/mytmp")) - \
        len(_mountinfo_lines(ev.before["mounts"], "/mytmp"))
    if leaked <= 0:
        return True, "nothing"
    seen = f"{leaked} new mount(s) on the host's /mytmp"
    if ev.propagation == "shared":
        return False, seen, (WHY_SHARED + "does the tmpfs stay in the child's. Which mount "
                             "call makes every mount of the child's namespace private?")
    return False, seen


def no_jail(ev):
    w = ev.witness
    if w["root"] == ev.watch["host"]["root"]:
        return True, "the host's /"
    inside = {name for name, _, _ in w["root_entries"]}
    missing = sorted(set(ev.before["root"]) - inside)
    return False, f"/ is another folder; missing: {_names(missing[:8])}"


def myhostname(ev):
    return ev.witness["hostname"] == "myhostname", f"hostname {ev.witness['hostname']!r}"


def host_hostname_kept(ev):
    before, after = ev.before["hostname"], ev.after["hostname"]
    return before == after, f"{before!r} became {after!r}" if before != after else "unchanged"


def no_queue(ev):
    queues = ev.witness["queues"]
    return not queues and ev.before["queues"] != [], f"queues: {_names(hex(k) for k in queues)}"


def pid1_alone(ev):
    w = ev.witness
    inner, proc = w["nspid"][-1], w["proc"]
    if inner != 1:
        return False, f"the command is PID {inner} of its PID namespace, not 1", (
            "The command must be the first process of its new PID namespace: the child that "
            "clone makes runs it, and nothing runs before it there (article: PID Namespace).")
    if proc["kind"] == "other":
        return False, (f"PID 1 of a new PID namespace, but its /proc is the host's: ps lists "
                       f"the host's {proc['count']} processes"), (
            "ps reads /proc, and the command's /proc is still the host's: remount /proc in the "
            "child, in its own mount namespace, before it runs the command (article: PID "
            "Namespace).")
    if proc["kind"] != "own":
        return False, f"PID 1, but no proc on its /proc ({proc.get('fstype') or 'nothing'}): ps lists nothing", (
            "ps reads /proc, and nothing is mounted there: mount a fresh proc on /proc in the "
            "child, in its own mount namespace (article: PID Namespace).")
    others = proc["count"] - 1
    if others:
        return False, f"PID 1, and {others} other process(es) in its PID namespace", (
            "The command should be alone in its PID namespace: start nothing else in it.")
    return True, "PID 1 of its own PID namespace, alone, with a /proc of that namespace"


def host_proc_kept(ev):
    ok = ev.after["proc"] and \
        _mountinfo_lines(ev.after["mounts"], "/proc") == _mountinfo_lines(ev.before["mounts"], "/proc")
    if ok:
        return True, "unchanged"
    seen = "the host's /proc was unmounted or replaced"
    if ev.propagation == "shared":
        return False, seen, (WHY_SHARED + "do an unmount and a mount of /proc stay in the "
                             "child's. Which mount call makes every mount of the child's "
                             "namespace private?")
    return False, seen


def _id_names(uid, gid):
    def name(n, nobody):
        return {0: "root", OVERFLOW_ID: nobody}.get(n, str(n))
    return f"uid={uid}({name(uid, 'nobody')}) gid={gid}({name(gid, 'nogroup')})"


def id_nobody(ev):
    w = ev.witness
    uid, gid = mapped(w["uid_map"], w["uid"]), mapped(w["gid_map"], w["gid"])
    return uid == gid == OVERFLOW_ID, f"id: {_id_names(uid, gid)}"


def ls_nobody(ev):
    w = ev.witness
    owners = {f"{'nobody' if mapped(w['uid_map'], u) == OVERFLOW_ID else mapped(w['uid_map'], u)}/"
              f"{'nogroup' if mapped(w['gid_map'], g) == OVERFLOW_ID else mapped(w['gid_map'], g)}"
              for _, u, g in w["root_entries"]}
    return owners == {"nobody/nogroup"}, f"owners in ls -la /: {_names(sorted(owners)[:6])}"


# -- every step --------------------------------------------------------------------

def last_words(output):
    """The program's own last line: its one-sentence error, or the line of a
    traceback that names the error."""
    lines = [line.strip() for line in output.splitlines() if line.strip()
             and not line.startswith("[... ")]
    return lines[-1][:300] if lines else None


def ran(ev):
    if ev.witness is not None:
        copies = ev.watch.get("copies", 1)
        return True, "it ran, and was observed" + (
            f" (the first of {copies} copies)" if copies > 1 else "")
    if ev.watch.get("error"):
        return False, f"{NOT_RUN}: {ev.watch['error']}", (
            "The command was started but could not be observed: it must keep running until "
            "it ends by itself.")
    words = last_words(ev.output)
    if words:
        return False, f"{NOT_RUN}; the program's last words: {words}", (
            "The program stopped before its command ran: its last words say where. Once "
            "that is fixed, child_exec should exec sys.argv[1:].")
    return False, f"{NOT_RUN}, and the program printed nothing", (
        "Nothing ran the command: does child_exec exec sys.argv[1:], and does the parent wait "
        "for the child?")


def waits(ev):
    watch = ev.watch
    if watch.get("waited"):
        return True, "its parent waited for it"
    signal = watch.get("exit_signal")
    if signal is not None and signal != SIGCHLD:
        return False, (f"the program ended before its command started: the child was cloned "
                       f"with exit signal {signal}, not SIGCHLD, so its parent's waitpid "
                       f"found no child"), (
            "What lets the parent wait for a child made by clone? The child's exit signal is "
            "the low byte of clone's flags, and waitpid waits for SIGCHLD children.")
    return False, "the program ended while its command still ran", (
        "The parent must wait for the child it cloned (waitpid) before it ends: what lets a "
        "parent wait for a child made by clone?")


TOPIC = {
    "00": "The skeleton adds no namespace: clone_flags should ask for none.",
    "01": "The command shares the host's network: which namespace gives the child a network "
          "stack of its own? (article: NET Namespace)",
    "02": "The command shares the host's mounts: a tmpfs on /mytmp that only the child sees "
          "needs a mount namespace of the child's own (article: MNT Namespace).",
    "03": "The command shares the host's hostname: setting it to myhostname needs a UTS "
          "namespace of the child's own (article: UTS Namespace).",
    "04": "The command shares the host's SysV IPC objects: which namespace gives the child IPC "
          "objects of its own? (article: IPC Namespace)",
    "05": "The command shares the host's processes: it should be PID 1 of a PID namespace of "
          "its own, with a mount namespace for a fresh /proc (article: PID Namespace).",
    "06": "The command is still the host's root: in a new user namespace with no uid map yet "
          "it becomes nobody (article: USER Namespace).",
    "07": "All six at once: the child needs a new network, mount, UTS, IPC, PID and user "
          "namespace.",
    "08": "08 is 03's UTS namespace with a parent in charge: the child needs a UTS namespace "
          "of its own, and no other.",
    "09": "09 is 06's user namespace with a parent in charge: the child needs a user "
          "namespace of its own, and no other.",
}


def namespaces_for(step):
    def judge(ev):
        host = ev.watch["host"]["ns"]
        new = {name for name in NAMESPACES if ev.witness["ns"][name] != host[name]}
        want = NEW_NAMESPACES[step]
        seen = f"new: {_names(sorted(new))}"
        if new == want:
            return True, seen
        if want - new:
            return False, seen, TOPIC[step]
        return False, seen, (f"clone_flags asks for more than this step needs: the command also "
                             f"has a new {' and '.join(sorted(new - want))} namespace. Which "
                             f"flags does this step need, and which come later?")
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


# -- beyond Part 1: a parent in charge of its child ---------------------------------

def starts_after_ok(ev):
    start = ev.watch.get("start")
    if start is None:
        return False, "the grader could not follow the parent and its child: " + (
            ev.watch.get("trace_error") or "no child of the program ran the command")
    if start["early"]:
        return False, ("the command started while its parent was held, before it could "
                       "write anything"), (
            "The child ran the command without waiting: it must block (read the pipe) until "
            "the parent writes \"OK\", so that the parent can set it up first.")
    return True, "the command started only once its parent went on"


def dies_with_parent(ev):
    death = ev.watch.get("death")
    if death is None:
        return False, "the command was not seen at its end with its parent alive", (
            "The command must still be the parent's child when it ends: the parent waits "
            "for it.")
    if death["died"]:
        return True, death["seen"]
    return False, death["seen"], (
        "The command must die with its parent whatever it does: the child asks the kernel "
        "for a death signal (prctl PR_SET_PDEATHSIG) that nothing can catch or ignore.")


def root_inside(ev):
    w = ev.witness
    parent = w.get("parent") or {}
    uid, gid = mapped(w["uid_map"], w["uid"]), mapped(w["gid_map"], w["gid"])
    seen = (f"id: {_id_names(uid, gid)}; uid_map {_map_text(w['uid_map'])}, gid_map "
            f"{_map_text(w['gid_map'])}; the parent is uid {parent.get('uid')} gid "
            f"{parent.get('gid')} outside")
    want_uid = [(0, parent.get("uid"), 1)]
    want_gid = [(0, parent.get("gid"), 1)]
    if w["uid_map"] == want_uid and w["gid_map"] == want_gid and uid == gid == 0:
        return True, seen
    if not w["uid_map"] or not w["gid_map"]:
        missing = " and ".join(n for n in ("uid_map", "gid_map") if not w[n])
        return False, seen, (f"The child's {missing} is empty: the parent writes \"0 <its uid> "
                             f"1\" to /proc/CHILD/uid_map and \"0 <its gid> 1\" to gid_map, "
                             f"from outside the new user namespace, before it says OK.")
    return False, seen, ("Each map is one line, \"0 <the parent's id> 1\": root inside is the "
                         "parent's uid and gid outside, and nothing else is mapped.")


def _map_text(id_map):
    return "; ".join(" ".join(map(str, line)) for line in id_map) or "empty"


def setgroups_denied(ev):
    state = ev.witness.get("setgroups")
    return state == "deny", f"setgroups: {state}", (
        "The parent writes \"deny\" to /proc/CHILD/setgroups before the gid map: an "
        "ordinary user may not map a gid otherwise, and the child must not drop the "
        "groups that keep it out of files.")


def maps_before_start(ev):
    start = ev.watch.get("start")
    if start is None:
        return False, "the grader could not see the command start"
    empty = [n for n in ("uid_map", "gid_map") if not start[n]]
    if empty:
        return False, f"when the command started its {' and '.join(empty)} {'were' if len(empty) > 1 else 'was'} empty", (
            "The parent must write the maps before it says OK: a command that starts first "
            "runs as nobody until they appear.")
    return True, "both maps were written when the command started"


TMPFS_IN = "a tmpfs is mounted on /mytmp inside"
MYHOSTNAME = "hostname prints myhostname inside"
PID1 = "ps shows the command as PID 1, alone"

OUTCOMES = {
    "00": [Check("sees what the host sees", sees_the_host,
                 "The skeleton adds no namespace: the command should see the host's "
                 "hostname, links, queues and /.", outcome=True)],
    "01": [Check("ip a lists only lo, DOWN", only_lo_down,
                 "The command's network namespace should hold only its own lo, still down "
                 "(article: NET Namespace).", outcome=True)],
    "02": [Check(TMPFS_IN, tmpfs_inside,
                 "Nothing on /mytmp inside: child_exec mounts a tmpfs there before it "
                 "runs the command (article: MNT Namespace).", outcome=True),
           Check("the tmpfs never shows on the host", tmpfs_not_on_host,
                 "The tmpfs reached the host: mount it in a mount namespace of the child's "
                 "own, with every mount made private first.", needs=(TMPFS_IN,)),
           Check("ls / still shows the host's files", no_jail,
                 "A mount namespace is not a jail: the command should still see the host's "
                 "files in / (no chroot, no pivot_root).", outcome=True)],
    "03": [Check(MYHOSTNAME, myhostname,
                 "child_exec should set the hostname to myhostname before it runs the "
                 "command, in a UTS namespace of its own (article: UTS Namespace).", outcome=True),
           Check("the host's hostname is unchanged", host_hostname_kept,
                 "The host's hostname changed: sethostname ran in the host's UTS "
                 "namespace. Which namespace keeps it to the child?", needs=(MYHOSTNAME,))],
    "04": [Check("ipcs -q inside lists no queue", no_queue,
                 "ipcs -q inside still lists the host's queue: which namespace gives the "
                 "child SysV IPC objects of its own? (article: IPC Namespace)", outcome=True)],
    "05": [Check(PID1, pid1_alone,
                 "The command should be PID 1 of its own PID namespace, with a fresh /proc "
                 "(article: PID Namespace).", outcome=True),
           Check("the host's /proc is untouched", host_proc_kept,
                 "The host's /proc changed: remount /proc only in a mount namespace of the "
                 "child's own, with every mount made private first.", needs=(PID1,))],
    "06": [Check("id shows nobody/nogroup", id_nobody,
                 "id should show nobody: the command runs in a new user namespace that has "
                 "no uid map yet (article: USER Namespace).", outcome=True),
           Check("ls -la shows nobody/nogroup", ls_nobody,
                 "ls -la should show every file as nobody/nogroup, as seen from a user "
                 "namespace without a mapping.", outcome=True)],
}
OUTCOMES["07"] = [check for step in ("01", "02", "03", "04", "05", "06") for check in OUTCOMES[step]]

STARTS_AFTER_OK = "the command starts only after the parent's OK"
DIES = "the command dies with its parent"
ROOT_INSIDE = "id shows root inside, the parent's own ids outside"
IN_CHARGE = [
    Check(STARTS_AFTER_OK, starts_after_ok, "", outcome=True),
    Check(DIES, dies_with_parent, "", needs=(WAITS,)),
]
OUTCOMES["08"] = OUTCOMES["03"] + IN_CHARGE
OUTCOMES["09"] = [
    Check(ROOT_INSIDE, root_inside, "", outcome=True),
    Check("setgroups is denied in the command's user namespace", setgroups_denied, "",
          needs=(ROOT_INSIDE,)),
    *IN_CHARGE,
    Check("the maps are written before the command starts", maps_before_start, "",
          needs=(ROOT_INSIDE, STARTS_AFTER_OK)),
]


def checks_for(step):
    """Every check of a step, in the order reports list them."""
    return [
        Check(RAN, ran, "", needs_outcome=True),
        Check(WAITS, waits, "", needs_outcome=True),
        Check(_namespace_title(step), namespaces_for(step), TOPIC[step], outcome=True),
        *OUTCOMES[step],
        Check(HOST, host_unchanged,
              "The host's hostname, mounts, queues, links or /proc changed: whatever the "
              "child changes must happen in namespaces of its own.", after_all=True),
        Check(NO_PROCESS, nothing_left,
              "Processes outlived the program: the parent waits for its child, and the "
              "command's own children end with it.",
              # Beyond Part 1 the grader kills the parent: what then runs on is judged
              # by DIES alone.
              needs=(WAITS, DIES) if step in BEYOND_PART_1 else (WAITS,), needs_outcome=True),
    ]


@dataclass
class Verdict:
    status: str           # "passed", "failed" or "skipped"
    seen: str
    hint: str = ""


def verdicts(step, ev):
    """{title: Verdict} for every check of a step, in order."""
    checks = checks_for(step)
    raw = {}
    first = ran(ev)
    if not first[0]:
        out = {RAN: Verdict("failed", first[1], first[2] if len(first) > 2 else "")}
        for check in checks[1:]:
            out[check.title] = Verdict("skipped", SKIPPED + RAN)
        return out
    for check in checks:
        passed, seen, *hint = check.judge(ev)
        raw[check.title] = Verdict("passed" if passed else "failed", seen,
                                   "" if passed else (hint[0] if hint else check.hint))
    outcome = [c.title for c in checks if c.outcome]
    needs = {}
    for check in checks:
        wanted = list(check.needs)
        if check.title != _namespace_title(step) and check.outcome:
            wanted.append(_namespace_title(step))
        if check.needs_outcome:
            wanted += outcome
        if check.after_all:
            wanted += [c.title for c in checks if c.title not in (check.title, NO_PROCESS)]
        needs[check.title] = [t for t in dict.fromkeys(wanted) if t != check.title]
    out = {}

    def cause(title):
        """The check that failed at the root of title's needs, or None."""
        for need in needs[title]:
            if raw[need].status != "passed":
                return cause(need) or need
            deeper = cause(need)
            if deeper:
                return deeper
        return None

    for check in checks:
        root = cause(check.title)
        out[check.title] = Verdict("skipped", SKIPPED + root) if root else raw[check.title]
    return out
