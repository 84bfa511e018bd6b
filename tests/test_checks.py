"""The checks alone, on made-up evidence: every check of every step passes
on a run that did everything right, and fails, with a hint that names the
mistake, on a run that got one thing wrong; and the table a learner reads
of them. No program runs here: the whole file takes milliseconds. tests/test_grader.py and tests/test_grade_beyond.py
grade real wrong programs end to end."""
import pytest

from conformance import checks
from conformance.catalog import ALL_STEPS, BEYOND_PART_1, NAMESPACES, NEW_NAMESPACES, OWN_ROOT
from conformance.checks import SKIPPED, Evidence, Failure, checks_for, needs_of, verdicts
from conformance.grade import CheckResult, StepResult
from conformance.report import full, junit, table
from conformance.journal import (Blocked, Clone, Death, Exec, Facts, Follow, HostView, Journal,
                                 Mount, Network, Observation, ProcView, Start, Watched, Write)

HOST_NS = {name: f"{name}:[4026531{i}]" for i, name in enumerate(NAMESPACES)}
HOST_ROOT = (2049, 2)
PROC = "25 1 0:22 / /proc rw,nosuid shared:12 - proc proc rw\n"
ROOT = "1 0 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n"
TMPFS = "40 1 0:40 / /mytmp rw shared:30 - tmpfs none rw\n"
PARENT = {"uid": 1000, "gid": 1000}
NO_MAP = []
IDENTITY = [(0, 0, 4294967295)]


def host():
    return {"hostname": "nskit-run", "mounts": ROOT + PROC, "queues": [0x6E736B],
            "links": {"lo": "UP", "nskit0": "UP"}, "proc": True, "ns": dict(HOST_NS),
            "root": ["bin", "etc", "mytmp", "proc", "usr"]}


def good(step):
    """The evidence of a run that did everything step asks."""
    new = NEW_NAMESPACES[step]
    before = host()
    user = "user" in new
    mapped = step in ("09", *OWN_ROOT)  # the parent in charge maps its own ids
    maps = [(0, PARENT["uid"], 1)] if mapped else NO_MAP if user else IDENTITY
    outside = PARENT["uid"] if mapped else 0
    links = {b"lo": "UP", b"eth0": "UP"} if step == "11" else {b"lo": "DOWN"}
    witness = Facts(
        ns={name: f"{name}:[5]" if name in new else HOST_NS[name] for name in NAMESPACES},
        hostname=b"myhostname" if step in ("03", "07") else before["hostname"].encode(),
        links=links if "net" in new else {k.encode(): v for k, v in before["links"].items()},
        queues=[] if "ipc" in new else list(before["queues"]),
        root=(2049, 77) if step in OWN_ROOT else HOST_ROOT,
        root_entries=[(name.encode(), outside, outside) for name in before["root"]],
        mounts=[Mount("0:40", b"/mytmp", b"tmpfs")] if step in ("02", "07") else [],
        shared=[] if "mnt" in new else [b"/", b"/proc"],
        nspid=[321, 1] if "pid" in new else [321],
        proc=ProcView("own", count=1) if "pid" in new else ProcView("other", count=9),
        uid=outside, gid=outside, uid_map=maps, gid_map=maps,
        setgroups="deny", parent=dict(PARENT))
    if step in OWN_ROOT:
        witness.mounts = [Mount("0:50", b"/", b"tmpfs"), Mount("0:51", b"/proc", b"proc")]
        witness.namespace_mounts = list(witness.mounts)
    if step == "11":
        witness.network = Network(
            [_link("lo", "127.0.0.1/8"), _link("eth0", "10.11.0.2/24", 9, 0)],
            [_link("lo"), _link("nskit0", peer=3), _link("nskit1", peer=2),
             _link("nskit7", "10.11.0.1/24", 2, 1)], parent_nsid=0, answered=["10.11.0.2"])
    ran = journal(step, witness.ns)
    watch = Watched(witness, HostView(dict(HOST_NS), HOST_ROOT), waited=True, exit_signal=17,
                    start=Start(False, maps, maps),
                    death=Death(True, "it was killed with its parent"), journal=ran)
    return Evidence(witness, watch, before, host(), [], "$ hostname\n", journal=ran)


