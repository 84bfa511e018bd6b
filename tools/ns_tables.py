"""Write steps/README.md's namespace tables from the catalog
(conformance/catalog.py NEW_NAMESPACES), each between its two marker lines:
the map (one row per step, one column per namespace) near the top, and one
table per step further down.

    python tools/ns_tables.py          rewrite them (make ns-tables)
    python tools/ns_tables.py --check  exit 1 if steps/README.md is not up to date

The demo prints the per-step table with the kernel's inode numbers
(demo/nstable.py); tests/test_teaching.py checks that what the kernel shows
is what the catalog says.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.catalog import (ALL_STEPS, BEYOND_PART_1, CLONE_FLAG_NAME,  # noqa: E402
                                 NAMESPACES, NEW_NAMESPACES, file_name)
from demo.nstable import markdown  # noqa: E402

README = ROOT / "steps" / "README.md"


def begin(name):
    return f"<!-- {name}: written by tools/ns_tables.py (make ns-tables); edit that, not this -->"


def end(name):
    return f"<!-- /{name} -->"


BEGIN, END = begin("ns-tables"), end("ns-tables")


def steps_map():
    """One row per step: which namespaces its command has of its own, and
    the clone flags that make them."""
    out = ["| step | " + " | ".join(NAMESPACES) + " | clone flags |",
           "|---" * (len(NAMESPACES) + 2) + "|"]
    for nn in ALL_STEPS:
        new = NEW_NAMESPACES[nn]
        flags = " ".join(f"`{CLONE_FLAG_NAME[ns]}`" for ns in NAMESPACES if ns in new)
        beyond = " (beyond Part 1)" if nn in BEYOND_PART_1 else ""
        out.append(f"| `{file_name(nn)}`{beyond} | "
                   + " | ".join("**new**" if ns in new else "·" for ns in NAMESPACES)
                   + f" | {flags or 'none: `SIGCHLD` only'} |")
    return "\n".join(out) + "\n"


def tables():
    """Every step's table, under a heading naming its file."""
    parts = []
    for nn in ALL_STEPS:
        beyond = " (beyond Part 1)" if nn in BEYOND_PART_1 else ""
        parts.append(f"#### `{file_name(nn)}.py`{beyond}\n\n{markdown(NEW_NAMESPACES[nn])}\n")
    return "\n".join(parts)


# What each pair of markers holds.
REGIONS = {"ns-map": steps_map, "ns-tables": tables}


def updated(text):
    """text with what stands between each pair of markers written anew."""
    for name, write in REGIONS.items():
        first, last = begin(name), end(name)
        if text.count(first) != 1 or text.count(last) != 1 or \
                text.index(first) > text.index(last):
            raise ValueError(f"{README.relative_to(ROOT)} needs the two marker lines, once each "
                             f"and in this order: {first} and {last}")
        head, rest = text.split(first)
        _, tail = rest.split(last)
        text = f"{head}{first}\n\n{write()}\n{last}{tail}"
    return text


def main(args):
    if args not in ([], ["--check"]):
        print("usage: python tools/ns_tables.py [--check]", file=sys.stderr)
        return 2
    text = README.read_text()
    try:
        new = updated(text)
    except ValueError as error:
        print(f"nskit: {error}.", file=sys.stderr)
        return 2
    if args == ["--check"]:
        if new != text:
            print("nskit: steps/README.md's namespace tables are out of date: run make ns-tables.",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        README.write_text(new)
        print("steps/README.md: namespace tables written.")
    else:
        print("steps/README.md: namespace tables already up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
