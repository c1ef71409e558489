"""``python -m esan.runtime.cli``: the same as ``esan-rt``."""

import sys

from esan.runtime.cli import main

if __name__ == "__main__":  # importing this module (e.g. to check it imports) must not run the CLI
    sys.exit(main())
