"""``esan-rt bench --precision fp32,int8[,fp16]``: the cached schedule in each precision, side by side, one run.

Every precision gets its own bundle of the same model (fp32 / fp16 exported, int8 quantized from the fp32 one
with ``esan.export.int8_export.quantize_bundle``, ``ort`` flavour, calibrated on ``--calib`` or the sample
clip), all cached under ``--bundle-cache``. One ``StreamProcessor`` per precision then streams the same
frames, frame by frame, the order rotating every frame so a shared machine's load hits them alike; the pipeline fill and
``--warmup`` frames are not measured. Reported: p50 / mean ms per frame, stage ms per frame, and each
precision's speed-up over the first one given (``fp32,int8``: int8's speed-up over fp32), in
``OUT/precisions.json`` and as a table. A precision the chosen execution provider cannot run is reported as
skipped, with ONNX Runtime's reason, instead of failing the run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from esan.bench import report as bench_report
from esan.runtime.core.errors import UserError
from esan.runtime.core.fsutil import atomic_write_text

PRECISIONS = ("fp32", "fp16", "int8")


def parse_precisions(text: str) -> list[str]:
    """``"fp32,int8"`` -> ``["fp32", "int8"]``; one line naming the bad part otherwise."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in PRECISIONS]
    if not items or bad or len(set(items)) != len(items):
        raise UserError(f"--precision takes one of {', '.join(PRECISIONS)} or a comma list of them without repeats "
                        f"(e.g. fp32,int8), got {text!r}")  # fmt: skip
    return items


def is_comparison(text: str) -> bool:
    """Whether ``--precision`` asks for this side-by-side mode (a list, or int8, which has no naive graphs)."""
    items = parse_precisions(text)
    return len(items) > 1 or items == ["int8"]


def _bundles(args: argparse.Namespace, model: Any, precisions: list[str], cache: Path) -> dict[str, Path]:
    """One bundle per precision under ``cache`` (exported or quantized once, reused while the key matches)."""
    from esan.bench.latency import checkpoint_for, export_key, reuse_or_build, say
    from esan.export.int8_export import quantize_bundle
    from esan.export.onnx_export import export_bundle

    out: dict[str, Path] = {}
    for prec in ["fp32", *[p for p in precisions if p != "fp32"]]:  # int8 is quantized from the fp32 bundle
        folder = out[prec] = cache / f"precision-{prec}"
        int8_key = {"flavour": "ort", "calib": args.calib, "calib_frames": args.calib_frames} if prec == "int8" else {}

        def build(prec: str = prec, folder: Path = folder) -> None:
            if prec == "int8":
                quantize_bundle(out["fp32"], folder, calib=args.calib, calib_frames_n=args.calib_frames,
                                flavour="ort", threads=args.threads or 0, progress=say)  # fmt: skip
            else:
                export_bundle(checkpoint_for(args, model, cache), folder, lookahead=args.lookahead, precision=prec,
                              verify=False, model=model, progress=say)  # fmt: skip

        reuse_or_build(cache / f"precision-{prec}.json", export_key(args, prec, **int8_key),
                       (folder / "manifest.json").is_file(), build, f"the {prec} bundle", folder)  # fmt: skip
    return {p: out[p] for p in precisions}


def _open(path: Path, args: argparse.Namespace) -> Any:
    from esan.runtime.session import prepare

    return prepare(bundle=path, backend=args.backend, device=args.device, lookahead=args.lookahead,
                   backward_chunk=1, threads=args.threads).open_backend()  # fmt: skip


def side_by_side(backends: dict[str, Any], frames: list[np.ndarray], lookahead: int, fill: int) -> dict[str, Any]:
    """Stream ``frames`` through one cached ``StreamProcessor`` per backend, rotating the order every frame.

    Returns per name: ``p50_ms``, ``mean_ms``, ``frames`` and ``stage_ms_per_frame`` over the frames after
    ``fill``; plus ``speedup_p50`` / ``speedup_mean`` of every name over the first one.
    """
    from esan.bench.latency import StageClock
    from esan.runtime.core.processor import StreamProcessor

    names = list(backends)
    clocks = {n: StageClock(b) for n, b in backends.items()}
    procs = {n: StreamProcessor(clocks[n], lookahead) for n in names}
    ms: dict[str, list[float]] = {n: [] for n in names}
    for i, frame in enumerate(frames):
        if i == fill:
            for c in clocks.values():
                c.ms.clear()
        for n in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            procs[n].push(frame)
            if i >= fill:
                ms[n].append((time.perf_counter() - t0) * 1e3)
    out: dict[str, Any] = {}
    for n in names:
        a = np.asarray(ms[n])
        out[n] = {"p50_ms": float(np.median(a)), "mean_ms": float(a.mean()), "frames": len(a),
                  "stage_ms_per_frame": {k: v / len(a) for k, v in clocks[n].ms.items()}}  # fmt: skip
    first = names[0]
    out["speedup_p50"] = {n: out[first]["p50_ms"] / out[n]["p50_ms"] for n in names}
    out["speedup_mean"] = {n: out[first]["mean_ms"] / out[n]["mean_ms"] for n in names}
    return out


