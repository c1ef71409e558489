"""``esan-train fit``: options; the work is ``esan.train.fit`` (torch, imported when it runs)."""

from __future__ import annotations

import argparse

NAME = "fit"
HELP = "train ESAN (paper settings i-iv or the synthetic set)"
HANDLER = "esan.train.fit:main"  # imported when the command runs


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data root holding <DHF1K|Hollywood-2|UCF|synth>/<split>/")
    # choices are checked by the handler, so a bad value is one clear error line (not argparse's usage)
    p.add_argument("--setting", required=True,
                   help="paper training setting: i=DHF1K, ii=Hollywood-2, iii=UCF, iv=all three; synth")
    p.add_argument("--out", required=True, help="run directory (checkpoints, train_state.pt, log.jsonl)")
    p.add_argument("--preset", default="paper", help="paper (default) or tiny")
    p.add_argument("--steps", type=int, default=None, help="total optimiser steps (default 20000; tiny 300)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-4; tiny 3e-3)")
    p.add_argument("--schedule", default="constant", help="constant (default), step (x0.1 after 2/3) or cosine")
    p.add_argument("--batch-size", type=int, default=4, help="clips per step, over all processes (paper: 4)")
    p.add_argument("--clip-len", type=int, default=15, help="consecutive frames per clip (paper: 15)")
    p.add_argument("--grad-clip", type=float, default=5.0, help="max gradient norm (0 = off)")
    p.add_argument("--val-every", type=int, default=500, help="validate every N steps (0 = only at the end)")
    p.add_argument("--val-videos", type=int, default=4, help="videos of the val split scored (default 4)")
    p.add_argument("--val-frames", type=int, default=30, help="frames per val video scored (default 30)")
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--backbone-weights", default=None,
                   help="imagenet (torchvision's VGG16 weights, downloaded once) or a vgg16 state dict file")
    p.add_argument("--nproc", type=int, default=1, help="processes (GPUs) to train with: runs torchrun for you")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--workers", type=int, default=2, help="data loader worker processes")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
