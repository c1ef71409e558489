"""``esan-train eval``: options; the work is ``esan.train.evaluate``."""

from __future__ import annotations

import argparse

NAME = "eval"
HELP = "score a checkpoint on a dataset split (AUC-J, SIM, s-AUC, CC, NSS, KLD)"
HANDLER = "esan.train.evaluate:main"  # imported when the command runs


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="data root")
    p.add_argument("--dataset", required=True, help="DHF1K, Hollywood-2, UCF, DIEM or synth")
    p.add_argument("--split", default=None, help="default: val for DHF1K, testing otherwise")
    p.add_argument("--lookahead", default="none", help="frames of lookahead L (default: none = whole video)")
    p.add_argument("--protocol", default="streaming", help="streaming (default) or official (the authors' windows)")
    p.add_argument("--max-videos", type=int, default=None)
    p.add_argument("--max-frames", type=int, default=None, help="score only the first K frames of each video")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--blur-sigma", type=float, default=7.0, help="post-processing blur in pixels (0 = off)")
    p.add_argument("--chunk", type=int, default=32, help="frames per model call (memory bound)")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the AUC jitter and shuffled-AUC draws")
