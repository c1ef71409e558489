"""``esan-train convert-official``: import the authors' released weights (``esan.train.checkpoint``)."""

from __future__ import annotations

import argparse

NAME = "convert-official"
HELP = "import the authors' released ESAN-VSP weights into an esan-rt checkpoint"
HANDLER = "esan.train.commands.convert_official:run"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="the authors' ESAN-epoch_18.pth (a plain state dict)")
    p.add_argument("dst", help="esan-rt checkpoint to write (.pt)")


def run(args: argparse.Namespace) -> int:
    from esan.train.checkpoint import convert_official

    report = convert_official(args.src, args.dst)
    for line in report.lines():
        print(line)
    print(f"wrote {args.dst}")
    return 0
