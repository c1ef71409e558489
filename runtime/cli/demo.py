"""``esan-rt demo``: the shipped tiny model on a generated clip, on ONNX Runtime CPU, in seconds.

It runs the shipped ONNX bundle of the tiny checkpoint (``DEMO_BUNDLE``), so the base install (no
PyTorch) runs it.

The clip plays as a simulated live camera (paced at its frame rate, oldest frames dropped if the
pipeline falls behind), so the latency it prints is capture -> map, what a user of a camera gets.
Writes ``sample.mp4`` (unless ``--source``), ``overlay.mp4``, ``maps/*.png``, ``report.json`` and
``latency.png`` into ``--out`` and prints a short summary; ``--show`` / ``--view-port`` let you watch it.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np

from esan.runtime.core.assets import DEMO_BUNDLE, DEMO_CHECKPOINT
from esan.runtime.core.errors import UserError
from esan.runtime.core.fsutil import atomic_path, check_writable_dir
from esan.runtime.io.outputs import OutputOptions, check_outputs
from esan.runtime.io.sources import open_source
from esan.runtime.io.tiles import draw_status

SAMPLE_HW = (360, 480)
SAMPLE_FPS = 25.0


def _background(hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth coloured texture with a gradient (BGR uint8)."""
    h, w = hw
    noise = rng.random((h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    tex = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.5)
    ramp = np.linspace(0.2, 0.6, w, dtype=np.float32)[None, :, None]
    img = 0.45 * tex + 0.2 * fine + ramp * 0.5
    return np.clip(img * 200.0, 0, 255).astype(np.uint8)


def make_sample_clip(path: Path, frames: int, hw: tuple[int, int] = SAMPLE_HW, fps: float = SAMPLE_FPS) -> Path:
    """Write a short synthetic clip: moving objects over a textured background (mp4v)."""
    rng = np.random.default_rng(7)
    h, w = hw
    bg = _background(hw, rng)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise UserError(f"cannot write the sample clip {path} (OpenCV mp4v)")
    try:
        for i in range(frames):
            s = i / fps
            img = np.roll(bg, int(3 * i), axis=1).copy()  # slow camera pan
            cx, cy = int(w * (0.5 + 0.35 * math.sin(1.3 * s))), int(h * (0.5 + 0.3 * math.sin(2.1 * s + 1)))
            cv2.circle(img, (cx, cy), 28, (30, 40, 230), -1, cv2.LINE_AA)
            x0 = int((40 + 90 * s) % (w + 60)) - 60
            cv2.rectangle(img, (x0, int(h * 0.7)), (x0 + 60, int(h * 0.7) + 40), (240, 220, 20), -1)
            px, py = int(w * 0.25 + 40 * math.cos(3 * s)), int(h * 0.25 + 40 * math.sin(3 * s))
            tri = np.array([[px, py - 22], [px - 20, py + 16], [px + 20, py + 16]], np.int32)
            cv2.fillPoly(img, [tri], (40, 230, 40), cv2.LINE_AA)
            writer.write(img)
    finally:
        writer.release()
    return path


def write_preview(video: Path, out_png: Path, tiles: int = 4) -> Path | None:
    """A 2x2 contact sheet of evenly spaced overlay frames, for a look without a video player."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        return None
    picks = np.linspace(0, len(frames) - 1, tiles).round().astype(int)
    labelled = []
    for i in picks:
        tile = frames[i].copy()
        draw_status(tile, f"frame {i}")
        labelled.append(tile)
    half = (tiles + 1) // 2
    blank = [np.zeros_like(labelled[0])] * (2 * half - tiles)
    rows = [np.hstack(labelled[:half]), np.hstack(labelled[half:] + blank)]
    ok, png = cv2.imencode(".png", np.vstack(rows))
    if not ok:
        return None
    with atomic_path(out_png) as tmp:
        tmp.write_bytes(png.tobytes())
    return out_png


def run(args: argparse.Namespace) -> int:
    """``esan-rt demo``."""
    from esan.runtime import session as rt
    from esan.runtime.cli.stream import execute, stream_meta

    t0 = time.perf_counter()
    if args.frames < 1:
        raise UserError(f"--frames must be >= 1, got {args.frames}")
    if args.checkpoint:  # exported to a cached bundle on first use (needs the train extra)
        model, model_name = {"checkpoint": args.checkpoint}, Path(args.checkpoint).name
    else:  # the shipped bundle: no PyTorch needed
        if not (DEMO_BUNDLE / "manifest.json").is_file():
            raise UserError(f"the demo bundle {DEMO_BUNDLE} is not installed; reinstall esan-rt")
        model, model_name = {"bundle": str(DEMO_BUNDLE)}, DEMO_CHECKPOINT.name
    plan = rt.prepare(model.get("checkpoint"), bundle=model.get("bundle"), backend="ort", device="cpu",
                      lookahead=args.lookahead)
    out = Path(args.out)
    try:
        check_writable_dir(out)
    except PermissionError as exc:
        raise UserError(f"--out: {exc}") from None
    opts = OutputOptions(video=out / "overlay.mp4", maps=out / "maps", maps_format="png",
                         report=out / "report.json", plot=out / "latency.png", show=args.show,
                         view_port=args.view_port, view_address=args.view_address,
                         view_allow_hosts=tuple(args.view_allow_host or ()))
    check_outputs(opts)
    if args.source:
        source_path = args.source
    else:
        source_path = str(make_sample_clip(out / "sample.mp4", args.frames))
        print(f"generated sample clip {source_path} ({args.frames} frames, {SAMPLE_HW[1]}x{SAMPLE_HW[0]})")
    source = open_source(source=source_path, realtime=True)  # a simulated live camera
    try:
        scheduler = plan.scheduler()
    except BaseException:
        source.stop()
        raise
    meta = stream_meta(argparse.Namespace(realtime=True), source, scheduler)
    summary = execute([source], scheduler, opts, [meta], max_frames=args.frames if args.source else None)
    print(f"esan-rt demo: {model_name} on ONNX Runtime CPU, lookahead {args.lookahead}")
    for line in summary.lines():
        print(f"  {line}")
    preview = write_preview(opts.video, out / "preview.png") if opts.video.is_file() else None
    print(f"  overlay video: {opts.video}")
    if preview is not None:
        print(f"  preview:       {preview} (4 overlay frames)")
    print(f"  maps:          {opts.maps}/ ({summary.frames} png)")
    print(f"  report:        {opts.report}")
    if opts.plot.is_file():
        print(f"  latency plot:  {opts.plot}")
    print(f"  done in {time.perf_counter() - t0:.1f} s")
    return 130 if summary.interrupted else 0
