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
import time
from pathlib import Path

import cv2
import numpy as np

from esan.runtime.core.assets import DEMO_BUNDLE, DEMO_CHECKPOINT
from esan.runtime.core.errors import UserError
from esan.runtime.core.fsutil import atomic_path, check_writable_dir
from esan.runtime.core.sample_clip import SAMPLE_FPS, SAMPLE_HW, sample_frames
from esan.runtime.core.sample_clip import background as _background  # noqa: F401  (tests draw frames with it)
from esan.runtime.io.outputs import OutputOptions, check_outputs
from esan.runtime.io.sources import open_source
from esan.runtime.io.tiles import draw_status


def make_sample_clip(path: Path, frames: int, hw: tuple[int, int] = SAMPLE_HW, fps: float = SAMPLE_FPS) -> Path:
    """Write a short synthetic clip: moving objects over a textured background (mp4v)."""
    h, w = hw
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise UserError(f"cannot write the sample clip {path} (OpenCV mp4v)")
    try:
        for img in sample_frames(frames, hw, fps):
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
    if not args.checkpoint and not (DEMO_BUNDLE / "manifest.json").is_file():
        raise UserError(f"the demo bundle {DEMO_BUNDLE} is not installed; reinstall esan-rt")
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEMO_CHECKPOINT  # runs its shipped bundle (session)
    plan = rt.prepare(checkpoint, backend="ort", device="cpu", lookahead=args.lookahead)
    model_name = checkpoint.name
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
