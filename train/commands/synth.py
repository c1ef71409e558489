"""``esan-train synth``: options; the work is ``esan.train.synth``."""

from __future__ import annotations

import argparse

NAME = "synth"
HELP = "write a small synthetic saliency dataset"
HANDLER = "esan.train.synth:main"  # imported when the command runs


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="data root to write (the set lands in OUT/synth/<training|testing>/)")
    p.add_argument("--videos", type=int, default=12, help="training videos (default 12)")
    p.add_argument("--test-videos", type=int, default=None, help="testing videos (default max(2, videos/3))")
    p.add_argument("--frames", type=int, default=30, help="frames per video (default 30)")
    p.add_argument("--size", default="120x160", help="frame size HxW (default 120x160)")
    p.add_argument("--seed", type=int, default=0)
