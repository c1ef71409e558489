"""Handler of ``esan-rt stream``: open the source and backend, check outputs, run the pipeline.

Everything that can be refused is refused before the first frame is read: output paths, the
checkpoint or bundle (and its fit with backend / lookahead / TensorRT), and the source itself.
Exit codes: 0 done (also when a live source disconnects: the stream is flushed as its end),
2 a user error (one line), 130 interrupted with Ctrl-C (outputs are still finalised).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from esan.runtime.core.errors import UserError
from esan.runtime.io.outputs import OutputOptions, Outputs, check_outputs
from esan.runtime.io.pipeline import StreamSummary, run_stream
from esan.runtime.io.sources import FrameSource, open_source, redact_url

BACKENDS = ("ort", "trt", "torch")
DCN_MODE = "standard"


def _log(msg: str) -> None:
    print(f"esan-rt: {msg}", file=sys.stderr)


def resolve_bundle(
    backend: str, *, checkpoint: str | None, bundle: str | None, lookahead: int, precision: str
) -> Path | None:
    """The bundle directory the backend needs (exported and cached from ``checkpoint`` if needed)."""
    if backend == "torch":
        if bundle is not None:
            raise UserError("--backend torch runs a checkpoint: pass --checkpoint CKPT instead of --bundle")
        return None
    if bundle is not None:
        path = Path(bundle)
        if not (path / "manifest.json").is_file():
            raise UserError(f"{path} is not a bundle (no manifest.json); export one with export/to_onnx.py")
        return path
    from esan.export.bundle_cache import ensure_bundle, ensure_engines

    path = ensure_bundle(checkpoint, lookahead, precision, DCN_MODE, log=_log)
    if backend == "trt":
        ensure_engines(checkpoint, path, lookahead, precision, DCN_MODE, log=_log)
    return path


def check_bundle(path: Path, backend: str, lookahead: int) -> Any:
    """Load the bundle once and refuse one that does not fit the backend (says how to fix it).

    Precision and TensorRT version are checked by ``open_backend``. A lookahead other than the
    bundle's is exact too (the backward cell then runs step by step), so it only gets a note.
    """
    from esan.runtime.core.bundle import check_compatible, load_bundle, rebuild_command

    bundle = load_bundle(path)
    use_window = check_compatible(bundle, backend, lookahead)
    if backend == "trt":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            raise UserError("--backend trt needs TensorRT (pip install 'esan-rt[trt]'); or use --backend ort") from None
    if not use_window:
        _log(f"note: bundle {path} was built for lookahead {bundle.lookahead}; lookahead {lookahead} runs "
             f"the backward cell step by step (same maps, slower); for speed re-export with "
             f"{rebuild_command(bundle, lookahead)}")
    return bundle


def open_processor(
    backend: str,
    *,
    checkpoint: str | None = None,
    bundle: str | None = None,
    device: str = "cpu",
    lookahead: int = 8,
    backward_chunk: int = 1,
    precision: str | None = None,
) -> Any:
    """A ready ``StreamProcessor`` for the given backend, with every compatibility check done."""
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UserError(f"checkpoint {checkpoint} does not exist; check the path (train one with `esan-train fit`)")
    bundle_dir = resolve_bundle(backend, checkpoint=checkpoint, bundle=bundle, lookahead=lookahead,
                                precision=precision or "fp32")
    if bundle_dir is not None:
        bundle_dir = check_bundle(bundle_dir, backend, lookahead)
    from esan.runtime.backends import open_backend
    from esan.runtime.core.processor import StreamProcessor

    be = open_backend(backend, bundle_dir=bundle_dir, checkpoint=None if bundle_dir else checkpoint,
                      device=device, lookahead=lookahead, precision=precision)
    try:
        return StreamProcessor(be, lookahead, backward_chunk)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def stream_meta(args: argparse.Namespace, source: FrameSource, processor: Any) -> dict[str, Any]:
    be = processor.backend
    return {
        "source": source.name, "source_kind": source.kind, "source_fps": round(source.fps, 3),
        "realtime": bool(getattr(args, "realtime", False)),
        "backend": getattr(be, "name", args.backend), "precision": getattr(be, "precision", args.precision or "fp32"),
        "device": str(getattr(be, "device", args.device)), "lookahead": processor.lookahead,
        "backward_chunk": processor.backward_chunk, "radius": processor.radius,
        "delay_frames": processor.delay_frames,
    }


def output_options(args: argparse.Namespace) -> OutputOptions:
    p = lambda v: Path(v) if v else None  # noqa: E731
    return OutputOptions(show=bool(args.show), video=p(args.save_video), maps=p(args.save_maps),
                         maps_format=args.maps_format, report=p(args.report), plot=p(args.plot),
                         view_port=args.view_port, view_address=args.view_address)


def validate(args: argparse.Namespace) -> None:
    for name, low in (("lookahead", 0), ("backward_chunk", 1), ("queue_size", 1), ("max_frames", 1)):
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise UserError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")


def execute(
    source: FrameSource, processor: Any, opts: OutputOptions, meta: dict[str, Any], max_frames: int | None
) -> StreamSummary:
    """Run the stream with the given outputs (shared by ``stream`` and ``demo``)."""
    try:
        outputs = Outputs(opts, meta, fps=source.fps, title=f"esan-rt: {source.name}")
        return run_stream(source, processor, outputs, max_frames=max_frames)
    finally:
        source.stop()
        close = getattr(processor.backend, "close", None)
        if close is not None:
            close()


def run(args: argparse.Namespace) -> int:
    """``esan-rt stream``."""
    validate(args)
    opts = output_options(args)
    check_outputs(opts)
    if args.checkpoint is None and args.bundle is None:
        from esan.runtime.core.assets import DEMO_CHECKPOINT

        args.checkpoint = str(DEMO_CHECKPOINT)
        _log(f"no --checkpoint/--bundle given: using the bundled tiny demo model {DEMO_CHECKPOINT.name} "
             "(trained on synthetic data; pass your own checkpoint for real use)")
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise UserError(f"checkpoint {args.checkpoint} does not exist; check the path")
    source = open_source(args.camera, args.source, queue_size=args.queue_size, realtime=args.realtime)
    try:
        processor = open_processor(args.backend, checkpoint=args.checkpoint, bundle=args.bundle,
                                   device=args.device, lookahead=args.lookahead,
                                   backward_chunk=args.backward_chunk, precision=args.precision)
    except BaseException:
        source.stop()
        raise
    _log(f"streaming {redact_url(source.name)} ({source.kind}, {source.fps:.1f} fps) with "
         f"{processor.backend.name} on {processor.backend.device}, lookahead {args.lookahead}")
    summary = execute(source, processor, opts, stream_meta(args, source, processor), args.max_frames)
    for line in summary.lines():
        print(line)
    for what, path in opts.describe().items():
        if what != "maps_format":
            print(f"{what}: {path}")
    return 130 if summary.interrupted else 0
