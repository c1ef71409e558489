"""``python -m esan.runtime.cli``: the same as ``esan-rt``."""

import sys

from esan.runtime.cli import main

if __name__ == "__main__":  # importing the module (tests import every runtime module) runs nothing
    sys.exit(main())
