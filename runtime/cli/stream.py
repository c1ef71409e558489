"""Handler of ``esan-rt stream``: open the sources and backend, check outputs, run the pipeline.

``--source`` and ``--camera`` may be given several times (any mix): stream ``i`` is the i-th one given,
and every stream runs through one multi-stream scheduler (``esan.runtime.io.pipeline``).
Everything that can be refused is refused before the first frame is read: output paths (``{stream}``
in ``--save-video`` / ``--plot`` with several streams), the model options (``esan.runtime.session.prepare``),
every source, then the checkpoint's export or the bundle's fit with the backend (``Session.scheduler``).
Exit codes: 0 done (every source ended, ``q``) or stopped with SIGTERM, 1 a source failed for good (a
live source that did not come back: ``--reconnect off`` or its attempts used up; ``esan.runtime.io.reconnect``),
2 a user error (one line), 130 interrupted with Ctrl-C. SIGINT and SIGTERM are handled
explicitly (``esan.runtime.io.signals``): outputs are always finalised; a second signal skips the flush.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from esan.runtime.core.errors import UserError
from esan.runtime.core.scheduler_api import Scheduler
from esan.runtime.io.outputs import OutputOptions, Outputs, check_outputs, stream_options
from esan.runtime.io.pipeline import Pipeline
from esan.runtime.io.sources import FrameSource, open_source, redact_url
from esan.runtime.io.summary import RunSummary


def _log(msg: str) -> None:
    print(f"esan-rt: {msg}", file=sys.stderr)


def stream_meta(args: argparse.Namespace, source: FrameSource, scheduler: Scheduler, stream: int | None = None
                ) -> dict[str, Any]:  # fmt: skip
    """What the report says about one stream and the run."""
    engine = scheduler.engine
    meta = {
        "source": source.name, "source_kind": source.kind, "source_fps": round(source.fps, 3),
        "realtime": bool(getattr(args, "realtime", False)), "live": source.live,
        "backend": engine.name, "precision": engine.precision, "device": engine.device,
        "lookahead": scheduler.lookahead,
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
                         view_port=args.view_port, view_address=args.view_address,
                         view_allow_hosts=tuple(args.view_allow_host or ()),
                         segment_seconds=getattr(args, "segment_seconds", None), keep=getattr(args, "keep", None))


def validate(args: argparse.Namespace) -> None:
    """The options only this command has (the model's are checked by ``esan.runtime.session``)."""
    for name, low in (("queue_size", 1), ("max_frames", 1), ("max_batch_wait_ms", 0)):
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise UserError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if not getattr(args, "inputs", None):
        raise UserError("give a source: --camera N or --source PATH|URL|DIR (repeat them for several streams)")


def open_sources(inputs: list[tuple[str, Any]], *, queue_size: int, realtime: bool,
                 reconnect: Any = None) -> list[FrameSource]:  # fmt: skip
    """Open every source (stream i = ``inputs[i]``); on a failure the ones already open are released.

    ``reconnect`` (an ``esan.runtime.io.reconnect.ReconnectPolicy``): cameras and URLs come back after outages.
    """
    from esan.runtime.io.reconnect import open_live
    from esan.runtime.io.sources import is_url

    sources: list[FrameSource] = []
    try:
        for i, (kind, value) in enumerate(inputs):
            if reconnect is not None and (kind == "camera" or is_url(str(value))):
                sources.append(open_live(kind, value, policy=reconnect, queue_size=queue_size,
                                         log=lambda m, i=i: _log(f"stream {i}: {m}" if len(inputs) > 1 else m)))
                continue
            sources.append(open_source(camera=value, queue_size=queue_size) if kind == "camera" else
                           open_source(source=value, queue_size=queue_size, realtime=realtime))  # fmt: skip
    except BaseException:
        for src in sources:
            src.stop()
        raise
    return sources


def execute(
    sources: list[FrameSource],
    scheduler: Scheduler,
    opts: OutputOptions,
    metas: list[dict[str, Any]],
    *,
    max_frames: int | None = None,
    max_batch_wait_ms: float = 0.0,
    metrics: Any = None,
    per_stream: list[OutputOptions] | None = None,
    on_start: Any = None,
) -> RunSummary:
    """Run the streams with the given outputs (shared by ``stream`` and ``demo``); always releases everything."""
    try:
        from esan.runtime.io.viewers import open_viewers

        display, notes = open_viewers(opts.show, opts.view_port, opts.view_address,
                                      "esan-rt: " + ", ".join(redact_url(s.name) for s in sources),
                                      allowed_hosts=opts.view_allow_hosts)
        outputs = [Outputs(o, meta, fps=src.fps, title=f"esan-rt: {src.name}", stream_id=i, display=display)
                   for i, (o, meta, src) in enumerate(zip(per_stream or stream_options(opts, len(sources)), metas,
                                                          sources, strict=True))]  # fmt: skip
        pipeline = Pipeline(scheduler, list(zip(sources, outputs, strict=True)), max_frames=max_frames,
                            max_batch_wait_ms=max_batch_wait_ms, report=opts.report, display=display,
                            metrics=metrics)
        if on_start is not None:  # --config: the SIGHUP reloader adds and ends streams of the running pipeline
            on_start(pipeline)
        summary = pipeline.run()
        summary.notes.extend(notes)
        return summary
    finally:
        for src in sources:
            src.stop()
        scheduler.shutdown()


def run(args: argparse.Namespace) -> int:
    """``esan-rt stream``."""
    if getattr(args, "config", None) and getattr(args, "cameras", None) is None:
        from esan.runtime.cli.config import run_config

        return run_config(args, run)  # fills args from the file, then comes back here
    validate(args)
    opts = output_options(args)
    check_outputs(opts, len(args.inputs))
    if getattr(args, "server", None):
        return run_remote(args, opts)
    from esan.runtime import session as rt
    from esan.runtime.core.assets import DEMO_CHECKPOINT

    if args.checkpoint is None and args.bundle is None:
        args.checkpoint = str(DEMO_CHECKPOINT)
        _log(f"no --checkpoint/--bundle given: using the bundled tiny demo model {DEMO_CHECKPOINT.name} "
             "(trained on synthetic data; pass your own checkpoint for real use)")
    plan = rt.prepare(args.checkpoint, bundle=args.bundle, backend=args.backend, device=args.device,
                      lookahead=args.lookahead, backward_chunk=args.backward_chunk, precision=args.precision,
                      threads=args.threads, log=_log)  # fmt: skip
    args.backend_choice = plan.choice.record(args.backend, args.device)
    sources = (args.open_cameras() if getattr(args, "cameras", None) is not None else
               open_sources(args.inputs, queue_size=args.queue_size, realtime=args.realtime,
                            reconnect=reconnect_policy(args)))  # fmt: skip
    try:
        scheduler = plan.scheduler()  # exports a checkpoint on first use, opens the backend
    except BaseException:
        for src in sources:
            src.stop()
        raise
    _log(plan.choice.line())  # once everything opened: a refusal stays one line
    return _stream_and_print(args, opts, sources, scheduler)


def _stream_and_print(args: argparse.Namespace, opts: OutputOptions, sources: list[FrameSource],
                      scheduler: Scheduler) -> int:  # fmt: skip
    """Run the opened sources through ``scheduler`` with the outputs; print the summary; the exit code."""
    engine = scheduler.engine
    for i, src in enumerate(sources):
        tag = f"stream {i}: " if len(sources) > 1 else ""
        location = scheduler.location(i)
        where = f" ({location})" if location else ""
        _log(f"{tag}streaming {redact_url(src.name)} ({src.kind}, {src.fps:.1f} fps) with {engine.name} on "
             f"{engine.device}{where}, lookahead {scheduler.lookahead}")
    many = len(sources) > 1
    metas = [stream_meta(args, src, scheduler, i if many else None) for i, src in enumerate(sources)]
    reloader = getattr(args, "reloader", None)
    try:
        metrics = start_metrics(args)
    except BaseException:
        for src in sources:
            src.stop()
        raise
    try:
        summary = execute(sources, scheduler, opts, metas, max_frames=args.max_frames,
                          max_batch_wait_ms=args.max_batch_wait_ms, metrics=metrics,
                          per_stream=getattr(args, "per_stream", None),
                          on_start=None if reloader is None else reloader.attach(scheduler, metas))
    finally:
        if metrics is not None:
            metrics.close()
    for line in summary.lines():
        print(line)
    for what, path in opts.describe().items():
        if what != "maps_format":
            print(f"{what}: {path}")
    if summary.interrupted:
        return 130
    return 1 if any(s.source_error for s in summary.streams) else 0


def start_metrics(args: argparse.Namespace) -> Any:
    """``--metrics-port``: the Prometheus endpoint (``esan.runtime.io.metrics``), serving; None without it."""
    if getattr(args, "metrics_port", None) is None:
        return None
    from esan.runtime.io.metrics import RuntimeMetrics

    metrics = RuntimeMetrics()
    url = metrics.serve(args.metrics_port, args.metrics_address)
    _log(f"metrics on {url}/metrics (health: {url}/healthz, {url}/readyz)")
    return metrics


def reconnect_policy(args: argparse.Namespace) -> Any:
    """``--reconnect`` / ``--stall-timeout`` as a policy (None when these options are absent: the library's default)."""
    if getattr(args, "reconnect", None) is None:
        return None
    from esan.runtime.io.reconnect import parse_policy

    return parse_policy(args.reconnect, args.stall_timeout, args.reconnect_max_delay)


def run_remote(args: argparse.Namespace, opts: OutputOptions) -> int:
    """``esan-rt stream --server HOST:PORT``: the same streams with the compute on Triton servers.

    Stream ``i`` is pinned to ``--server`` number ``i mod (servers)``; the pipeline, outputs and reports are
    the local ones.
    """
    from esan.runtime.serving.remote_scheduler import RemoteScheduler

    if args.checkpoint or args.bundle:
        _log("note: --checkpoint/--bundle are ignored with --server: the server's model computes")
    from esan.runtime.serving.client import configure_client_tls
    from esan.runtime.serving.security import ClientTLS

    configure_client_tls(ClientTLS.from_args(args.tls_ca, args.tls_cert, args.tls_key))
    scheduler = RemoteScheduler(args.server)
    try:
        sources = open_sources(args.inputs, queue_size=args.queue_size, realtime=args.realtime,
                               reconnect=reconnect_policy(args))
    except BaseException:
        scheduler.shutdown()
        raise
    return _stream_and_print(args, opts, sources, scheduler)  # shuts the scheduler down
