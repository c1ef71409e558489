"""What a stream run prints: one :class:`StreamSummary` per stream, and aggregate lines for several."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from esan.runtime.io.report import LatencyLog, percentiles

END_OF_STREAM = "end of stream"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def _pct(d: dict[str, float | None], keys: tuple[str, ...] = ("p50", "p95", "p99")) -> str:
    return ", ".join(f"{k} {_fmt(d.get(k))} ms" for k in keys)


@dataclass
class StreamSummary:
    stream: int = 0
    source: str = ""
    live: bool = False
    frames: int = 0
    frames_pushed: int = 0
    dropped_frames: int = 0
    wall_s: float = 0.0
    fps: float = 0.0
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    """capture -> map (live sources); empty for a file read as fast as possible (it would be queueing)."""
    processing_ms: dict[str, float | None] = field(default_factory=dict)
    compute_ms: dict[str, float | None] = field(default_factory=dict)
    output_ms: dict[str, float | None] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)
    delay_frames: int | None = None
    delay_ms: float | None = None
    stop_reason: str = END_OF_STREAM
    source_error: str | None = None
    interrupted: bool = False
    gaps: list[dict[str, Any]] = field(default_factory=list)
    """A live source's outages: ``start``/``end`` (wall clock), ``seconds``, ``frames_lost``, ``resumed_at_frame``."""
    reconnects: int = 0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def fill(self, log: LatencyLog, *, delay: int | None, source_fps: float) -> None:
        """Statistics from the stream's latency log."""
        self.fps = round(log.fps(), 3)
        self.processing_ms = percentiles(log.processing_ms)
        self.latency_ms = percentiles(log.e2e_ms) if self.live else {}
        self.compute_ms = log.stage_stats().get("total", {})
        self.output_ms = percentiles(log.output_ms)
        self.delay_frames = delay
        if delay is not None and source_fps > 0:
            self.delay_ms = round(delay * 1000.0 / source_fps, 3)

    def lines(self) -> list[str]:
        """A short human summary."""
        out = [
            f"frames: {self.frames} processed, {self.dropped_frames} dropped ({self.stop_reason})",
            f"throughput: {self.fps:.1f} fps over {self.wall_s:.1f} s",
        ]
        if self.live:
            out.append(f"latency (capture -> map): {_pct(self.latency_ms)}")
        else:
            out.append(f"processing latency (push -> map): {_pct(self.processing_ms)} "
                       "(file read as fast as possible; --realtime measures capture -> map)")
        if self.compute_ms.get("p50") is not None:
            out.append(f"compute per round: {_pct(self.compute_ms, ('p50', 'p95'))}")
        if self.output_ms.get("p50") is not None:
            out.append(f"output stage (off the compute thread): {_pct(self.output_ms, ('p50', 'p95'))}")
        if self.delay_frames is not None:
            ms = "" if self.delay_ms is None else f" = {self.delay_ms:.0f} ms at the source fps"
            out.append(f"algorithmic delay: {self.delay_frames} frames{ms}")
        if self.gaps:
            out.append(f"outages: {len(self.gaps)} ({sum(g['seconds'] for g in self.gaps):.1f} s, "
                       f"{sum(g['frames_lost'] for g in self.gaps)} frames lost), {self.reconnects} reconnects")
        if self.source_error:
            out.append(f"source ended early: {self.source_error}")
        return out + [f"note: {n}" for n in self.notes]

    def short_line(self) -> str:
        """One line per stream in a multi-stream summary."""
        lat = (f"capture -> map p50 {_fmt(self.latency_ms.get('p50'))} ms" if self.live
               else f"push -> map p50 {_fmt(self.processing_ms.get('p50'))} ms")  # fmt: skip
        err = f"; {self.source_error}" if self.source_error else ""
        return (f"stream {self.stream} ({self.source}): {self.frames} maps, {self.dropped_frames} dropped, "
                f"{self.fps:.1f} fps, {lat} ({self.stop_reason}{err})")


@dataclass
class RunSummary:
    """Every stream's summary plus totals; ``interrupted`` when Ctrl-C ended the run."""

    streams: list[StreamSummary]
    wall_s: float = 0.0
    fps: float = 0.0
    """Maps of every stream per second, first capture to last map (as in the report's aggregate)."""
    notes: list[str] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return any(s.interrupted for s in self.streams)

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.streams)

    def lines(self) -> list[str]:
        if len(self.streams) == 1:
            return self.streams[0].lines() + [f"note: {n}" for n in self.notes]
        s0 = self.streams[0]
        dropped = sum(s.dropped_frames for s in self.streams)
        out = [f"{len(self.streams)} streams: {self.frames} maps, {dropped} dropped, "
               f"{self.fps:.1f} fps aggregate, {self.wall_s:.1f} s in all"]  # fmt: skip
        out += [f"  {s.short_line()}" for s in self.streams]
        if s0.delay_frames is not None:
            out.append(f"algorithmic delay: {s0.delay_frames} frames per stream")
        notes = [n for s in self.streams for n in s.notes] + self.notes
        return out + [f"note: {n}" for n in dict.fromkeys(notes)]
