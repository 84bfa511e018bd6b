#!/usr/bin/env python3
"""A step that dies before it runs anything: a name it never defined."""
import sys

sys.exit(main())
