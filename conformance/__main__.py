import sys

from .cgroups import in_a_delegated_scope
from .cli import main

in_a_delegated_scope(["-m", "conformance", *sys.argv[1:]])
sys.exit(main())
