"""Handlers of the small ``esan-train`` subcommands (imported only when one runs)."""

from __future__ import annotations

import argparse


def convert_official(args: argparse.Namespace) -> int:
    from esan.train.checkpoint import convert_official as convert

    report = convert(args.src, args.dst)
    for line in report.lines():
        print(line)
    print(f"wrote {args.dst}")
    return 0
