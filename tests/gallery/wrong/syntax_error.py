#!/usr/bin/env python3
"""A step with a syntax error: a colon missing after def main()."""
import sys


def main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
