"""The ``esan-train`` command set; subcommands register themselves in ``esan.train.cli_args``."""

from __future__ import annotations

from esan.runtime.core.clikit import CommandSet

COMMANDS = CommandSet("esan-train", "ESAN training side: import weights, make data, train, evaluate, predict.")