def _link(name, address=None, peer=None, netnsid=None, up=True):
    """A link as observe.pivot_view reads it (netlink.links)."""
    return {"name": name.encode(), "up": up, "ipv4": [address] if address else [],
            "peer": peer, "peer_netnsid": netnsid}


def _links(*links):
    def change(ev):
        ev.witness.network.links = list(links)
    return change


PROGRAM, CHILD = 100, 101
WITNESS_RUN = [b"/nskit/witness"]


def journal(step, ns):
    """The journal of a run that did everything right: the program, its
    child (beyond Part 1: asleep on the pipe, then the parent's OK), the
    command exec'd once, as given, and observed."""
    events = [Exec(PROGRAM, 1, b"/usr/bin/python3", [b"python3", b"-S", b"prog.py"] + WITNESS_RUN,
                   dict(HOST_NS))]
    if step in BEYOND_PART_1:
        events += [Follow(PROGRAM), Clone(PROGRAM, 0x04000011, CHILD),
                   Blocked(CHILD, "read", 3, b"pipe:[9]", True),
                   Write(PROGRAM, 4, b"pipe:[9]", 2)]
    events += [Exec(CHILD, PROGRAM, b"/nskit/witness", list(WITNESS_RUN), dict(ns), "witness"),
               Observation(CHILD, None)]
    return Journal(events)


def wrong(step, change, **fields):
    """good(step) with change(evidence) applied, and Evidence fields replaced."""
    ev = good(step)
    change(ev)
    for name, value in fields.items():
        setattr(ev, name, value)
    return ev


def _set(where, key, value):
    def change(ev):
        target = ev
        for part in where.split("."):
            target = getattr(target, part) if hasattr(target, part) else target[part]
        if isinstance(target, dict):
            target[key] = value
        else:
            setattr(target, key, value)
    return change


def _new_ns(*names):
    def change(ev):
        for name in NAMESPACES:
            ev.witness.ns[name] = f"{name}:[5]" if name in names else HOST_NS[name]
    return change


def _leak(mount):
    def change(ev):
        ev.after["mounts"] += mount
    return change


def _many(*changes):
    def change(ev):
        for one in changes:
            one(ev)
    return change


def _never_ran(output):
    def change(ev):
        ev.witness, ev.output = None, output
    return change


def _without(*kinds):
    def change(ev):
        ev.journal.events = [e for e in ev.journal.events if not isinstance(e, kinds)]
    return change


def _asleep(call):
    def change(ev):
        for event in ev.journal.of(Blocked):
            event.call, event.fd, event.target, event.parent_holds = call, None, None, False
    return change


def _decoy(ev):
    """A throwaway copy in the right namespaces first, then the command in the host's."""
    decoy = Exec(CHILD, PROGRAM, b"/nskit/sh", [b"/nskit/sh", b"-c", b"/nskit/ready; :"],
                 dict(ev.witness.ns), "shell")
    real = Exec(PROGRAM, 1, b"/nskit/witness", list(WITNESS_RUN), dict(HOST_NS), "witness")
    ev.journal.events = [e for e in ev.journal.events if not (isinstance(e, Exec) and e.runs)]
    ev.journal.events[1:1] = [decoy]
    ev.journal.events.append(real)


def _other_arguments(ev):
    for event in ev.journal.of(Exec):
        if event.runs == "witness":
            event.argv = [b"/nskit/witness", b"--quiet"]


def _moment(**changed):
    """The host changed when the command was observed, and was set back by the end."""
    def change(ev):
        ev.watch.moments = [{**host(), "moment": "when the command was observed", **changed}]
    return change


def _proc_unmounted(ev):
    ev.after["mounts"] = ROOT


