"""`python -m longtail.cli`: the same as the `longtail` command."""

import sys

from .commands import main

sys.exit(main())