def markdown(result: dict[str, Any], names: list[str]) -> str:
    stages = sorted({s for n in names for s in result[n]["stage_ms_per_frame"]})
    head = ["precision", "p50 ms/frame", "mean ms/frame", f"speed-up vs {names[0]} (p50)", *[f"{s} ms" for s in stages]]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        r = result[n]
        cells = [n, f"{r['p50_ms']:.1f}", f"{r['mean_ms']:.1f}", f"{result['speedup_p50'][n]:.2f}x",
                 *[f"{r['stage_ms_per_frame'].get(s, 0.0):.1f}" for s in stages]]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def run_precisions(args: argparse.Namespace) -> int:
    """Handler of ``esan-rt bench --precision A,B,...`` (module docstring)."""
    from esan.bench.latency import bundle_cache, random_model, synthetic_frames
    from esan.runtime.backends.select import choose_backend
    from esan.runtime.core.scheduler_api import delay_frames

    precisions = parse_precisions(args.precision)
    if args.backend not in ("auto", "ort"):
        raise UserError(f"--precision {args.precision} compares exported bundles: use --backend ort (ONNX Runtime; "
                        "this comparison builds no TensorRT engines)")
    choice = choose_backend("ort", args.device)
    args.backend, args.device = choice.backend, choice.device
    print(f"bench: {choice.line()}", flush=True)
    if args.backward_chunk != 1 or args.streams or args.cuda_graph or args.channels_last:
        raise UserError("--precision lists measure the exact cached schedule of one stream: drop --backward-chunk, "
                        "--streams, --cuda-graph and --channels-last")  # fmt: skip
    t_start, load_start = time.perf_counter(), bench_report.load_average()
    if args.checkpoint:
        from esan.train.checkpoint import load

        model, preset = load(args.checkpoint), "checkpoint"
    else:
        model, preset = random_model(args.preset, args.seed), args.preset
    cfg = model.cfg
    paths = _bundles(args, model, precisions, bundle_cache(args))
    backends, skipped = {}, {}
    for prec, path in paths.items():
        try:
            backends[prec] = _open(path, args)
        except Exception as exc:  # noqa: BLE001 - e.g. fp16 on an EP without half kernels: reported, not fatal
            skipped[prec] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            print(f"bench: {prec} skipped: {skipped[prec]}", flush=True)
    if not backends:
        raise UserError(f"no precision of {args.precision} runs on {args.backend}/{args.device}")
    fill = delay_frames(args.lookahead, cfg.radius, 1) + args.warmup
    frames = synthetic_frames(fill + args.frames, tuple(cfg.input_size), args.seed)
    print(f"bench: {preset} {args.backend}/{args.device} L={args.lookahead} {','.join(backends)}: {fill} unmeasured "
          f"+ {args.frames} measured frames each, order rotating every frame", flush=True)  # fmt: skip
    try:
        result = side_by_side(backends, frames, args.lookahead, fill)
    finally:
        for b in backends.values():
            b.close()
    names = list(backends)
    report = {
        "format": "esan-rt-precisions", "format_version": 1, "command": shlex.join(sys.argv),
        "settings": {"preset": preset, "checkpoint": args.checkpoint, "backend": args.backend, "device": args.device,
                     "lookahead": args.lookahead, "threads": args.threads, "measured_frames": args.frames,
                     "unmeasured_frames": fill, "calib": args.calib or "sample clip", "calib_frames": args.calib_frames,
                     "bundles": {p: str(v) for p, v in paths.items()}},
        "results": result, "skipped": skipped, "machine": bench_report.machine_info(None),
        "versions": bench_report.versions(),
        "load_average": {"start": load_start, "end": bench_report.load_average()},
        "wall_s": round(time.perf_counter() - t_start, 1),
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "precisions.json", json.dumps(report, indent=2) + "\n")
    print(markdown(result, names), flush=True)
    print(f"bench: wrote {out / 'precisions.json'}", flush=True)
    return 0
