"""``python -m effmodel ...``: the same as the ``effmodel`` command."""

import sys

from .cli import main

sys.exit(main())
