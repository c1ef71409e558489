"""Latency bookkeeping and the ``--report`` JSON (written atomically).

Two latencies per map, and the report says which one is the headline (``latency_ms.basis``):

* **processing** (push -> map): from the push of the frame that completed the map's window (or the
  end of the stream, for the flushed last maps) to the map being ready. It excludes the algorithmic
  delay (``delay_frames``: the map of frame t needs frame t + delay) and the time frames wait in the
  capture queue. For a file read as fast as possible this is the only honest figure: its frames are
  captured long before they are pushed, so capture -> map would be mostly queueing.
* **end to end** (capture -> map): for live sources (camera, URL, ``--realtime`` file), what a viewer
  sees: algorithmic delay at the source's rate + queueing + processing.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from esan.runtime.core.fsutil import atomic_write_text
from esan.runtime.core.version import package_version, utc_now
from esan.runtime.io.latency_log import LatencyLog, percentiles

__all__ = ["LatencyLog", "aggregate_fps", "build_report", "percentiles", "write_report"]

RUN_KEYS = ("backend", "precision", "device", "backend_choice", "lookahead", "backward_chunk", "radius",
            "delay_frames", "max_batch_wait_ms", "threads")  # fmt: skip
STREAM_KEYS = ("source", "source_kind", "source_fps", "realtime")
BASIS = {
    "end_to_end": "capture -> map (live source: includes the algorithmic delay at the source's frame rate)",
    "processing": "push -> map (file read as fast as possible: the algorithmic delay is delay_frames, "
                  "add delay_frames / fps for a live source; capture -> map would be queueing time)",
}


def latency_basis(live: bool) -> str:
    return "end_to_end" if live else "processing"


def stream_section(log: LatencyLog, summary: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """One stream's facts (``summary``), settings (``meta``) and latency statistics."""
    fps = float(meta.get("source_fps") or 0.0)
    delay = meta.get("delay_frames")
    live = bool(summary.get("live", False))
    return {
        **{k: meta.get(k) for k in STREAM_KEYS},
        "live": live,
        "frames": len(log),
        "frames_pushed": summary.get("frames_pushed"),
        "dropped_frames": summary.get("dropped_frames", 0),
        "fps": round(log.fps(), 3),
        "wall_s": summary.get("wall_s"),
        "delay_frames": delay,
        "delay_ms": round(delay * 1000.0 / fps, 3) if delay is not None and fps > 0 else None,
        "latency_ms": {
            "basis": latency_basis(live),
            "basis_text": BASIS[latency_basis(live)],
            "processing": percentiles(log.processing_ms),
            "end_to_end": percentiles(log.e2e_ms) if live else None,
            "output": percentiles(log.output_ms),
            "stages": log.stage_stats(),
        },
        "memory": summary.get("memory", {}),
        "stop_reason": summary.get("stop_reason"),
        "source_error": summary.get("source_error"),
        "interrupted": bool(summary.get("interrupted", False)),
        "gaps": summary.get("gaps", []),
        "reconnects": summary.get("reconnects", 0),
        "outputs": meta.get("outputs", {}),
        "per_frame": {  # the last log.capacity maps
            "index": log.index.tolist(),
            "processing_ms": _rounded(log.processing_ms),
            "end_to_end_ms": _rounded(log.e2e_ms) if live else None,
            "output_ms": _rounded(log.stage("output")),
        },
    }


def _rounded(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else round(float(v), 3) for v in values]


def aggregate_fps(logs: list[LatencyLog]) -> float:
    """Maps of every stream per second, from the first capture of any stream to the last map of any."""
    starts = [lg.start_s for lg in logs if lg.start_s is not None]
    ends = [float(lg.ready_s[-1]) for lg in logs if len(lg)]
    span = max(ends) - min(starts) if starts and ends else 0.0
    return round(sum(len(lg) for lg in logs) / span, 3) if span > 0 else 0.0


def aggregate_section(logs: list[LatencyLog], sections: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the streams: maps, drops, aggregate throughput, latency percentiles over every map."""
    frames = sum(len(lg) for lg in logs)
    live = [lg for lg, s in zip(logs, sections, strict=True) if s["live"]]
    cat = lambda name, src: np.concatenate([getattr(lg, name) for lg in src])  # noqa: E731
    return {
        "streams": len(logs),
        "frames": frames,
        "frames_pushed": sum(int(s.get("frames_pushed") or 0) for s in sections),
        "dropped_frames": sum(int(s.get("dropped_frames") or 0) for s in sections),
        "fps": aggregate_fps(logs),
        "latency_ms": {
            "processing": percentiles(cat("processing_ms", logs)),
            "end_to_end": percentiles(cat("e2e_ms", live)) if live else None,
            "output": percentiles(cat("output_ms", logs)),
        },
        "memory_peak_bytes": sum(int(s["memory"].get("scheduler_peak_bytes", 0)) for s in sections),
        "interrupted": any(s["interrupted"] for s in sections),
    }


def build_report(streams: list[tuple[LatencyLog, dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """The report: one stream's section at the top level, or ``aggregate`` + ``streams`` for several.

    ``streams`` holds ``(log, summary, meta)`` per stream (stream ``i`` = the i-th source given).
    """
    head = {"format": "esan-rt-stream-report", "format_version": 2 if len(streams) > 1 else 1,
            "created_at": utc_now(), "package_version": package_version()}  # fmt: skip
    meta0 = streams[0][2] if streams else {}
    head.update({k: meta0.get(k) for k in RUN_KEYS})
    sections = [stream_section(*s) for s in streams]
    if len(sections) == 1:
        return {**head, **sections[0]}
    return {**head, "aggregate": aggregate_section([s[0] for s in streams], sections),
            "streams": [{"stream": i, **s} for i, s in enumerate(sections)]}


def write_report(path: str | os.PathLike, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON atomically (a reader never sees half a file)."""
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
