"""Write steps/README.md's namespace tables, one per step, from the catalog
(conformance/catalog.py NEW_NAMESPACES), between the two marker lines.

    python tools/ns_tables.py          rewrite them (make ns-tables)
    python tools/ns_tables.py --check  exit 1 if steps/README.md is not up to date

The demo prints the same table with the kernel's inode numbers
(demo/nstable.py); tests/test_teaching.py checks that what the kernel shows
is what the catalog says.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.catalog import ALL_STEPS, BEYOND_PART_1, NEW_NAMESPACES, file_name  # noqa: E402
from demo.nstable import markdown  # noqa: E402

README = ROOT / "steps" / "README.md"
BEGIN = "<!-- ns-tables: written by tools/ns_tables.py (make ns-tables); edit that, not this -->"
END = "<!-- /ns-tables -->"


def tables():
    """Every step's table, under a heading naming its file."""
    parts = []
    for nn in ALL_STEPS:
        beyond = " (beyond Part 1)" if nn in BEYOND_PART_1 else ""
        parts.append(f"#### `{file_name(nn)}.py`{beyond}\n\n{markdown(NEW_NAMESPACES[nn])}\n")
    return "\n".join(parts)


def updated(text):
    """text with what stands between the markers replaced by the tables."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{README.relative_to(ROOT)} needs the two marker lines, once each "
                         f"and in this order: {BEGIN} and {END}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n\n{tables()}\n{END}{tail}"


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
