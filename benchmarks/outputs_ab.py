"""The output stage's encoders at 720p, side by side: video codecs and PNG settings for the saved maps.

``python benchmarks/outputs_ab.py --out r.json [--map 32x48] [--rounds 40]``

Frames come from the demo's synthetic clip at 1280x720; the overlay and the 8-bit map come from
``esan.runtime.io.overlay.Renderer`` for a smooth map of ``--map`` size. Per round every variant encodes the
same picture once, order swapped every round (load changes on a shared machine hit all alike); figures are
medians in ms and the ratio to what ``esan.runtime.io.outputs`` uses today (mp4v; ``PNG_PARAMS``), with the
bytes each variant writes. A video variant that OpenCV cannot open (codec missing) is listed as such.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from esan.bench import report as bench_report
from esan.runtime.cli.demo import make_sample_clip
from esan.runtime.core.fsutil import atomic_write_text
from esan.runtime.core.letterbox import map_box
from esan.runtime.io.outputs import PNG_PARAMS
from esan.runtime.io.overlay import Renderer

HW = (720, 1280)
VIDEO = {"mp4v": ("mp4v", ".mp4"), "MJPG": ("MJPG", ".avi"), "avc1": ("avc1", ".mp4"), "XVID": ("XVID", ".avi")}
P = cv2
PNG = {
    "outputs.PNG_PARAMS": PNG_PARAMS,
    "level1_rle_filter_up": [P.IMWRITE_PNG_COMPRESSION, 1, P.IMWRITE_PNG_STRATEGY, P.IMWRITE_PNG_STRATEGY_RLE,
                             P.IMWRITE_PNG_FILTER, P.IMWRITE_PNG_FILTER_UP],  # fmt: skip
    "level1_rle_filter_sub": [P.IMWRITE_PNG_COMPRESSION, 1, P.IMWRITE_PNG_STRATEGY, P.IMWRITE_PNG_STRATEGY_RLE,
                              P.IMWRITE_PNG_FILTER, P.IMWRITE_PNG_FILTER_SUB],  # fmt: skip
    "level1_huffman_only": [P.IMWRITE_PNG_COMPRESSION, 1, P.IMWRITE_PNG_STRATEGY, P.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY],
    "level1_default_filter_up": [P.IMWRITE_PNG_COMPRESSION, 1, P.IMWRITE_PNG_FILTER, P.IMWRITE_PNG_FILTER_UP],
}


def pictures(tmp: Path, map_hw: tuple[int, int], n: int = 20) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` overlay canvases (BGR) of the 720p demo clip and one 8-bit map at frame size."""
    clip = make_sample_clip(tmp / "clip720.mp4", n, HW)
    cap = cv2.VideoCapture(str(clip))
    rng = np.random.default_rng(0)
    sal = cv2.GaussianBlur(rng.random(map_hw).astype(np.float32), (0, 0), 3)
    sal /= sal.max()
    box = map_box(HW, (2 * map_hw[0], 2 * map_hw[1]), map_hw)
    r, canvases = Renderer(), []
    while (got := cap.read())[0]:
        canvases.append(r.overlay(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB), sal, box).copy())
    return canvases, r.map_u8(sal, box, HW).copy()


def _video_job(writer: Any, canvases: list[np.ndarray]) -> Any:
    return lambda i: writer.write(canvases[i % len(canvases)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--map", default="32x48", help="model output size HxW (tiny: 32x48, paper: 128x160)")
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args(argv)
    map_hw = tuple(int(v) for v in args.map.split("x"))
    load_start = bench_report.load_average()
    with tempfile.TemporaryDirectory(prefix="esan-outputs-ab-") as name:
        tmp = Path(name)
        canvases, map_u8 = pictures(tmp, map_hw)
        writers, unavailable = {}, []
        for v, (fourcc, ext) in VIDEO.items():
            w = cv2.VideoWriter(str(tmp / f"{v}{ext}"), cv2.VideoWriter_fourcc(*fourcc), 25.0, (HW[1], HW[0]))
            if w.isOpened():
                writers[v] = (w, tmp / f"{v}{ext}")
            else:
                unavailable.append(v)
        jobs: dict[str, Any] = {f"video {v}": _video_job(w, canvases) for v, (w, _) in writers.items()}
        sizes: dict[str, int] = {}
        for v, params in PNG.items():
            jobs[f"png {v}"] = (lambda prm: lambda i: cv2.imencode(".png", map_u8, prm))(params)
            sizes[f"png {v}"] = len(cv2.imencode(".png", map_u8, params)[1])
        times: dict[str, list[float]] = {k: [] for k in jobs}
        names = list(jobs)
        for i in range(args.rounds):
            for k in names if i % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                jobs[k](i)
                times[k].append((time.perf_counter() - t0) * 1e3)
        for v, (w, path) in writers.items():
            w.release()
            sizes[f"video {v}"] = path.stat().st_size // args.rounds
    med = {k: round(statistics.median(t), 2) for k, t in times.items()}
    base = {"video": med.get("video mp4v"), "png": med["png outputs.PNG_PARAMS"]}
    figures = {k: {"median_ms": m, "ratio_to_current": round(m / base[k.split()[0]], 3) if base[k.split()[0]] else None,
                   "bytes_per_frame": sizes[k]} for k, m in med.items()}  # fmt: skip
    report = {"command": shlex.join(sys.argv), "machine": bench_report.machine_info(),
              "versions": {**bench_report.versions(), "opencv": cv2.__version__},
              "load_average": {"start": load_start, "end": bench_report.load_average()},
              "frame_hw": list(HW), "map_hw": list(map_hw), "rounds": args.rounds,
              "video_unavailable": unavailable, "figures": figures}  # fmt: skip
    atomic_write_text(Path(args.out), json.dumps(report, indent=1))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
