"""`python -m SATSegmentLib ...` is the same as the `satsegment` command."""

import sys

from .cli import main

sys.exit(main())
