"""INT8 vs fp32 on ONNX Runtime CPU: per-frame latency of the cached schedule and map fidelity, one run.

    python benchmarks/int8_measure.py (--preset paper|tiny | --checkpoint CKPT) [--lookahead 8]
        [--calib-frames 48] [--frames 16] [--threads 2] [--flavours ort,tensorrt] [--sensitivity]
        --work DIR --out RESULT.json

Footage: clips made from real photographs (``esan.bench.photo_clips``: a camera pans and zooms over
packaged photos); the calibration photos and the held-out photos are different pictures. Steps: the
fp32 bundle (exported once into ``--work``), the int8 bundle per flavour (``quantize_bundle``, calibrated
on a folder of the calibration clips), fidelity on the held-out clips (``int8_fidelity``), then the ort
flavour's and fp32's cached schedules stream the same held-out frames alternately frame by frame (the
first of each pair alternates), so a shared machine's load hits both alike: the figure is the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from esan.runtime.core.fsutil import atomic_write_text


def _model_and_ckpt(args: argparse.Namespace, work: Path):
    from esan.train import checkpoint

    if args.checkpoint:
        return checkpoint.load(args.checkpoint), Path(args.checkpoint)
    from esan.bench.latency import random_model

    model = random_model(args.preset, args.seed)
    ckpt = work / f"random-{args.preset}-seed{args.seed}.pt"
    if not ckpt.exists():
        checkpoint.save(ckpt, model, note="int8 measurement (seeded random weights)")
    return model, ckpt


def _fp32_bundle(args: argparse.Namespace, work: Path) -> Path:
    from esan.runtime.core.bundle import load_bundle
    from esan.runtime.core.errors import UserError

    out = work / f"fp32-L{args.lookahead}"
    try:
        if load_bundle(out).lookahead == args.lookahead:
            return out
    except UserError:
        pass
    from esan.export.onnx_export import export_bundle

    model, ckpt = _model_and_ckpt(args, work)
    return export_bundle(ckpt, out, lookahead=args.lookahead, verify=False, model=model)


def _latency(fp32: Path, int8: Path, frames: list[np.ndarray], lookahead: int, threads: int, fill: int) -> dict:
    """fp32 and int8 cached schedules on the same frames, order alternating (``esan.bench.precisions``)."""
    from esan.bench.precisions import side_by_side
    from esan.runtime.backends.ort_backend import OrtBackend

    backends = {"fp32": OrtBackend(fp32, threads=threads), "int8": OrtBackend(int8, threads=threads)}
    try:
        return side_by_side(backends, frames, lookahead, fill)
    finally:
        for backend in backends.values():
            backend.close()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="int8_measure.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=("paper", "tiny"), default="paper")
    p.add_argument("--checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lookahead", type=int, default=8)
    p.add_argument("--calib-frames", type=int, default=48)
    p.add_argument("--clip-frames", type=int, default=24, help="frames per held-out photo clip")
    p.add_argument("--frames", type=int, default=16, help="measured frames per schedule (latency)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--flavours", default="ort,tensorrt")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--held-out", type=int, default=3, metavar="N", help="held-out photo clips to score (default 3)")
    p.add_argument("--reuse", action="store_true", help="reuse int8 bundles already in --work (no re-calibration)")
    p.add_argument("--sensitivity", action="store_true",
                   help="also the per-part table (one graph quantized at a time), into the result and the manifest")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    import onnx
    import onnxruntime
    import torch

    from esan.bench.int8_fidelity import compare_bundles
    from esan.bench.photo_clips import CALIBRATION_PHOTOS, HELD_OUT_PHOTOS, photo_clips, write_folder
    from esan.export.int8_export import quantize_bundle

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    load_start = os.getloadavg()
    fp32 = _fp32_bundle(args, work)
    calib_dir = work / "calib-photos"
    if not calib_dir.exists():
        write_folder(photo_clips(CALIBRATION_PHOTOS, 48), calib_dir)
    held = photo_clips(HELD_OUT_PHOTOS[: args.held_out], args.clip_frames)
    result: dict = {"fidelity": {}, "int8": {}}
    bundles = {}
    for flavour in args.flavours.split(","):
        t0 = time.perf_counter()
        target = work / f"int8-{flavour}-L{args.lookahead}"
        if args.reuse and (target / "manifest.json").is_file():
            bundles[flavour] = target
        else:
            bundles[flavour] = quantize_bundle(fp32, target, calib=str(calib_dir), calib_frames_n=args.calib_frames,
                                               flavour=flavour, threads=args.threads)  # fmt: skip
        man = json.loads((bundles[flavour] / "manifest.json").read_text())
        checks = {g: {k: c["int8_vs_fp32"][k] for k in ("corr", "max_abs")}
                  for g, c in man["checks"].items() if c.get("int8_vs_fp32")}  # fmt: skip
        result["int8"][flavour] = {"quantize_s": time.perf_counter() - t0, "checks": checks,
                                   "calibration_source": man["int8"]["calibration_source"]}  # fmt: skip
        if held:
            fid = compare_bundles(fp32, bundles[flavour], list(held.values()), threads=args.threads)
            fid["clips"] = dict(zip(held, fid["clips"], strict=True))
            result["fidelity"][flavour] = fid
            print(f"{flavour}: fidelity {json.dumps(fid['all'])}", flush=True)
    if args.sensitivity:
        from esan.bench import int8_sensitivity as sens

        flavour = "ort" if "ort" in bundles else next(iter(bundles))
        rows = sens.sensitivity_table(fp32, bundles[flavour], list(held.values()), threads=args.threads)
        sens.record(bundles[flavour], rows, f"held-out photo clips {', '.join(HELD_OUT_PHOTOS)}")
        result["sensitivity"] = {"flavour": flavour, "rows": rows}
        print(sens.markdown(rows), flush=True)
    if not args.no_latency and "ort" in bundles:
        frames = [f for clip in (held or photo_clips(HELD_OUT_PHOTOS[:1], args.clip_frames)).values() for f in clip]
        fill = args.lookahead + 2 + 2  # L + T pipeline fill + 2 warm-up frames, unmeasured
        frames = (frames * (1 + (fill + args.frames) // len(frames)))[: fill + args.frames]
        result["latency"] = _latency(fp32, bundles["ort"], frames, args.lookahead, args.threads, fill)
        print(f"latency: {json.dumps(result['latency'])}", flush=True)
    result.update({
        "command": shlex.join(["python", "benchmarks/int8_measure.py", *(argv or sys.argv[1:])]),
        "model": args.checkpoint or f"random {args.preset} preset, seed {args.seed} (esan.bench.latency.random_model)",
        "lookahead": args.lookahead, "threads": args.threads, "calib_frames": args.calib_frames,
        "footage": {"kind": "camera pan/zoom clips over real photographs (scikit-image / matplotlib sample data)",
                    "calibration_photos": list(CALIBRATION_PHOTOS), "held_out_photos": list(held),
                    "held_out_frames_per_clip": args.clip_frames},
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                    "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                    "note": "shared by several sessions working in parallel: only ratios within this run count"},
        "versions": {"onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "wall_s": time.time() - t_start,
    })  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
