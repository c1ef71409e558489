"""The ``esan-rt`` command set; subcommands register themselves in ``esan.runtime.cli.args``."""

from __future__ import annotations

from esan.runtime.core.clikit import CommandSet
from esan.runtime.core.version import package_version

COMMANDS = CommandSet(
    "esan-rt",
    "ESAN-RT streaming video saliency: demo, stream, serve, export, build-plugin, compare, bench.",
    version=package_version(),
)