# (step, check, how the run went wrong, words the hint must hold, words it must not)
FAILING = [
    ("03", checks.ran, _never_ran("03_uts.py: sethostname failed: Operation not permitted\n"),
     "last words say where", ""),
    ("00", checks.waits, _set("watch", "waited", False), "waitpid", ""),
    ("01", checks.waits, _many(_set("watch", "waited", False), _set("watch", "exit_signal", 0)),
     "low byte of clone's flags", ""),
    ("00", checks.NAMESPACE_CHECK["00"], _new_ns("net"), "more than this step needs", ""),
    ("01", checks.NAMESPACE_CHECK["01"], _new_ns(), "NET Namespace", ""),
    ("02", checks.NAMESPACE_CHECK["02"], _new_ns(), "MNT Namespace", ""),
    ("03", checks.NAMESPACE_CHECK["03"], _new_ns(), "UTS Namespace", ""),
    ("04", checks.NAMESPACE_CHECK["04"], _new_ns(), "IPC Namespace", ""),
    ("05", checks.NAMESPACE_CHECK["05"], _new_ns("pid"), "mount namespace", "processes"),
    ("06", checks.NAMESPACE_CHECK["06"], _new_ns(), "USER Namespace", ""),
    ("07", checks.NAMESPACE_CHECK["07"], _new_ns("net", "mnt", "uts", "ipc", "pid"),
     "CLONE_NEWUSER", ""),
    ("08", checks.NAMESPACE_CHECK["08"], _new_ns(), "Deep dive", "article"),
    ("09", checks.NAMESPACE_CHECK["09"], _new_ns("user", "uts"), "more than this step needs", ""),
    ("00", checks.sees_the_host, _set("witness", "hostname", b"other"), "hostname", ""),
    ("01", checks.only_lo_down, _set("witness.links", b"lo", "UP"), "still down", ""),
    ("02", checks.tmpfs_inside, _set("witness", "mounts", []), "mounts a tmpfs", ""),
    ("02", checks.tmpfs_not_on_host, _many(_leak(TMPFS), _set("witness", "shared", [b"/"])),
     "Which mount call", "only after"),
    ("02", checks.no_jail, _set("witness", "root", (2049, 99)), "not a jail", ""),
    ("03", checks.myhostname, _set("witness", "hostname", b"nskit-run"), "set the hostname", ""),
    ("03", checks.host_hostname_kept, _set("after", "hostname", "renamed"),
     "in the host's UTS namespace, in the parent", "before clone"),
    ("04", checks.no_queue, _set("witness", "queues", [0x6E736B]), "IPC Namespace", ""),
    ("05", checks.pid1_alone, _set("witness", "nspid", [321, 2]), "first process", ""),
    ("05", checks.host_proc_kept, _many(_proc_unmounted, _set("witness", "shared", [b"/"])),
     "Which mount call", "only after"),
    ("06", checks.id_nobody, _many(_set("witness", "uid_map", IDENTITY),
                                   _set("witness", "gid_map", IDENTITY)), "nobody", ""),
    ("06", checks.ls_nobody, _set("witness", "uid_map", IDENTITY), "nobody/nogroup", ""),
    ("08", checks.starts_after_ok, _without(Blocked, Write), "await_setup", "article"),
    ("08", checks.starts_after_ok, _asleep("clock_nanosleep"), "await_setup", "article"),
    ("08", checks.starts_after_ok, _asleep("running"), "await_setup", "article"),
    ("08", checks.starts_after_ok, _without(Write), "await_setup", "article"),
    ("03", checks.ran, _decoy, "runs it once", ""),
    ("03", checks.ran, _other_arguments, "exactly as it was given", ""),
    ("02", checks.tmpfs_not_on_host, _moment(mounts=ROOT + PROC + TMPFS), "reached the host", ""),
    ("03", checks.host_hostname_kept, _moment(hostname="forged"), "in the parent", ""),
    ("05", checks.host_proc_kept, _moment(mounts=ROOT), "reached the host", ""),
    ("08", checks.dies_with_parent,
     _set("watch", "death", Death(False, "it still ran after its parent was killed")),
     "PR_SET_PDEATHSIG", "article"),
    ("09", checks.root_inside, _set("witness", "gid_map", []), "gid_map is empty", "article"),
    ("09", checks.setgroups_denied, _set("witness", "setgroups", "allow"), "deny", "article"),
    ("09", checks.maps_before_start, _set("watch.start", "uid_map", []), "before it says OK",
     "article"),
    ("10", checks.NAMESPACE_CHECK["10"], _new_ns("user", "mnt"), "CLONE_NEWPID", "article"),
    ("11", checks.NAMESPACE_CHECK["11"], _new_ns("user", "mnt", "pid"), "CLONE_NEWNET", "article"),
    ("10", checks.root_of_its_own, _set("witness", "root", HOST_ROOT), "pivot_root",
     "article"),
    ("10", checks.old_root_gone,
     lambda ev: ev.witness.mounts.append(Mount("8:1", b"/old_root", b"ext4")), "umount2",
     "chroot"),
    ("10", checks.old_root_gone,
     lambda ev: ev.witness.namespace_mounts.append(Mount("8:1", b"/", b"ext4")),
     "second chroot", "umount2"),
    ("11", checks.veth_inside, _links(_link("lo", "127.0.0.1/8")), "makes a veth pair",
     "article"),
    ("11", checks.veth_inside, _many(_links(_link("lo", "127.0.0.1/8")), lambda ev: ev.witness
                                     .network.parent_links.extend([_link("veth0", peer=9),
                                                                   _link("veth1", peer=8)])),
     "move one into the child's", "article"),
    ("11", checks.veth_inside, _links(_link("lo"), _link("eth0", "10.11.0.2/24", 9, 0, up=False)),
     "brings its end", "article"),
    ("11", checks.veth_inside, _links(_link("lo"), _link("eth0", None, 9, 0)), "no address",
     "article"),
    ("11", checks.peer_with_parent, _links(_link("lo"), _link("eth0", "10.11.0.2/24", 9, 4)),
     "the other in the parent's", "article"),
    ("11", checks.packet_crosses, _set("witness.network", "answered", []), "same network",
     "article"),
    ("11", checks.host_unchanged_but_its_links, _set("after", "queues", [1, 2]),
     "namespaces of its own", ""),
    ("04", checks.host_unchanged, _set("after", "queues", [1, 2]), "namespaces of its own", ""),
    ("04", checks.nothing_left, lambda ev: ev.leftover.append("sleep 1000"), "outlived", ""),
    ("08", checks.nothing_left_beyond, lambda ev: ev.leftover.append("sleep 1000"),
     "outlived", ""),
]


