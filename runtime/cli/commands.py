"""The ``esan-rt`` command set; subcommands register themselves in ``esan.runtime.cli.args``."""

from __future__ import annotations

from esan.runtime.core.clikit import CommandSet

COMMANDS = CommandSet("esan-rt", "ESAN-RT streaming video saliency: demo, stream, compare, bench.")
