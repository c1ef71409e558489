"""``esan-train``: the training side (convert-official, synth, fit, eval, predict).

Subcommands are registered in ``esan.train.cli_args`` (torch-free); their handlers are imported
lazily, so ``esan-train --help`` works without torch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    import esan.train.cli_args  # noqa: F401  (registers the subcommands)
    from esan.train.commands import COMMANDS

    return COMMANDS.main(argv)


if __name__ == "__main__":
    sys.exit(main())
