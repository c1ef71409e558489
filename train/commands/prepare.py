"""``esan-train prepare``: options; the work is ``esan.train.prepare``."""

from __future__ import annotations

import argparse

NAME = "prepare"
HELP = "turn an official DHF1K / Hollywood-2 / UCF-Sports download into the training layout"
HANDLER = "esan.train.prepare:main"  # imported when the command runs


def add_args(p: argparse.ArgumentParser) -> None:
    # the dataset name is checked by the handler, so a bad value is one clear error line
    p.add_argument("dataset", help="dhf1k, hollywood2 or ucf")
    p.add_argument("--src", required=True,
                   help="the unpacked download: dhf1k: video/ and annotation/; hollywood2, ucf: training/ and testing/")
    p.add_argument("--out", required=True, help="data root to write: OUT/<DHF1K|Hollywood-2|UCF>/<split>/<video>/")
    p.add_argument("--link", action="store_true",
                   help="symlink files that are already images (frames, maps, fixations) instead of copying them")
    p.add_argument("--jobs", type=int, default=4, help="videos prepared in parallel (default 4)")
    p.add_argument("--frame-ext", default="png", help="png (default) or jpg: frames extracted from DHF1K's AVIs")
    p.epilog = ("Resumable: run the same command again after an interruption. Frames and annotations that do "
                "not pair up are left out and listed in OUT/<dataset>/prepare_report.json.")
