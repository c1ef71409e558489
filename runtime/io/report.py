"""Latency bookkeeping and the ``--report`` JSON (written atomically)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esan.runtime.core.fsutil import atomic_write_text
from esan.runtime.core.version import package_version, utc_now

PERCENTILES = (50, 95, 99)


def percentiles(values: list[float] | np.ndarray) -> dict[str, float | None]:
    """``{"p50", "p95", "p99", "mean", "max"}`` in the values' unit (``None`` when empty)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {**{f"p{p}": None for p in PERCENTILES}, "mean": None, "max": None}
    out: dict[str, float | None] = {f"p{p}": round(float(np.percentile(v, p)), 3) for p in PERCENTILES}
    out["mean"] = round(float(v.mean()), 3)
    out["max"] = round(float(v.max()), 3)
    return out


@dataclass
class LatencyLog:
    """Per-result timings: end-to-end (capture -> map ready) and the processor's per-stage times."""

    index: list[int] = field(default_factory=list)
    ready_s: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    stages_ms: list[dict[str, float]] = field(default_factory=list)
    start_s: float | None = None

    def add(self, index: int, captured_s: float, ready_s: float, timings_ms: dict[str, float] | None) -> float:
        if self.start_s is None:
            self.start_s = captured_s
        e2e = (ready_s - captured_s) * 1000.0
        self.index.append(int(index))
        self.ready_s.append(ready_s)
        self.e2e_ms.append(e2e)
        self.stages_ms.append({k: float(v) for k, v in (timings_ms or {}).items()})
        return e2e

    def __len__(self) -> int:
        return len(self.e2e_ms)

    def stage_names(self) -> list[str]:
        names: dict[str, None] = {}
        for d in self.stages_ms:
            names.update(dict.fromkeys(d))
        return list(names)

    def stage_stats(self) -> dict[str, dict[str, float | None]]:
        return {s: percentiles([d[s] for d in self.stages_ms if s in d]) for s in self.stage_names()}

    def fps(self) -> float:
        """Throughput: results per second from the first capture to the last map."""
        if len(self) == 0 or self.start_s is None:
            return 0.0
        span = self.ready_s[-1] - self.start_s
        return len(self) / span if span > 0 else 0.0

    def recent_fps(self, window: int = 30) -> float:
        r = self.ready_s[-window:]
        return (len(r) - 1) / (r[-1] - r[0]) if len(r) > 1 and r[-1] > r[0] else 0.0


def build_report(log: LatencyLog, summary: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The report dict: stream facts (``summary``), run settings (``meta``) and latency statistics."""
    fps = float(meta.get("source_fps") or 0.0)
    delay = meta.get("delay_frames")
    return {
        "format": "esan-rt-stream-report",
        "format_version": 1,
        "created_at": utc_now(),
        "package_version": package_version(),
        **{k: meta.get(k) for k in ("source", "source_kind", "backend", "precision", "device")},
        "backend_choice": meta.get("backend_choice"),  # requested backend/device, the choice and why
        **{k: meta.get(k) for k in ("lookahead", "backward_chunk", "radius", "source_fps", "realtime")},
        "frames": len(log),
        "frames_pushed": summary.get("frames_pushed"),
        "dropped_frames": summary.get("dropped_frames", 0),
        "fps": round(log.fps(), 3),
        "wall_s": summary.get("wall_s"),
        "delay_frames": delay,
        "delay_ms": round(delay * 1000.0 / fps, 3) if delay is not None and fps > 0 else None,
        "latency_ms": {"end_to_end": percentiles(log.e2e_ms), "stages": log.stage_stats()},
        "stop_reason": summary.get("stop_reason"),
        "source_error": summary.get("source_error"),
        "interrupted": bool(summary.get("interrupted", False)),
        "outputs": meta.get("outputs", {}),
        "per_frame": {
            "index": log.index,
            "end_to_end_ms": [round(v, 3) for v in log.e2e_ms],
        },
    }


def write_report(path: str | os.PathLike, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON atomically (a reader never sees half a file)."""
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
