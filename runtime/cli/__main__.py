"""``python -m esan.runtime.cli``: the same as ``esan-rt``."""

import sys

from esan.runtime.cli import main

if __name__ == "__main__":  # importing the module (e.g. to check imports) must not run the CLI
    sys.exit(main())
