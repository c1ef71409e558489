"""``esan-train``: the training side (convert-official, prepare, synth, fit, eval, predict).

Every subcommand is one module of ``esan.train.commands`` (its options and the name of its handler), listed
here in ``COMMAND_MODULES``, the order ``--help`` shows. They import no torch, so ``esan-train --help`` works
without it; the handler is imported when its command runs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from esan.runtime.core.clikit import CommandSet
from esan.runtime.core.version import package_version
from esan.train.commands import convert_official, evaluate, fit, predict, prepare, synth

COMMAND_MODULES = (convert_official, prepare, synth, fit, evaluate, predict)

COMMANDS = CommandSet("esan-train", "ESAN training side: import weights, make data, train, evaluate, predict.",
                      version=package_version())
for _module in COMMAND_MODULES:
    COMMANDS.register(_module.NAME, _module.HELP, _module.HANDLER, _module.add_args)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMANDS.main(argv)


if __name__ == "__main__":
    sys.exit(main())
