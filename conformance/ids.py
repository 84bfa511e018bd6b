"""Who the run's root is on the machine, and the id maps that say so."""
import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

RANGE = 65536  # uid 0 .. 65535 inside, so nobody (65534) maps too


def _used_ids():
    """Every uid/gid the machine knows of: accounts, groups, subordinate ranges."""
    spans = [(e.pw_uid, 1) for e in pwd.getpwall()] + [(e.gr_gid, 1) for e in grp.getgrall()]
    for name in ("/etc/subuid", "/etc/subgid"):
        try:
            for line in Path(name).read_text().splitlines():
                parts = line.split(":")
                if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                    spans.append((int(parts[1]), int(parts[2])))
        except OSError:
            pass
    return spans


def unused_range(size=RANGE, base=1 << 30):
    """The first range from base (2**30) on that no account or /etc/sub[ug]id entry touches."""
    spans = _used_ids()
    while any(start < base + size and base < start + count for start, count in spans):
        base += size
    return base


def in_the_machines_user_namespace():
    try:
        return Path("/proc/self/uid_map").read_text().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


@dataclass
class IdMaps:
    """Who the run's root is outside: an unused range when the grader is the
    machine's root, the grader's own uid otherwise."""
    privileged: bool
    base: int

    @classmethod
    def for_this_user(cls):
        if os.geteuid() == 0 and in_the_machines_user_namespace():
            return cls(True, unused_range())
        # Root of a user namespace (a rootless container) maps only itself too.
        return cls(False, os.geteuid())

    def write(self, pid):
        """The maps of the user namespace pid made, written from its parent's."""
        if self.privileged:
            uid_map = gid_map = f"0 {self.base} {RANGE}"
        else:
            # An ordinary user may map only itself, and only without setgroups.
            Path(f"/proc/{pid}/setgroups").write_text("deny")
            uid_map, gid_map = f"0 {os.geteuid()} 1", f"0 {os.getegid()} 1"
        Path(f"/proc/{pid}/uid_map").write_text(uid_map)
        Path(f"/proc/{pid}/gid_map").write_text(gid_map)


def become_root(drop_groups):
    """uid and gid 0 of the user namespace the caller is in."""
    os.setresgid(0, 0, 0)
    if drop_groups:
        os.setgroups([])  # the machine's root's groups must not come along
    os.setresuid(0, 0, 0)


def write_run_maps(pid, privileged):
    """The run's user namespace maps its ids onto the quota namespace's, one
    to one: written from that namespace, outside the run's."""
    ids = f"0 0 {RANGE if privileged else 1}"
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as fh:
            fh.write(ids)
