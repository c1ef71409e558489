"""The streaming pipeline: source -> processor -> outputs, with a clean flush on every way out.

End of stream, a disconnect, ``--max-frames``, a quit key in the window and Ctrl-C all end the same
way: the source is stopped, ``processor.finish()`` flushes the frames still waiting for their
lookahead, and every output is finalised (video closed, report and plot written).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from esan.runtime.io.outputs import Outputs
from esan.runtime.io.report import LatencyLog, percentiles
from esan.runtime.io.sources import Frame, FrameSource


class Processor(Protocol):
    delay_frames: int

    def push(self, frame: Any, payload: Any = None) -> list[Any]: ...

    def finish(self) -> list[Any]: ...


@dataclass
class StreamSummary:
    frames: int = 0
    frames_pushed: int = 0
    dropped_frames: int = 0
    wall_s: float = 0.0
    fps: float = 0.0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    compute_ms: dict[str, float | None] = field(default_factory=dict)
    delay_frames: int | None = None
    delay_ms: float | None = None
    stop_reason: str = "end of stream"
    source_error: str | None = None
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self) -> list[str]:
        """A short human summary."""
        lat = self.latency_ms
        fmt = lambda v: "n/a" if v is None else f"{v:.1f}"  # noqa: E731
        out = [
            f"frames: {self.frames} processed, {self.dropped_frames} dropped ({self.stop_reason})",
            f"throughput: {self.fps:.1f} fps over {self.wall_s:.1f} s",
            f"latency (capture -> map): p50 {fmt(lat.get('p50'))} ms, p95 {fmt(lat.get('p95'))} ms, "
            f"p99 {fmt(lat.get('p99'))} ms",
        ]
        if self.compute_ms.get("p50") is not None:
            c = self.compute_ms
            out.append(f"compute per frame: p50 {fmt(c.get('p50'))} ms, p95 {fmt(c.get('p95'))} ms")
        if self.delay_frames is not None:
            ms = "" if self.delay_ms is None else f" = {self.delay_ms:.0f} ms at the source fps"
            out.append(f"algorithmic delay: {self.delay_frames} frames{ms}")
        if self.source_error:
            out.append(f"source ended early: {self.source_error}")
        return out + [f"note: {n}" for n in self.notes]


def run_stream(
    source: FrameSource,
    processor: Processor,
    outputs: Outputs,
    *,
    max_frames: int | None = None,
    log: LatencyLog | None = None,
) -> StreamSummary:
    """Pull frames, push them (payload = the captured :class:`Frame`), write results, always finalise.

    ``KeyboardInterrupt`` is caught: the stream is flushed and finalised and ``summary.interrupted``
    is set (callers exit with 130). Other exceptions propagate after the outputs are finalised.
    """
    log = log if log is not None else LatencyLog()
    summary = StreamSummary()
    t0 = time.perf_counter()
    keep_going = True

    def emit(results: list[Any]) -> None:
        nonlocal keep_going
        ready = time.perf_counter()
        for r in results:
            frame: Frame = r.payload
            log.add(r.index, frame.timestamp, ready, getattr(r, "timings_ms", None))
            summary.frames += 1
            t_write = time.perf_counter()
            ok = outputs.write(r, frame.image, log)
            log.stages_ms[-1]["output"] = (time.perf_counter() - t_write) * 1000.0
            if not ok and keep_going:
                keep_going = False
                summary.stop_reason = "quit by the user"

    try:
        try:
            for frame in source:
                emit(processor.push(frame.image, payload=frame))
                summary.frames_pushed += 1
                if not keep_going:
                    break
                if max_frames is not None and summary.frames_pushed >= max_frames:
                    summary.stop_reason = f"--max-frames {max_frames} reached"
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
            summary.stop_reason = "interrupted (Ctrl-C)"
        finally:
            source.stop()
        try:
            emit(processor.finish())
        except KeyboardInterrupt:
            summary.interrupted = True
            summary.stop_reason = "interrupted (Ctrl-C)"
    finally:
        _fill(summary, source, processor, log, t0)
        summary.notes.extend(outputs.close(log, summary.as_dict()))
    return summary


def _fill(summary: StreamSummary, source: FrameSource, processor: Processor, log: LatencyLog, t0: float) -> None:
    summary.wall_s = round(time.perf_counter() - t0, 3)
    summary.dropped_frames = source.dropped
    summary.source_error = source.error
    if source.error and summary.stop_reason == "end of stream":
        summary.stop_reason = "source disconnected"
    summary.fps = round(log.fps(), 3)
    summary.latency_ms = percentiles(log.e2e_ms)
    summary.compute_ms = log.stage_stats().get("total", {})
    delay = getattr(processor, "delay_frames", None)
    summary.delay_frames = delay
    if delay is not None and source.fps > 0:
        summary.delay_ms = round(delay * 1000.0 / source.fps, 3)
