"""The namespace table that ends every `make step-NN`, and its twin in
steps/README.md: for each of the six namespaces, the host's, the command's,
and whether the command's is new.

The demo fills it with the inode numbers the kernel shows in /proc/PID/ns;
steps/README.md (tools/ns_tables.py) with words, from the catalog, because
inode numbers differ on every machine and every run.
"""
import os

from conformance.catalog import NAMESPACES

NEW, SAME, DEMO = "new", "same", "demo's"
HEADER = ("namespace", "on the host", "the command's", "new?")
# Why a namespace differs from the host's though the step did not make it.
DEMO_NOTE = ("demo's: made by the user namespace the demo runs the step in, "
             "not by the step")
BOLD_GREEN, RESET = "\033[1;32m", "\033[0m"


def own():
    """This process's namespaces: {"ipc": "ipc:[4026531839]", ...}."""
    return {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in NAMESPACES}


def parse(readlink_output):
    """What `readlink /proc/self/ns/ipc ...` printed, by namespace."""
    ids = [line.strip() for line in readlink_output.splitlines() if line.strip()]
    return {line.split(":", 1)[0]: line for line in ids}


def verdict(ns, host, parent, command):
    """new: the step made it; same: the host's; demo's: the wrapper's."""
    if command[ns] != parent[ns]:
        return NEW
    return SAME if command[ns] == host[ns] else DEMO


def rows(host, parent, command):
    """(namespace, host's id, command's id, verdict) for each namespace;
    parent is the namespaces the step itself started in."""
    return [(ns, host[ns], command[ns], verdict(ns, host, parent, command))
            for ns in NAMESPACES]


def colour_wanted(stream):
    """Colour only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return (stream.isatty() and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM") != "dumb")


def render(table, colour):
    """The table as the terminal shows it: new rows in bold green where
    there is colour; the word in the last column says it either way."""
    lines = [HEADER, *[(ns, h, c, v if v != SAME else "") for ns, h, c, v in table]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    out = []
    for i, line in enumerate(lines):
        text = "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
        if colour and i and table[i - 1][3] == NEW:
            text = f"{BOLD_GREEN}{text}{RESET}"
        out.append(text)
    if any(v == DEMO for *_, v in table):
        out.append(DEMO_NOTE)
    return "\n".join(out)


def markdown(new):
    """The README's table for a step whose command has the namespaces in new
    of its own."""
    out = ["| " + " | ".join(HEADER) + " |", "|---|---|---|---|"]
    for ns in NAMESPACES:
        theirs = f"`{ns}:[its own]`" if ns in new else f"`{ns}:[the host's]`"
        out.append(f"| {ns} | `{ns}:[the host's]` | {theirs} | "
                   f"{'**new**' if ns in new else ''} |")
    return "\n".join(out)