CASES = [(step, check, wrong(step, change), words, never)
         for step, check, change, words, never in FAILING]


@pytest.mark.parametrize("step", ALL_STEPS)
def test_every_check_passes_on_a_run_that_did_everything_right(step):
    for title, verdict in verdicts(step, good(step)).items():
        assert verdict.status == "passed", (title, verdict)
        assert verdict.seen and not verdict.hint, (title, verdict)


@pytest.mark.parametrize("step, check, ev, words, never", CASES,
                         ids=[f"{s}-{c.title}" for s, c, *_ in CASES])
def test_check_fails_with_a_hint_naming_the_mistake(step, check, ev, words, never):
    with pytest.raises(Failure) as failure:
        check(ev)
    assert failure.value.seen and words in failure.value.hint, failure.value.hint
    if never:
        assert never not in failure.value.hint, failure.value.hint
    verdict = verdicts(step, ev)[check.title]
    assert verdict.status == "failed" and verdict.hint == failure.value.hint, verdict


def test_every_check_of_every_step_has_a_failing_case():
    failing = {check for _, check, *_ in FAILING}
    every = {check for step in ALL_STEPS for check in checks_for(step)}
    assert every - failing == set(), [c.title for c in every - failing]


def test_a_judge_returns_what_it_saw_or_raises_failure_and_nothing_else():
    for step in ALL_STEPS:
        for check in checks_for(step):
            assert isinstance(check(good(step)), str), check.title


