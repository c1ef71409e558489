"""Handler of ``esan-rt stream``: open the sources and backend, check outputs, run the pipeline.

``--source`` and ``--camera`` may be given several times (any mix): stream ``i`` is the i-th one given,
and every stream runs through one multi-stream scheduler (``esan.runtime.io.pipeline``).
Everything that can be refused is refused before the first frame is read: output paths (``{stream}``
in ``--save-video`` / ``--plot`` with several streams), the checkpoint or bundle (and its fit with
backend / lookahead / TensorRT), and every source.
Exit codes: 0 done (also when a live source disconnects: that stream is flushed as its end),
2 a user error (one line), 130 interrupted with Ctrl-C (outputs are still finalised).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from esan.runtime.core.errors import UserError
from esan.runtime.io.outputs import OutputOptions, Outputs, check_outputs, stream_options
from esan.runtime.io.pipeline import Pipeline
from esan.runtime.io.sources import FrameSource, open_source, redact_url
from esan.runtime.io.summary import RunSummary

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
            raise UserError(f"{path} is not a bundle (no manifest.json); export one with "
                            "`esan-rt export CKPT --out DIR`")
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


def _open_backend(backend: str, *, checkpoint: str | None, bundle: str | None, device: str, lookahead: int,
                  precision: str | None, threads: int | None = None) -> Any:  # fmt: skip
    """The backend, with every compatibility check done (one ``UserError`` line on failure)."""
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UserError(f"checkpoint {checkpoint} does not exist; check the path (train one with `esan-train fit`)")
    bundle_dir = resolve_bundle(backend, checkpoint=checkpoint, bundle=bundle, lookahead=lookahead,
                                precision=precision or "fp32")
    if bundle_dir is not None:
        bundle_dir = check_bundle(bundle_dir, backend, lookahead)
    from esan.runtime.backends import open_backend

    return open_backend(backend, bundle_dir=bundle_dir, checkpoint=None if bundle_dir else checkpoint,
                        device=device, lookahead=lookahead, precision=precision, threads=threads)


def open_scheduler(
    backend: str,
    *,
    checkpoint: str | None = None,
    bundle: str | None = None,
    device: str = "cpu",
    lookahead: int = 8,
    backward_chunk: int = 1,
    precision: str | None = None,
    threads: int | None = None,
    single: bool = False,
) -> Any:
    """A ready ``MultiStreamScheduler`` (any number of streams) for the given backend.

    ``single``: a ``StreamProcessor`` instead (one stream, ``push``/``finish``; the N = 1 case).
    """
    be = _open_backend(backend, checkpoint=checkpoint, bundle=bundle, device=device, lookahead=lookahead,
                       precision=precision, threads=threads)
    from esan.runtime.core.processor import StreamProcessor
    from esan.runtime.core.scheduler import MultiStreamScheduler

    try:
        return (StreamProcessor if single else MultiStreamScheduler)(be, lookahead, backward_chunk)
    except ValueError as exc:
        be.close()
        raise UserError(str(exc)) from exc


def open_processor(backend: str, **kwargs: Any) -> Any:
    """A ready single-stream ``StreamProcessor`` (the options of :func:`open_scheduler`)."""
    return open_scheduler(backend, single=True, **kwargs)


def stream_meta(args: argparse.Namespace, source: FrameSource, scheduler: Any, stream: int | None = None
                ) -> dict[str, Any]:  # fmt: skip
    """What the report says about one stream and the run."""
    be = scheduler.backend
    meta = {
        "source": source.name, "source_kind": source.kind, "source_fps": round(source.fps, 3),
        "realtime": bool(getattr(args, "realtime", False)), "live": source.live,
        "backend": getattr(be, "name", getattr(args, "backend", None)),
        "precision": getattr(be, "precision", getattr(args, "precision", None) or "fp32"),
        "device": str(getattr(be, "device", getattr(args, "device", "cpu"))), "lookahead": scheduler.lookahead,
        "backward_chunk": scheduler.backward_chunk, "radius": scheduler.radius,
        "delay_frames": scheduler.delay_frames, "max_batch_wait_ms": getattr(args, "max_batch_wait_ms", 0.0),
        "threads": getattr(args, "threads", None), "backend_choice": getattr(args, "backend_choice", None),
    }
    if stream is not None:
        meta["stream"] = stream
    return meta


def output_options(args: argparse.Namespace) -> OutputOptions:
    p = lambda v: Path(v) if v else None  # noqa: E731
    return OutputOptions(show=bool(args.show), video=p(args.save_video), maps=p(args.save_maps),
                         maps_format=args.maps_format, report=p(args.report), plot=p(args.plot),
                         view_port=args.view_port, view_address=args.view_address)


def validate(args: argparse.Namespace) -> None:
    for name, low in (("lookahead", 0), ("backward_chunk", 1), ("queue_size", 1), ("max_frames", 1),
                      ("max_batch_wait_ms", 0), ("threads", 1)):  # fmt: skip
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise UserError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if not getattr(args, "inputs", None):
        raise UserError("give a source: --camera N or --source PATH|URL|DIR (repeat them for several streams)")


def open_sources(inputs: list[tuple[str, Any]], *, queue_size: int, realtime: bool) -> list[FrameSource]:
    """Open every source (stream i = ``inputs[i]``); on a failure the ones already open are released."""
    sources: list[FrameSource] = []
    try:
        for kind, value in inputs:
            sources.append(open_source(camera=value, queue_size=queue_size) if kind == "camera" else
                           open_source(source=value, queue_size=queue_size, realtime=realtime))  # fmt: skip
    except BaseException:
        for src in sources:
            src.stop()
        raise
    return sources


def execute(
    sources: list[FrameSource],
    scheduler: Any,
    opts: OutputOptions,
    metas: list[dict[str, Any]],
    *,
    max_frames: int | None = None,
    max_batch_wait_ms: float = 0.0,
) -> RunSummary:
    """Run the streams with the given outputs (shared by ``stream`` and ``demo``); always releases everything."""
    try:
        from esan.runtime.io.viewers import open_viewers

        display, notes = open_viewers(opts.show, opts.view_port, opts.view_address,
                                      "esan-rt: " + ", ".join(redact_url(s.name) for s in sources))
        outputs = [Outputs(o, meta, fps=src.fps, title=f"esan-rt: {src.name}", stream_id=i, display=display)
                   for i, (o, meta, src) in enumerate(zip(stream_options(opts, len(sources)), metas, sources,
                                                          strict=True))]  # fmt: skip
        summary = Pipeline(scheduler, list(zip(sources, outputs, strict=True)), max_frames=max_frames,
                           max_batch_wait_ms=max_batch_wait_ms, report=opts.report, display=display).run()
        summary.notes.extend(notes)
        return summary
    finally:
        for src in sources:
            src.stop()
        close = getattr(scheduler.backend, "close", None)
        if close is not None:
            close()


def run(args: argparse.Namespace) -> int:
    """``esan-rt stream``."""
    validate(args)
    opts = output_options(args)
    check_outputs(opts, len(args.inputs))
    if getattr(args, "server", None):
        return run_remote(args, opts)
    if args.checkpoint is None and args.bundle is None:
        from esan.runtime.core.assets import DEMO_CHECKPOINT

        args.checkpoint = str(DEMO_CHECKPOINT)
        _log(f"no --checkpoint/--bundle given: using the bundled tiny demo model {DEMO_CHECKPOINT.name} "
             "(trained on synthetic data; pass your own checkpoint for real use)")
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise UserError(f"checkpoint {args.checkpoint} does not exist; check the path")
    from esan.runtime.backends.select import choose_backend

    choice = choose_backend(args.backend, args.device, bundle=args.bundle)  # resolves --backend/--device auto
    args.backend_choice = choice.record(args.backend, args.device)
    args.backend, args.device = choice.backend, choice.device
    from esan.runtime.core.assets import DEMO_BUNDLE, DEMO_CHECKPOINT

    if args.checkpoint == str(DEMO_CHECKPOINT) and args.backend == "ort" and args.precision in (None, "fp32"):
        args.checkpoint, args.bundle = None, str(DEMO_BUNDLE)  # its shipped ONNX bundle: no PyTorch needed
    sources = open_sources(args.inputs, queue_size=args.queue_size, realtime=args.realtime)
    try:
        scheduler = open_scheduler(args.backend, checkpoint=args.checkpoint, bundle=args.bundle,
                                   device=args.device, lookahead=args.lookahead,
                                   backward_chunk=args.backward_chunk, precision=args.precision,
                                   threads=args.threads)
    except BaseException:
        for src in sources:
            src.stop()
        raise
    _log(choice.line())  # once everything opened: a refusal stays one line
    return _stream_and_print(args, opts, sources, scheduler)


def _stream_and_print(args: argparse.Namespace, opts: OutputOptions, sources: list[FrameSource], scheduler: Any) -> int:
    """Run the opened sources through ``scheduler`` with the outputs; print the summary; the exit code."""
    be = scheduler.backend
    for i, src in enumerate(sources):
        tag = f"stream {i}: " if len(sources) > 1 else ""
        where = f" ({scheduler.server_of(i)})" if hasattr(scheduler, "server_of") else ""
        _log(f"{tag}streaming {redact_url(src.name)} ({src.kind}, {src.fps:.1f} fps) with {be.name} on "
             f"{be.device}{where}, lookahead {scheduler.lookahead}")
    many = len(sources) > 1
    metas = [stream_meta(args, src, scheduler, i if many else None) for i, src in enumerate(sources)]
    summary = execute(sources, scheduler, opts, metas, max_frames=args.max_frames,
                      max_batch_wait_ms=args.max_batch_wait_ms)
    for line in summary.lines():
        print(line)
    for what, path in opts.describe().items():
        if what != "maps_format":
            print(f"{what}: {path}")
    return 130 if summary.interrupted else 0


def run_remote(args: argparse.Namespace, opts: OutputOptions) -> int:
    """``esan-rt stream --server HOST:PORT``: the same streams with the compute on Triton servers.

    Stream ``i`` is pinned to ``--server`` number ``i mod (servers)``; the pipeline, outputs and reports are
    the local ones.
    """
    from esan.runtime.serving.remote_scheduler import RemoteScheduler

    if args.checkpoint or args.bundle:
        _log("note: --checkpoint/--bundle are ignored with --server: the server's model computes")
    scheduler = RemoteScheduler(args.server)
    try:
        sources = open_sources(args.inputs, queue_size=args.queue_size, realtime=args.realtime)
        return _stream_and_print(args, opts, sources, scheduler)
    finally:
        scheduler.shutdown()
