"""``esan-rt``: the runtime side (demo, stream, compare, bench).

Subcommands are registered in ``esan.runtime.cli.args``; handlers are imported lazily, so
``esan-rt --help`` works with only the base install (no torch, no TensorRT).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    import esan.runtime.cli.args  # noqa: F401  (registers the subcommands)
    from esan.runtime.cli.commands import COMMANDS
    from esan.runtime.io.signals import installed

    with installed():  # SIGINT and SIGTERM handled explicitly, whatever this process inherited
        return COMMANDS.main(argv)


if __name__ == "__main__":
    sys.exit(main())