def test_needs_name_checks_of_the_same_step():
    for step in ALL_STEPS:
        every = set(checks_for(step))
        for check, needs in needs_of(step).items():
            assert all(isinstance(need, checks.Check) and need in every for need in needs)
            assert check not in needs


# -- hints that name the mistake seen -------------------------------------------------------

def test_private_call_after_the_tmpfs_is_named_as_the_order():
    late = wrong("02", _leak(TMPFS))  # the child's own mounts are private: shared is []
    with pytest.raises(Failure) as failure:
        checks.tmpfs_not_on_host(late)
    assert "only after it mounted the tmpfs" in failure.value.hint
    assert "Which mount call" not in failure.value.hint


def test_sethostname_in_the_parent_is_named_before_or_after_clone():
    before = wrong("03", _set("after", "hostname", "myhostname"))
    with pytest.raises(Failure) as failure:
        checks.host_hostname_kept(before)
    assert "in the parent, before clone" in failure.value.hint
    after = wrong("03", _many(_set("after", "hostname", "myhostname"),
                              _set("witness", "hostname", b"nskit-run")))
    with pytest.raises(Failure) as failure:
        checks.myhostname(after)
    assert "in the parent, after clone" in failure.value.hint


def test_pid_namespace_alone_names_the_missing_mount_namespace_first():
    with pytest.raises(Failure) as failure:
        checks.NAMESPACE_CHECK["05"](wrong("05", _new_ns("pid")))
    first = failure.value.hint.split(": ")[0]
    assert first == "The command has a new PID namespace, but still the host's mount namespace"


TRACEBACK = """Traceback (most recent call last):
  File "work/03_uts.py", line 80, in <module>
    code = main()
  File "work/03_uts.py", line 62, in main
    pid = libc.clone(CHILD_FUNC(child_exec), stack_top, clone_flags, None)
  File "/usr/lib/python3.11/ctypes/__init__.py", line 389, in __getattr__
    func = self.__getitem__(name)
AttributeError: /lib/libc.so.6: undefined symbol: clones
"""


def test_last_words_name_the_learner_s_file_and_line():
    ev = wrong("03", _never_ran(TRACEBACK), program="work/03_uts.py")
    with pytest.raises(Failure) as failure:
        checks.ran(ev)
    assert failure.value.seen.endswith("undefined symbol: clones (at work/03_uts.py, line 62)")
    syntax = '  File "work/03_uts.py", line 6\n    def main()\n             ^\nSyntaxError: expected \':\'\n'
    with pytest.raises(Failure) as failure:
        checks.ran(wrong("03", _never_ran(syntax), program="work/03_uts.py"))
    assert failure.value.seen.endswith("SyntaxError: expected ':' (at work/03_uts.py, line 6)")
    assert checks.where(TRACEBACK, "other.py") is None


def test_inherited_proc_in_a_new_user_namespace_is_named():
    ev = wrong("07", _never_ran("failed unmount /proc Invalid argument\n"), language="c")
    with pytest.raises(Failure) as failure:
        checks.ran(ev)
    assert "a new user namespace cannot unmount it" in failure.value.hint
    assert "Mount a fresh proc over /proc" in failure.value.hint


@pytest.mark.parametrize("language, words", [
    ("python", "child_exec execs sys.argv[1:]"),
    ("c", "execvp(argv[1], &argv[1])"),
    ("other", "the child execs the command it was given")])
def test_hints_use_the_program_s_language(language, words):
    ev = wrong("02", _never_ran(""), language=language)
    with pytest.raises(Failure) as failure:
        checks.ran(ev)
    assert words in failure.value.hint
    assert ("child_exec" in failure.value.hint) == (language == "python")


# -- needs: one cause, one failure, each check on its own evidence -----------------------

