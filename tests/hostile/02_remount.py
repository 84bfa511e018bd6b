"""Remounts / read-write: the host's own root, and the machine's file
system under it (read-write only: the machine's / is read-write already,
so this is harmless where it goes through)."""
# @kit

# The host's / is a tmpfs of its own: remounting it is allowed and harmless.
attempt("remount", "bind remount / rw", lambda: _call(libc.mount(None, b"/", None, MS_REMOUNT | MS_BIND, None)))
attempt("remount", "remount / rw", lambda: _call(libc.mount(None, b"/", None, MS_REMOUNT, None)))
# /etc is a bind of the machine's root file system: its superblock is the machine's.
attempt("remount", "remount the machine's file system rw",
        lambda: _call(libc.mount(None, b"/etc", None, MS_REMOUNT, None)))
run_the_command()
