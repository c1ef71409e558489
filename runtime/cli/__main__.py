"""``python -m esan.runtime.cli``: the same as ``esan-rt``."""

import sys

from esan.runtime.cli import main

sys.exit(main())
