"""``esan-train predict``: options; the work is ``esan.train.predict``."""

from __future__ import annotations

import argparse

NAME = "predict"
HELP = "write saliency maps of a video or frame folder as PNGs"
HANDLER = "esan.train.predict:main"  # imported when the command runs


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--source", required=True, help="a video file or a folder of frames")
    p.add_argument("--out", required=True, help="folder for the 8-bit PNG maps")
    p.add_argument("--lookahead", default="none", help="frames of lookahead L (default: none = whole video)")
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--device", default=None)
