"""Touches 4 GiB of memory, 64 MiB at a time (harmless where it goes through
on a machine with room for it)."""
# @kit

chunks = []


def touch():
    for _ in range(64):
        chunks.append(b"\x01" * (64 << 20))


attempt("memory", "touch 4 GiB", touch)
say("memory", "touched", f"{len(chunks) * 64} MiB")
chunks.clear()
run_the_command()
