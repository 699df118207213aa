"""``python -m priorfit`` is the ``priorfit`` command."""

import sys

from priorfit.cli import main

sys.exit(main())