def test_a_command_that_never_ran_fails_once_and_skips_the_rest():
    out = verdicts("05", wrong("05", _never_ran("")))
    assert [v.status for v in out.values()] == ["failed"] + ["skipped"] * (len(out) - 1)
    assert all(v.seen == SKIPPED + checks.RAN for v in list(out.values())[1:])


def test_a_failed_outcome_skips_the_manners():
    out = verdicts("03", wrong("03", _set("witness", "hostname", b"nskit-run")))
    assert out[checks.MYHOSTNAME].status == "failed"
    for title in (checks.WAITS, checks.HOST, checks.NO_PROCESS, checks.host_hostname_kept.title):
        assert out[title].seen == SKIPPED + checks.MYHOSTNAME, title
    # Skipped too, but a command that ran is not shown as one that never did.
    assert out[checks.RAN].status == "skipped"
    assert out[checks.RAN].seen == (SKIPPED + checks.MYHOSTNAME
                                    + "; on its own: it ran, and was observed")
    assert checks.skipped_for(out[checks.RAN].seen) == checks.MYHOSTNAME


def test_a_part_of_the_host_fails_once_not_again_as_the_whole_host():
    out = verdicts("02", wrong("02", _leak(TMPFS)))
    assert out[checks.tmpfs_not_on_host.title].status == "failed"
    assert out[checks.HOST].seen == SKIPPED + checks.tmpfs_not_on_host.title


def test_11_leaves_the_hosts_links_out_and_every_other_step_does_not():
    """The host's end of 11's pair goes when the kernel frees the child's network
    namespace, a moment after the run: not a thing a verdict may wait for."""
    later = wrong("11", _set("after", "links", {"lo": "UP", "nskit0": "UP", "nskit42": "UP"}))
    assert verdicts("11", later)[checks.HOST].status == "passed"
    assert verdicts("10", wrong("10", _set("after", "links", {"lo": "UP"})))[
        checks.HOST].status == "failed"


def test_08_asks_no_hostname_and_credits_each_check_on_its_own():
    titles = {c.title for c in checks_for("08")}
    assert checks.MYHOSTNAME not in titles and checks.host_hostname_kept.title not in titles
    ev = wrong("08", _set("watch", "death", Death(False, "it still ran")))
    ev.witness.hostname = b"nskit-run"
    out = verdicts("08", ev)
    assert {t for t, v in out.items() if v.status == "failed"} == {checks.DIES}
    assert {t for t, v in out.items() if v.status == "skipped"} == {checks.NO_PROCESS}
    assert out[checks.HOST].status == "passed"


@pytest.mark.parametrize("step", BEYOND_PART_1)
def test_hints_beyond_part_1_cite_deep_dive_not_the_article(step):
    for _, check, ev, *_ in [c for c in CASES if c[0] == step]:
        with pytest.raises(Failure) as failure:
            check(ev)
        assert "(article" not in failure.value.hint



# -- as the table shows them ---------------------------------------------------------------

def test_the_table_folds_checks_skipped_for_one_failure_and_other_reports_keep_them():
    out = verdicts("03", wrong("03", _set("witness", "hostname", b"nskit-run")))
    step = StepResult("03", "03_uts.py", [CheckResult("03", title, v.status == "passed", v.seen,
                                                     v.hint, v.status)
                                         for title, v in out.items()])
    shown = " ".join(table([step]).split())
    assert f"03 uts skipped 5 more checks need: {checks.MYHOSTNAME}" in shown, shown
    assert "skipped: needs" not in shown and shown.count("skipped") == 1, shown
    assert checks.RAN not in shown, shown
    assert len(full({"me": [step]})["me"]["steps"][0]["checks"]) == len(out)
    assert junit({"me": [step]}).count("<skipped") == 5


def test_a_child_caught_running_is_said_to_run_not_to_wait():
    ev = wrong("08", _asleep("running"))
    with pytest.raises(checks.Failure) as failure:
        checks.starts_after_ok(ev)
    assert failure.value.seen.startswith("the child was running, not reading a pipe"), \
        failure.value.seen
