"""Argument definitions of the ``esan-train`` subcommands (torch-free; handlers live elsewhere).

Each subcommand: one ``_<name>_args`` function and one ``COMMANDS.register`` call.
"""

from __future__ import annotations

import argparse

from esan.train.commands import COMMANDS


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="the authors' ESAN-epoch_18.pth (a plain state dict)")
    p.add_argument("dst", help="esan-rt checkpoint to write (.pt)")


COMMANDS.register(
    "convert-official",
    "import the authors' released ESAN-VSP weights into an esan-rt checkpoint",
    "esan.train.cli_handlers:convert_official",
    _convert_args,
)

from esan.train.prepare_args import HELP, add_prepare_args  # noqa: E402

COMMANDS.register("prepare", HELP, "esan.train.prepare:main", add_prepare_args)

import esan.train.fit_args  # noqa: E402, F401  (registers synth, fit, eval, predict)
