"""Soak: N streams x F frames through the multi-stream pipeline; flat memory, no latency drift, nothing lost.

A benchmark run by hand (minutes on 2 CPU cores; timing is judged here, never in tests)::

    OMP_NUM_THREADS=1 python benchmarks/soak_multistream.py --streams 8 --frames 2000 --out soak.json

Streams are in-memory "files" (every frame must come out) of different frame sizes, each writing
``.npy`` maps and an overlay video into a temporary folder, on the shipped tiny model with ONNX
Runtime (one intra-op thread). Reports process RSS sampled every second, each stream's scheduler memory
(peak vs last), the processing latency of the first and last quarter of every stream (after warm-up)
and a linear drift in ms per 1000 frames, and the maps written vs frames read. Exit code 1 when a check
fails: RSS growth after warm-up over ``--max-growth-mb``, latency drift (last quarter p50 over
``--max-drift`` x first), or any frame lost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SIZES = [(48, 64), (60, 80), (40, 90), (72, 48), (54, 96), (64, 64), (36, 112), (80, 60)]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_sampler(samples: list[tuple[float, float]], stop: threading.Event, t0: float) -> None:
    while not stop.wait(1.0):
        samples.append((time.perf_counter() - t0, rss_mb()))


def make_reader(n: int, hw: tuple[int, int], seed: int):
    """``n`` frames of a moving texture (cheap: one base image rolled per frame)."""
    base = np.random.default_rng(seed).integers(0, 256, (hw[0], hw[1] * 2, 3), dtype=np.uint8)
    state = {"i": 0}

    def read() -> np.ndarray | None:
        i = state["i"]
        if i >= n:
            return None
        state["i"] = i + 1
        return np.ascontiguousarray(np.roll(base, 3 * i, axis=1)[:, : hw[1]])

    return read


def quarter_stats(values: list[float], warmup: int) -> dict[str, float]:
    v = np.asarray(values[warmup:], np.float64)
    q = max(1, len(v) // 4)
    slope = float(np.polyfit(np.arange(len(v)), v, 1)[0]) * 1000.0 if len(v) > 2 else 0.0
    r = lambda x: round(float(x), 3)  # noqa: E731
    return {"first_p50": r(np.median(v[:q])), "last_p50": r(np.median(v[-q:])),
            "first_p95": r(np.percentile(v[:q], 95)), "last_p95": r(np.percentile(v[-q:], 95)),
            "drift_ms_per_1000_frames": r(slope)}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--lookahead", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default: 1)")
    ap.add_argument("--warmup", type=int, default=100, help="frames per stream left out of the drift checks")
    ap.add_argument("--max-growth-mb", type=float, default=20.0)
    ap.add_argument("--max-drift", type=float, default=1.5)
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the maps and videos (default: deleted at the end)")
    args = ap.parse_args()

    from esan.export.bundle_cache import ensure_bundle
    from esan.runtime.backends import open_backend
    from esan.runtime.core.assets import DEMO_CHECKPOINT
    from esan.runtime.core.scheduler import MultiStreamScheduler
    from esan.runtime.io.outputs import OutputOptions, Outputs
    from esan.runtime.io.pipeline import Pipeline
    from esan.runtime.io.sources import FrameSource

    bundle = ensure_bundle(DEMO_CHECKPOINT, args.lookahead, "fp32", "standard", log=lambda m: None)
    scheduler = MultiStreamScheduler(open_backend("ort", bundle_dir=bundle, lookahead=args.lookahead,
                                                  threads=args.threads), args.lookahead)  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="esan-soak-"))
    lanes = []
    for i in range(args.streams):
        hw = SIZES[i % len(SIZES)]
        src = FrameSource(make_reader(args.frames, hw, i), name=f"mem{i}:{hw[1]}x{hw[0]}", kind="video",
                          live=False, fps=25.0)  # fmt: skip
        opts = OutputOptions(maps=tmp / f"maps{i}", video=tmp / f"v{i}.mp4")
        meta = {"backend": "ort", "lookahead": args.lookahead, "delay_frames": scheduler.delay_frames,
                "source": src.name, "source_fps": 25.0}  # fmt: skip
        lanes.append((src, Outputs(opts, meta, fps=25.0, stream_id=i)))
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.perf_counter()
    sampler = threading.Thread(target=memory_sampler, args=(samples, stop, t0), daemon=True)
    sampler.start()
    pipeline = Pipeline(scheduler, lanes, report=tmp / "report.json")
    run = pipeline.run()
    stop.set()
    sampler.join()
    scheduler.shutdown()

    rss = np.asarray([m for _, m in samples]) if samples else np.asarray([rss_mb()])
    skip = max(1, len(rss) // 10)  # warm-up: the first tenth of the run
    steady = rss[skip:] if len(rss) > skip + 2 else rss
    q = max(1, len(steady) // 4)
    growth = float(np.median(steady[-q:]) - np.median(steady[:q]))
    streams = []
    for lane, s in zip(pipeline.lanes, run.streams, strict=True):
        on_disk = len(list((tmp / f"maps{lane.sid}").glob("*.npy")))
        streams.append({"stream": lane.sid, "source": s.source, "frames_read": lane.source.captured,
                        "maps": s.frames, "maps_on_disk": on_disk, "dropped": s.dropped_frames,
                        "stop_reason": s.stop_reason, "memory": s.memory,
                        "processing_ms": quarter_stats(lane.log.processing_ms, args.warmup),
                        "output_ms": quarter_stats(lane.log.output_ms, args.warmup)})  # fmt: skip
    lost = [st["stream"] for st in streams
            if not (st["frames_read"] == st["maps"] == st["maps_on_disk"] == args.frames and st["dropped"] == 0)]
    drift = [st["stream"] for st in streams
             if st["processing_ms"]["last_p50"] > args.max_drift * max(st["processing_ms"]["first_p50"], 1.0)]
    result = {
        "streams": args.streams, "frames_per_stream": args.frames, "wall_s": run.wall_s,
        "aggregate_fps": round(run.frames / run.wall_s, 2) if run.wall_s else 0.0, "rounds": pipeline.rounds,
        "rss_mb": {"start": round(float(rss[0]), 1), "after_warmup_p50": round(float(np.median(steady[:q])), 1),
                   "end_p50": round(float(np.median(steady[-q:])), 1), "max": round(float(rss.max()), 1),
                   "growth_after_warmup": round(growth, 1), "samples": [round(float(m), 1) for m in rss]},
        "streams_detail": streams, "lost_streams": lost, "drifting_streams": drift,
        "ok": not lost and not drift and growth <= args.max_growth_mb,
    }  # fmt: skip
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    brief = {k: v for k, v in result.items() if k not in ("streams_detail",)}
    brief["rss_mb"] = {k: v for k, v in result["rss_mb"].items() if k != "samples"}
    print(json.dumps(brief, indent=2))
    for st in streams:
        p = st["processing_ms"]
        print(f"stream {st['stream']} {st['source']}: {st['maps']}/{st['frames_read']} maps ({st['maps_on_disk']} "
              f"on disk), scheduler memory peak {st['memory']['scheduler_peak_bytes'] / 1024:.0f} KiB last "
              f"{st['memory']['scheduler_last_bytes'] / 1024:.0f} KiB, processing p50 {p['first_p50']} -> "
              f"{p['last_p50']} ms (drift {p['drift_ms_per_1000_frames']} ms/1000 frames)")
    if args.keep:
        print(f"maps and videos in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
