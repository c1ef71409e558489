"""``esan-train eval``: score a checkpoint on a dataset split with the six paper metrics.

Every frame of each video is predicted (``streaming``: exactly ``model.forward(video, lookahead=L)``;
``official``: the authors' windowed protocol, see :mod:`esan.train.predict`), mapped back onto the
original frame (inverse letterbox, bilinear) and scored against the ground truth at its own
resolution. Scores are reported raw and with the authors' post-processing (Gaussian blur of
``--blur-sigma`` px on the original-size map, then scaled to 0-255 and rounded like their PNGs).
The shuffled-AUC "other map" of a frame is the union of the fixations of 10 random other frames
of the evaluated set.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from esan.train import metrics as M
from esan.train.data import Video, read_fixations, read_frame, read_map, scan_split, splits_of
from esan.train.errors import UserError

Predictor = Callable[[Video, int], list[np.ndarray]]  # (video, n frames) -> maps at frame size
LABELS = {"auc_j": "AUC-J", "sim": "SIM", "s_auc": "s-AUC", "cc": "CC", "nss": "NSS", "kld": "KLD"}


def postprocess(pred: np.ndarray, sigma: float) -> np.ndarray:
    """The authors' post-processing: Gaussian blur (sigma px), scaled to 0-255 and rounded."""
    out = cv2.GaussianBlur(pred.astype(np.float32), (0, 0), sigma) if sigma > 0 else pred.astype(np.float32)
    top = float(out.max())
    return np.round(out * (255.0 / top)) if top > 0 else out


def centre_bias(hw: tuple[int, int], sigma_frac: float = 0.25) -> np.ndarray:
    """A centred anisotropic Gaussian (sigma = ``sigma_frac`` of each side): the centre-bias baseline."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.exp(-(((yy - (h - 1) / 2) / (sigma_frac * h)) ** 2 + ((xx - (w - 1) / 2) / (sigma_frac * w)) ** 2) / 2)


class _FixationPool:
    """Lazily loaded (and cached as points) fixation maps of every scored frame."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self._cache: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}

    def get(self, i: int) -> np.ndarray:
        if i not in self._cache:
            f = read_fixations(self.paths[i])
            self._cache[i] = (np.argwhere(f > 0), f.shape)
        pts, shape = self._cache[i]
        out = np.zeros(shape, np.uint8)
        out[pts[:, 0], pts[:, 1]] = 1
        return out

    def lazy(self) -> list[Callable[[], np.ndarray]]:
        return [lambda i=i: self.get(i) for i in range(len(self.paths))]


def evaluate_videos(
    videos: Sequence[Video],
    predictor: Predictor,
    max_frames: int | None = None,
    blur_sigma: float = 7.0,
    shuffled: bool = True,
    n_splits: int = 100,
    seed: int = 0,
    progress: bool = False,
) -> dict:
    """Score ``predictor`` on ``videos``: ``{"raw": summary, "blurred": summary|None, ...}``."""
    counts = [len(v) if max_frames is None else min(len(v), max_frames) for v in videos]
    pool = _FixationPool([p for v, n in zip(videos, counts, strict=True) for p in v.fixations[:n]])
    lazy = pool.lazy()
    names = M.METRICS if shuffled else tuple(m for m in M.METRICS if m != "s_auc")
    raw, blurred = M.MetricAverager(names), M.MetricAverager(names)
    rng = np.random.default_rng(seed)
    bar = _progress(sum(counts), progress)
    g = 0
    for video, n in zip(videos, counts, strict=True):
        preds = predictor(video, n)
        for t in range(n):
            gt = read_map(video.maps[t])
            fix = pool.get(g)
            other = M.other_map_for(lazy, fix.shape, exclude=g, rng=rng) if shuffled else None
            pairs = [(raw, preds[t])]
            if blur_sigma > 0:
                pairs.append((blurred, postprocess(preds[t], blur_sigma)))
            for avg, pred in pairs:
                scores = M.all_metrics(pred, gt, fix, other, rng=rng, n_splits=n_splits)
                avg.add({k: scores[k] for k in names})
            g += 1
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {
        "videos": len(videos),
        "frames": int(sum(counts)),
        "blur_sigma": blur_sigma,
        "raw": raw.summary(),
        "blurred": blurred.summary() if blur_sigma > 0 else None,
    }


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="eval", unit="frame", file=sys.stderr, dynamic_ncols=True)


def model_predictor(model, lookahead: int | None = None, protocol: str = "streaming", chunk: int = 32,
                    device="cpu") -> Predictor:
    """Predict the first ``n`` frames of a video with ``model``; maps come back at frame size."""
    from esan.train.predict import FrameStore, predict_maps, to_original

    def run(video: Video, n: int) -> list[np.ndarray]:
        store = FrameStore(model.cfg.input_size)
        for p in video.frames[:n]:
            store.add(read_frame(p))
        maps = predict_maps(model, store, n, lookahead, chunk, device, protocol).numpy()
        return [to_original(maps[t], store.sizes[t], model.cfg.input_size) for t in range(n)]

    return run


def centre_bias_predictor(video: Video, n: int) -> list[np.ndarray]:
    """The centre-bias baseline as a predictor (one Gaussian per frame at the map's size)."""
    hw = read_map(video.maps[0]).shape
    return [centre_bias(hw)] * n


def format_row(summary: dict) -> str:
    """Paper table order: AUC-J, SIM, s-AUC, CC, NSS, KLD."""
    cells = []
    for k in M.METRICS:
        v = summary.get(k, {}).get("mean", math.nan) if k in summary else math.nan
        cells.append(f"{LABELS[k]} {v:.3f}")
    return " | ".join(cells)


def main(args) -> int:
    """``esan-train eval`` handler."""
    from esan.train import checkpoint
    from esan.train.config import parse_lookahead
    from esan.train.predict import resolve_device

    args.lookahead = parse_lookahead(args.lookahead)
    if args.protocol not in ("streaming", "official"):
        raise UserError(f"unknown --protocol {args.protocol!r}; choose streaming or official")
    split = args.split or splits_of(args.dataset)[1]
    if args.max_videos is not None and args.max_videos < 1:
        raise UserError("--max-videos must be >= 1")
    videos = scan_split(args.data, args.dataset, split, max_videos=args.max_videos)
    device = resolve_device(args.device)
    model = checkpoint.load(args.checkpoint).to(device)
    predictor = model_predictor(model, args.lookahead, args.protocol, args.chunk, device)
    t0 = time.time()
    result = evaluate_videos(videos, predictor, args.max_frames, args.blur_sigma, seed=args.seed, progress=True)
    result.update(checkpoint=str(args.checkpoint), dataset=args.dataset, split=split, protocol=args.protocol,
                  lookahead=args.lookahead, seconds=round(time.time() - t0, 2))
    print(f"{args.dataset}/{split} ({result['videos']} videos, {result['frames']} frames, {args.protocol}, "
          f"lookahead {args.lookahead})")
    print(f"  {'raw':<12}{format_row(result['raw'])}")
    if result["blurred"] is not None:
        print(f"  {f'blur {args.blur_sigma:g}px':<12}{format_row(result['blurred'])}")
    skipped = max(s["skipped"] for s in result["raw"].values())
    if skipped:
        print(f"  {skipped} frame(s) skipped by some metric (no fixations or a constant map)")
    if args.out:
        from esan.runtime.core.fsutil import atomic_write_text

        atomic_write_text(args.out, json.dumps(_clean(result), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.out}")
    return 0


def _clean(x):
    """JSON-safe copy: NaN -> null (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
