"""``esan-rt bench`` / ``benchmarks/latency.py``: naive vs cached streaming latency, side by side.

Both schedules get the same frames in the same process, interleaved in blocks of ``C`` frames
(``C`` = the cached schedule's backward chunk; 1 by default) whose order alternates block by block,
so load changes on a shared machine hit both alike. The pipeline fill (``L+T(+C-1)`` frames that
produce no map yet) and ``--warmup`` further frames are pushed but not measured. One sample is the
mean ms/frame of one block (with ``C = 1``: one push = one map). ``speedup`` = naive p50 / cached p50.

Both schedules run on ``esan.runtime.core.processor.StreamProcessor``: the naive one on a
``esan.bench.naive_torch.NaiveBackend`` (always exact, ``C = 1``), the cached one on a torch /
ONNX Runtime / TensorRT backend; or both on the static-ring steppers of
``esan.bench.torch_fast_paths``. Stage times are the wall times of the backend calls (the
naive engine's calls: its ``2T+1`` re-encodes per frame count as ``encode``). FLOPs:
``esan.bench.flops``.

``--streams 1,2,4,8`` adds, on the cached backend and the same frames, the batched multi-stream scheduler
vs N independent single-stream processors (``esan.bench.multistream``): ``latency.json``'s ``multistream``
list and ``multistream.png``.
"""

from __future__ import annotations

import argparse
import copy
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
from esan.runtime.core.scheduler_api import delay_frames

STAGE_OF = {"encode": "encode", "align": "align", "backward_window": "backward", "decode": "decode"}


class StageClock:
    """Proxy of a backend / naive engine that adds the wall time of each call to its stage.

    Its ``encode``, ``align``, ``step``, ``backward_window`` and ``decode`` are timed, and so are their
    ``*_batch`` forms (what the scheduler calls); every other attribute (``config``, ``zero_state``,
    ``close``, ...) passes through.
    """

    def __init__(self, target: Any, sync: Any = None) -> None:
        self._target, self._sync = target, sync
        self.ms: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        base = name.removesuffix("_batch")  # a batched call runs inside the target: timed once, here
        if base not in STAGE_OF and base != "step":
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            stage = STAGE_OF.get(base) or ("forward" if args[0] == "fwd" else "backward")
            t0 = time.perf_counter()
            out = attr(*args, **kwargs)
            if self._sync is not None:
                self._sync()
            self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - t0) * 1e3
            return out

        return timed


class Runner:
    """One schedule: ``push(frame)``, the stage times of the pushes so far (``clock.ms``) and ``close``.

    ``processor`` is a ``StreamProcessor`` (``clock`` is then its backend) or a stepper (no stages).
    """

    def __init__(self, name: str, processor: Any, clock: StageClock | None, sync: Any, detail: str) -> None:
        self.name, self.processor, self.clock, self.sync, self.detail = name, processor, clock, sync, detail
        self.log: dict[str, Any] = {"samples_ms": [], "push_ms": [], "push_index": [], "warmup_ms": [],
                                    "stage_sum_ms": {}, "detail": detail}  # fmt: skip

    def push(self, frame: np.ndarray) -> tuple[float, int]:
        t0 = time.perf_counter()
        out = self.processor.push(frame)
        if self.sync is not None:
            self.sync()
        return (time.perf_counter() - t0) * 1e3, len(out)

    def close(self) -> None:
        """Close the backend (or stepper) behind this schedule."""
        getattr(self.processor, "backend", self.processor).close()


def _stream_runner(name: str, backend: Any, lookahead: int, chunk: int, sync: Any, detail: str) -> Runner:
    """``StreamProcessor`` on ``backend``, every backend call timed by a ``StageClock``."""
    from esan.runtime.core.processor import StreamProcessor

    clock = StageClock(backend, sync)
    return Runner(name, StreamProcessor(clock, lookahead, chunk), clock, sync, detail)


