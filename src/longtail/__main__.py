"""`python -m longtail ...`: the same as the `longtail` script."""

import sys

from .cli.commands import main

sys.exit(main())
