"""Arguments of ``esan-train synth|fit|eval|predict`` (torch-free; registered on import)."""

from __future__ import annotations

import argparse

from esan.train.commands import COMMANDS


def parse_lookahead(text: str | int | None) -> int | None:
    """``--lookahead``: an integer >= 0, or ``none`` for the whole video (handlers call this, so a bad
    value is one clear error line)."""
    from esan.train.errors import UserError

    if text is None or isinstance(text, int):
        value = text
    elif text.lower() in ("none", "full", "all"):
        return None
    else:
        try:
            value = int(text)
        except ValueError:
            raise UserError(f"--lookahead must be an integer >= 0 or 'none', got {text!r}") from None
    if value is not None and value < 0:
        raise UserError(f"--lookahead must be >= 0, got {value}")
    return value


def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="data root to write (the set lands in OUT/synth/<training|testing>/)")
    p.add_argument("--videos", type=int, default=12, help="training videos (default 12)")
    p.add_argument("--test-videos", type=int, default=None, help="testing videos (default max(2, videos/3))")
    p.add_argument("--frames", type=int, default=30, help="frames per video (default 30)")
    p.add_argument("--size", default="120x160", help="frame size HxW (default 120x160)")
    p.add_argument("--seed", type=int, default=0)


def _fit_args(p: argparse.ArgumentParser) -> None:
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


def _eval_args(p: argparse.ArgumentParser) -> None:
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


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--source", required=True, help="a video file or a folder of frames")
    p.add_argument("--out", required=True, help="folder for the 8-bit PNG maps")
    p.add_argument("--lookahead", default="none", help="frames of lookahead L (default: none = whole video)")
    p.add_argument("--chunk", type=int, default=32)
    p.add_argument("--device", default=None)


COMMANDS.register("synth", "write a small synthetic saliency dataset", "esan.train.synth:main", _synth_args)
COMMANDS.register("fit", "train ESAN (paper settings i-iv or the synthetic set)", "esan.train.fit:main", _fit_args)
COMMANDS.register("eval", "score a checkpoint on a dataset split (AUC-J, SIM, s-AUC, CC, NSS, KLD)",
                  "esan.train.evaluate:main", _eval_args)
COMMANDS.register("predict", "write saliency maps of a video or frame folder as PNGs",
                  "esan.train.predict:main", _predict_args)
