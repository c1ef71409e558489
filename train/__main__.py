"""``python -m esan.train`` = ``esan-train`` (what ``torchrun ... -m esan.train fit ...`` runs)."""

import sys

from esan.train.cli import main

sys.exit(main())
