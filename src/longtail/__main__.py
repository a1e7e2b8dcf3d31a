"""`python -m longtail ...`: the same as the `longtail` script."""

import sys

from .cli import main

sys.exit(main())
