"""``esan-rt``: the runtime side (demo, stream, compare, bench).

Subcommands are registered in ``esan.runtime.cli_args``; handlers are imported lazily, so
``esan-rt --help`` works with only the base install (no torch, no TensorRT).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from esan.runtime.clikit import CommandSet

COMMANDS = CommandSet("esan-rt", "ESAN-RT streaming video saliency: demo, stream, compare, bench.")


def main(argv: Sequence[str] | None = None) -> int:
    import esan.runtime.cli_args  # noqa: F401  (registers the subcommands)

    return COMMANDS.main(argv)


if __name__ == "__main__":  # run through the imported module so registrations land in its COMMANDS
    from esan.runtime.cli import main as _main

    sys.exit(_main())