def _naive_runner(engine: Any, cfg: Any, lookahead: int, sync: Any, detail: str) -> Runner:
    """The naive schedule: ``StreamProcessor`` (C = 1) on a ``NaiveBackend`` whose engine calls are timed."""
    from esan.bench.naive_torch import NaiveBackend
    from esan.runtime.core.processor import StreamProcessor

    clock = StageClock(engine, sync)
    return Runner("naive", StreamProcessor(NaiveBackend(clock, cfg), lookahead, 1), clock, sync, detail)


def random_model(preset: str, seed: int) -> Any:
    """A seeded random ESAN of ``preset`` with small non-zero DCN offsets (sampling really moves)."""
    import torch

    from esan.train.config import ESANConfig
    from esan.train.model import ESAN

    torch.manual_seed(seed)
    model = ESAN(ESANConfig.preset(preset)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "conv_offset_mask.weight" in name:
                p.normal_(0.0, 0.5 / (p[0].numel() ** 0.5))
    return model


def source_key(args: argparse.Namespace) -> str:
    from esan.runtime.core.bundle import sha256_file

    return f"sha256:{sha256_file(args.checkpoint)}" if args.checkpoint else f"random:{args.preset}:seed{args.seed}"


def export_key(args: argparse.Namespace, precision: str, **extra: Any) -> dict[str, Any]:
    """What an exported benchmark bundle depends on: model, L, precision, bundle format and graph revision."""
    from esan.runtime.core.bundle import FORMAT_VERSION
    from esan.runtime.core.cache_paths import GRAPH_REVISION

    return {"source": source_key(args), "lookahead": args.lookahead, "precision": precision,
            "format_version": FORMAT_VERSION, "graph_revision": GRAPH_REVISION, **extra}  # fmt: skip


def reuse_or_build(marker: Path, key: dict[str, Any], present: bool, build: Any, what: str, where: Path) -> None:
    """Reuse ``what`` in ``where`` when ``marker`` records ``key`` and it is ``present``; else ``build()`` it."""
    if present and marker.is_file() and json.loads(marker.read_text()) == key:
        print(f"bench: reusing {what} in {where}", flush=True)
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    t0 = time.perf_counter()
    print(f"bench: making {what} in {where} ...", flush=True)
    build()
    atomic_write_text(marker, json.dumps(key))
    print(f"bench: {what} ready in {time.perf_counter() - t0:.0f} s", flush=True)


def checkpoint_for(args: argparse.Namespace, model: Any, cache: Path) -> Path:
    """``--checkpoint``, or the seeded random model saved once under ``cache``."""
    from esan.train.checkpoint import save

    if args.checkpoint:
        return Path(args.checkpoint)
    path = cache / f"random-{args.preset}-seed{args.seed}.pt"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        save(path, model, note="bench (seeded random weights)")
    return path


def say(message: str) -> None:
    print(f"  {message}", flush=True)


def prepare_bundles(args: argparse.Namespace, model: Any, cache: Path) -> tuple[Path, Path]:
    """Export (or reuse) the cached bundle and the naive graphs for ``model`` under ``cache``."""
    from esan.bench.naive_onnx import export_naive_graphs, read_naive_manifest
    from esan.export.onnx_export import export_bundle

    key = export_key(args, args.precision, dcn="standard")
    bundle, naive = cache / "bundle", cache / "naive"

    def build() -> None:
        ckpt = checkpoint_for(args, model, cache)
        export_bundle(ckpt, bundle, lookahead=args.lookahead, precision=args.precision, verify=False, model=model,
                      progress=say)  # fmt: skip
        export_naive_graphs(model, naive, args.precision, source_sha256=key["source"], progress=say)

    present = (bundle / "manifest.json").is_file() and read_naive_manifest(naive) is not None
    reuse_or_build(cache / "bench_key.json", key, present, build, "the cached bundle and the naive graphs", cache)
    return bundle, naive


def bundle_cache(args: argparse.Namespace) -> Path:
    return Path(args.bundle_cache) if args.bundle_cache else Path(args.out) / "bundles"


def _torch_sync(device: str) -> Any:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.synchronize


def build_runners(args: argparse.Namespace, model: Any) -> dict[str, Runner]:
    """The naive and the cached runner for ``args`` (see the module docstring).

    torch: every runner gets its own copy of ``model`` (the backends and steppers convert the model
    they are given in place); ``model`` itself is left as it is.
    """
    cfg, L, C = model.cfg, args.lookahead, args.backward_chunk
    if args.backend == "torch":
        import torch

        from esan.bench.naive_torch import TorchNaiveEngine
        from esan.runtime.backends.torch_backend import TorchBackend

        if args.threads:
            torch.set_num_threads(args.threads)
        sync = _torch_sync(args.device)
        fast = args.cuda_graph or args.channels_last
        fast_opts = {"channels_last": args.channels_last, "cuda_graph": args.cuda_graph}
        if fast:
            from esan.bench.torch_fast_paths import CachedStepper

            stepper = CachedStepper(copy.deepcopy(model), L, args.device, args.precision, **fast_opts)
            cached = Runner("cached", stepper, None, sync, f"torch fast path ({stepper.describe()})")
        else:
            backend = TorchBackend(model=copy.deepcopy(model), device=args.device, precision=args.precision)
            cached = _stream_runner("cached", backend, L, C, sync, "torch StreamProcessor (eager)")
        if args.naive_fast_paths and fast:
            from esan.bench.torch_fast_paths import NaiveStepper

            stepper = NaiveStepper(copy.deepcopy(model), L, args.device, args.precision, **fast_opts)
            naive = Runner("naive", stepper, None, sync, f"torch naive fast path ({stepper.describe()})")
        else:
            engine = TorchNaiveEngine(copy.deepcopy(model), args.device, args.precision)
            naive = _naive_runner(engine, cfg, L, sync, "torch StreamProcessor on NaiveBackend (eager)")
        return {"naive": naive, "cached": cached}
    from esan.bench.naive_onnx import OrtNaiveEngine

    cache = bundle_cache(args)
    bundle, naive_dir = prepare_bundles(args, model, cache)
    if args.backend == "ort":
        from esan.bench.multistream import open_bundle_backend

        backend: Any = open_bundle_backend(args, bundle)
        naive_dev = args.device
    else:  # trt: cached on our TensorRT engines, naive graphs on ONNX Runtime's TensorRT EP (untested here)
        from esan.export import to_trt

        ckpt = Path(args.checkpoint) if args.checkpoint else cache / f"random-{args.preset}.pt"
        from esan.bench.multistream import parse_streams

        streams = max(parse_streams(args.streams) or [1])  # the engines' profile serves --streams' largest N
        rc = to_trt.main([str(ckpt), "--out", str(bundle), "--precision", args.precision, "--lookahead", str(L),
                          "--max-streams", str(max(streams, 8))])  # fmt: skip
        if rc != 0:
            raise UserError(f"building the TensorRT engines for {bundle} failed (to_trt.py exit code {rc})")
        from esan.bench.multistream import open_bundle_backend

        backend, naive_dev = open_bundle_backend(args, bundle), "tensorrt"
    cached = _stream_runner("cached", backend, L, C, None, f"{args.backend} StreamProcessor ({bundle})")
    try:
        engine = OrtNaiveEngine(naive_dir, naive_dev, args.threads)
    except BaseException:
        cached.close()
        raise
    naive = _naive_runner(engine, cfg, L, None, f"ort StreamProcessor on NaiveBackend ({naive_dir})")
    return {"naive": naive, "cached": cached}


def synthetic_frames(n: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """``n`` RGB uint8 frames at the model's input size: a bright blob moving over smooth noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    base = np.kron(base, np.ones((8, 8, 1), np.float32))[:h, :w]
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        cy, cx = h / 2 + h / 4 * np.sin(i / 5), w / 2 + w / 4 * np.cos(i / 7)
        blob = 255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (min(h, w) / 10) ** 2))
        frames.append(np.clip(0.6 * base + 0.6 * blob[..., None], 0, 255).astype(np.uint8))
    return frames


def _gpu_peak(device: str, backend: str) -> tuple[Any, Any]:
    if not device.startswith("cuda") or backend != "torch":
        return None, None
    import torch

    return torch.cuda.reset_peak_memory_stats, lambda: round(torch.cuda.max_memory_allocated() / 2**20, 1)


def measure(args: argparse.Namespace, runners: dict[str, Runner], frames: list[np.ndarray], fill: int) -> None:
    """Push ``frames`` to both runners, interleaved in alternating blocks; fills each runner's log."""
    block = args.backward_chunk
    reset_peak, read_peak = _gpu_peak(args.device, args.backend)
    names = list(runners)
    for i in range(fill):  # pipeline fill + warm-up: pushed, timed, never counted
        for name in names if i % 2 == 0 else names[::-1]:
            runners[name].log["warmup_ms"].append(runners[name].push(frames[i])[0])
    for r in runners.values():
        if r.clock is not None:
            r.clock.ms.clear()
    n_blocks = (len(frames) - fill) // block
    for b in range(n_blocks):
        first = fill + b * block
        for name in names if b % 2 == 0 else names[::-1]:
            r = runners[name]
            if reset_peak is not None:
                reset_peak()
            total = 0.0
            for i in range(first, first + block):
                ms, _ = r.push(frames[i])
                total += ms
                r.log["push_ms"].append(ms)
                r.log["push_index"].append(i)
            r.log["samples_ms"].append(total / block)
            if read_peak is not None:
                r.log["peak_gpu_mem_mb"] = max(r.log.get("peak_gpu_mem_mb") or 0.0, read_peak())
        msg = ", ".join(f"{n} {runners[n].log['samples_ms'][-1]:.1f}" for n in names)
        print(f"bench: block {b + 1}/{n_blocks} (frames {first}-{first + block - 1}): {msg} ms/frame", flush=True)
    for r in runners.values():
        if r.clock is not None:
            r.log["stage_sum_ms"] = dict(r.clock.ms)


def run(args: argparse.Namespace) -> int:
    """Naive vs cached (``esan.bench.command`` dispatches ``esan-rt bench`` here by default)."""
    from esan.bench.multistream import parse_streams

    t_start = time.perf_counter()
    load_start = bench_report.load_average()
    from esan.runtime.backends.select import choose_backend
    from esan.runtime.session import check_options

    check_options(backend=args.backend, device=args.device, lookahead=args.lookahead,
                  backward_chunk=args.backward_chunk, precision=args.precision, threads=args.threads,
                  max_streams=None, max_batch=None)  # fmt: skip
    choice = choose_backend(args.backend, args.device)  # resolves --backend/--device auto
    backend_choice = choice.record(args.backend, args.device)
    args.backend, args.device = choice.backend, choice.device
    print(f"bench: {choice.line()}", flush=True)
    L, C = args.lookahead, args.backward_chunk
    streams = parse_streams(args.streams)
    if args.frames < 1 or args.warmup < 0:
        raise UserError("need --frames >= 1 and --warmup >= 0")
    if args.backend == "trt" and args.device != "cuda":
        raise UserError("--backend trt needs --device cuda")
    if (args.cuda_graph or args.channels_last or args.naive_fast_paths) and args.backend != "torch":
        raise UserError("--cuda-graph / --channels-last / --naive-fast-paths are torch-backend fast paths")
    if args.cuda_graph and (args.device != "cuda" or C != 1):
        raise UserError("--cuda-graph needs --device cuda and --backward-chunk 1")
    if args.cuda_graph:  # the graph is captured on the first full-pipeline push: keep that push unmeasured
        args.warmup = max(args.warmup, 1)
    if args.checkpoint:
        from esan.train.checkpoint import load

        model = load(args.checkpoint)
        preset = "checkpoint"
    else:
        model, preset = random_model(args.preset, args.seed), args.preset
    cfg = model.cfg
    runners = build_runners(args, model)
    try:
        rss_setup = bench_report.current_rss_mb()
        for r in runners.values():
            r.log["rss_after_setup_mb"] = rss_setup
        delay = delay_frames(L, cfg.radius, C)
        fill = delay + args.warmup
        fill += (-(fill - delay)) % C  # measured blocks line up with chunk emissions
        measured = -(-args.frames // C) * C
        frames = synthetic_frames(fill + measured, tuple(cfg.input_size), args.seed)
        print(f"bench: {preset} {args.backend}/{args.device}/{args.precision} L={L} C={C}: {fill} unmeasured + "
              f"{measured} measured frames per schedule", flush=True)  # fmt: skip
        measure(args, runners, frames, fill)
    finally:
        for r in runners.values():
            r.close()
    multistream = None
    if streams:  # batched scheduler vs independent processors on a fresh cached backend, the same frames
        from esan.bench.multistream import run_for_bench

        bundle = None if args.backend == "torch" else prepare_bundles(args, model, bundle_cache(args))[0]
        multistream = run_for_bench(args, model, bundle, frames, fill, streams)
    from esan.bench.flops import schedule_gflops

    gflops = schedule_gflops(cfg, L, C)
    gpu = None
    if args.device == "cuda":
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    settings = {
        "preset": preset, "checkpoint": args.checkpoint, "backend": args.backend, "device": args.device,
        "precision": args.precision, "lookahead": L, "radius": cfg.radius, "backward_chunk": C,
        "naive_backward_chunk": 1, "input_size": list(cfg.input_size), "measured_frames": measured,
        "warmup_requested": args.warmup, "warmup_frames": fill, "block_frames": C, "threads": args.threads,
        "cuda_graph": args.cuda_graph, "channels_last": args.channels_last,
        "naive_fast_paths": args.naive_fast_paths, "seed": args.seed, "backend_choice": backend_choice,
        "streams": streams,
        "interleaving": "alternating blocks of C frames, order swapped every block, same frames for both",
    }  # fmt: skip
    meta = {
        "command": shlex.join(sys.argv), "argv": sys.argv, "machine": bench_report.machine_info(gpu),
        "load_average": {"start": load_start, "end": bench_report.load_average()},
        "wall_s": round(time.perf_counter() - t_start, 1),
        "notes": [
            "one sample = mean ms/frame over one block of C pushes (C = 1: one push = one map)",
            "GFLOPs counted with FlopCounterMode (convs/matmuls) + explicit deform_conv2d count; "
            "achieved GFLOP/s = GFLOPs per frame / p50",
            "stage times are wall times of backend calls inside push; 'other' = letterboxing + Python overhead",
        ]
        + ([f"the cached bwd_window graph starts from the zero state without the recurrent conv on it: it "
            f"executes L = {L} recurrent convs where the count assumes L+1"]
           if args.backend in ("ort", "trt") and C == 1 else []),
    }
    report = bench_report.build_report(settings, {n: r.log for n, r in runners.items()}, gflops, meta)
    if multistream is not None:
        report["multistream"] = multistream
    written = bench_report.write_outputs(report, args.out, plots=not args.no_plots)
    print(f"bench: naive p50 {report['naive_ms_p50']} ms/frame, cached p50 {report['cached_ms_p50']} ms/frame, "
          f"speedup {report['speedup']}x (FLOP ratio {report['flops_ratio']}x); wrote {', '.join(written)} "
          f"to {args.out}", flush=True)  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/latency.py``: the same options and outputs as ``esan-rt bench``."""
    from esan.runtime.cli.bench_args import add_bench_args
    from esan.runtime.core.clikit import run_handler

    p = argparse.ArgumentParser(prog="latency.py", description=__doc__.splitlines()[0])
    add_bench_args(p)
    return run_handler("esan.bench.command:run", p.parse_args(argv), "latency.py")


if __name__ == "__main__":
    sys.exit(main())
