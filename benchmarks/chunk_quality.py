"""Chunked backward approximation vs exact streaming maps (mean CC, max abs) for C in {1, 4, 8}.

    python benchmarks/chunk_quality.py [--checkpoint CKPT] [--data SYNTH_ROOT] [--out chunk_quality.json]

How far the chunked backward approximation moves the maps from the exact streaming ones.

For each clip, ``ESAN.forward(frames, lookahead=L, backward_chunk=C)`` (exactly what the streaming
runtime computes with ``--backward-chunk C``; C = 1 is exact) is compared per frame with C = 1:
Pearson CC (``esan.train.metrics.cc``) and max abs difference, averaged over frames and clips.
Clips come from a synthetic dataset root (``esan-train synth`` layout) or are generated with
``esan.train.synth.make_video``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_CHUNKS = (1, 4, 8)


def load_clips(data: str | None, clips: int, frames: int, seed: int) -> list[list[np.ndarray]]:
    """RGB uint8 clips: the first ``clips`` videos (``frames`` each) under ``data``, else generated ones."""
    if data:
        from esan.runtime.core.errors import UserError
        from esan.runtime.core.framefiles import list_frames, natural_key
        from esan.train.data import read_frame  # RGB; UserError naming an unreadable file

        folders = (p for p in Path(data).glob("**/images/") if p.is_dir())
        videos = sorted((p.parent for p in folders), key=lambda v: natural_key(str(v)))
        if not videos:
            raise UserError(f"no <video>/images/ folders under {data}; write one with `esan-train synth`")
        return [[read_frame(f) for f in list_frames(v / "images")[:frames]] for v in videos[:clips]]
    from esan.train.synth import make_video

    return [make_video(np.random.default_rng([seed, i]), frames, (120, 160))[0] for i in range(clips)]


def clip_maps(model: Any, clip: list[np.ndarray], lookahead: int, chunk: int) -> np.ndarray:
    """Streaming-equivalent maps ``float32 [N, H/2, W/2]`` of one clip."""
    import torch

    from esan.runtime.core.letterbox import preprocess

    x = np.stack([preprocess(f, tuple(model.cfg.input_size))[0] for f in clip])
    with torch.inference_mode():
        return model(torch.from_numpy(x)[None], lookahead=lookahead, backward_chunk=chunk)[0, :, 0].numpy()


def chunk_quality(
    model: Any, clips: list[list[np.ndarray]], lookahead: int = 8, chunks: tuple[int, ...] = DEFAULT_CHUNKS
) -> dict[str, Any]:
    """``{"rows": [{chunk, mean_cc, min_cc, max_abs, mean_abs, frames}], ...}`` against C = 1."""
    from esan.train.metrics import cc

    exact = [clip_maps(model, c, lookahead, 1) for c in clips]
    rows = []
    for chunk in chunks:
        ccs, maxabs, meanabs = [], 0.0, []
        for clip, ref in zip(clips, exact, strict=True):
            got = ref if chunk == 1 else clip_maps(model, clip, lookahead, chunk)
            ccs += [1.0 if np.array_equal(g, r) else cc(g, r) for g, r in zip(got, ref, strict=True)]
            maxabs = max(maxabs, float(np.abs(got - ref).max()))
            meanabs.append(float(np.abs(got - ref).mean()))
        rows.append({
            "chunk": chunk, "mean_cc": round(float(np.nanmean(ccs)), 6), "min_cc": round(float(np.nanmin(ccs)), 6),
            "max_abs": round(maxabs, 6), "mean_abs": round(float(np.mean(meanabs)), 7), "frames": len(ccs),
        })  # fmt: skip
    return {"lookahead": lookahead, "clips": len(clips), "frames_per_clip": [len(c) for c in clips], "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = [f"chunked vs exact streaming maps, L = {result['lookahead']}, {result['clips']} clips",
             "| C | mean CC | min CC | max abs | mean abs | frames |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["rows"]:
        lines.append(f"| {r['chunk']} | {r['mean_cc']:.6f} | {r['min_cc']:.6f} | {r['max_abs']:.2e} | "
                     f"{r['mean_abs']:.2e} | {r['frames']} |")  # fmt: skip
    return "\n".join(lines)


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="CKPT", help="esan-rt checkpoint (default: random weights of --preset)")
    p.add_argument("--preset", choices=("tiny", "paper"), default="tiny", help="without --checkpoint (default: tiny)")
    p.add_argument("--data", metavar="SYNTH_ROOT", help="dataset root with <video>/images/ (default: generated clips)")
    p.add_argument("--clips", type=int, default=3, help="clips to use (default: 3)")
    p.add_argument("--frames", type=int, default=24, help="frames per clip (default: 24)")
    p.add_argument("--lookahead", type=int, default=8, help="L (default: 8)")
    p.add_argument("--chunks", default="1,4,8", help="comma-separated C values (default: 1,4,8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decoder-gain", type=float, default=50.0,
                   help="random weights only: scale of the decoder conv so maps are not flat (default: 50)")
    p.add_argument("--forget-bias", type=float, default=0.0,
                   help="random weights only: added to both cells' forget-gate bias (longer memory; default: 0)")
    p.add_argument("--out", default="chunk_quality.json", help="JSON output (default: chunk_quality.json)")


def run(args: argparse.Namespace) -> int:
    """Handler of ``benchmarks/chunk_quality.py``."""
    from esan.runtime.core.fsutil import atomic_write_text

    if args.checkpoint:
        from esan.train.checkpoint import load

        model = load(args.checkpoint)
    else:
        import torch

        from esan.bench.latency import random_model

        model = random_model(args.preset, args.seed)
        with torch.no_grad():  # spread the random decoder's maps over (0, 1), as the tests do
            model.final_conv[0].weight.mul_(args.decoder_gain)
            hid = model.cfg.hidden  # gate order i, f, o, g: a forget-gate bias lengthens the cells' memory
            for lstm in (model.lstm_forw, model.lstm_back):
                lstm.cell.conv.bias[hid : 2 * hid] += args.forget_bias
    chunks = tuple(int(c) for c in str(args.chunks).split(","))
    clips = load_clips(args.data, args.clips, args.frames, args.seed)
    result = chunk_quality(model, clips, args.lookahead, chunks)
    result.update({"checkpoint": args.checkpoint, "preset": None if args.checkpoint else args.preset,
                   "decoder_gain": None if args.checkpoint else args.decoder_gain,
                   "forget_bias": None if args.checkpoint else args.forget_bias,
                   "data": args.data or "generated (esan.train.synth.make_video, 120x160)"})  # fmt: skip
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/chunk_quality.py [--checkpoint CKPT] [--data SYNTH_ROOT] [--out chunk_quality.json]``."""
    from esan.runtime.core.clikit import run_handler

    p = argparse.ArgumentParser(prog="chunk_quality.py", description=__doc__.splitlines()[0])
    add_args(p)
    return run_handler("esan.bench.chunk_quality:run", p.parse_args(argv), "chunk_quality.py")


if __name__ == "__main__":
    sys.exit(main())
