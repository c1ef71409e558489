"""``esan-train``: the training side (convert-official, synth, fit, eval, predict).

Subcommands are registered in ``esan.train.cli_args`` (torch-free); their handlers are imported
lazily, so ``esan-train --help`` works without torch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from esan.runtime.clikit import CommandSet

COMMANDS = CommandSet("esan-train", "ESAN training side: import weights, make data, train, evaluate, predict.")


def main(argv: Sequence[str] | None = None) -> int:
    import esan.train.cli_args  # noqa: F401  (registers the subcommands)

    return COMMANDS.main(argv)


if __name__ == "__main__":  # run through the imported module so registrations land in its COMMANDS
    from esan.train.cli import main as _main

    sys.exit(_main())
