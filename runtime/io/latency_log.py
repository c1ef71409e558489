"""Per-map timings of one stream, in compact arrays with a bounded length (flat memory on 24/7 streams).

Each map is one record: source frame index, time it was ready, capture -> map and push -> map latency,
and the milliseconds of every stage of the round that produced it, plus ``output`` (set later by the
stream's writer thread). About 60 bytes per map; once ``capacity`` maps are held the oldest are
overwritten, so statistics then cover the last ``capacity`` maps (``retained``) while ``len()``
still counts them all.
"""

from __future__ import annotations

import threading

import numpy as np

DEFAULT_CAPACITY = 100_000  # maps per stream: ~6 MB, about 67 minutes at 25 fps
OUTPUT = "output"
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


class LatencyLog:
    """Timings of one stream's maps (module docstring); ``add`` from the compute thread, ``set_output`` from
    the writer thread."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.count = 0
        self.start_s: float | None = None
        self._lock = threading.Lock()
        self._cols: dict[str, int] = {OUTPUT: 0}
        self._alloc(min(capacity, 256))

    def _alloc(self, rows: int) -> None:
        old = getattr(self, "_index", None)
        n = 0 if old is None else len(old)
        index, ready = np.zeros(rows, np.int64), np.zeros(rows, np.float64)
        e2e, proc = np.zeros(rows, np.float32), np.zeros(rows, np.float32)
        stages = np.full((rows, len(self._cols)), np.nan, np.float32)
        if old is not None:
            index[:n], ready[:n], e2e[:n], proc[:n] = self._index, self._ready, self._e2e, self._proc
            stages[:n, : self._stages.shape[1]] = self._stages
        self._index, self._ready, self._e2e, self._proc, self._stages = index, ready, e2e, proc, stages

    def _column(self, name: str) -> int:
        if name not in self._cols:
            self._cols[name] = len(self._cols)
            extra = np.full((len(self._stages), 1), np.nan, np.float32)
            self._stages = np.hstack([self._stages, extra])
        return self._cols[name]

    # -- recording -------------------------------------------------------------------------------
    def add(self, index: int, captured_s: float, ready_s: float, timings_ms: dict[str, float] | None,
            pushed_s: float | None = None) -> int:  # fmt: skip
        """Record one map; returns its record number (for ``set_output``)."""
        with self._lock:
            if self.start_s is None:
                self.start_s = captured_s
            if self.count >= len(self._index) and len(self._index) < self.capacity:
                self._alloc(min(self.capacity, 2 * len(self._index)))
            row = self.count % self.capacity
            self._index[row], self._ready[row] = index, ready_s
            self._e2e[row] = (ready_s - captured_s) * 1000.0
            self._proc[row] = (ready_s - (captured_s if pushed_s is None else pushed_s)) * 1000.0
            self._stages[row] = np.nan
            for name, ms in (timings_ms or {}).items():
                col = self._column(name)  # may widen self._stages: look it up afterwards
                self._stages[row, col] = ms
            self.count += 1
            return self.count - 1

    def set_output(self, record: int, ms: float) -> None:
        """The output stage's time of map ``record`` (ignored once that record was overwritten)."""
        with self._lock:
            if record >= self.count - self.capacity:
                self._stages[record % self.capacity, self._cols[OUTPUT]] = ms

    # -- reading (arrays over the retained maps, oldest first) -----------------------------------
    def __len__(self) -> int:
        return self.count

    @property
    def retained(self) -> int:
        return min(self.count, self.capacity)

    def _ordered(self, arr: np.ndarray) -> np.ndarray:
        n = self.retained
        if self.count <= self.capacity:
            return arr[:n].copy()
        row = self.count % self.capacity
        return np.concatenate([arr[row:], arr[:row]])

    @property
    def index(self) -> np.ndarray:
        with self._lock:
            return self._ordered(self._index)

    @property
    def ready_s(self) -> np.ndarray:
        with self._lock:
            return self._ordered(self._ready)

    @property
    def e2e_ms(self) -> np.ndarray:
        with self._lock:
            return self._ordered(self._e2e)

    @property
    def processing_ms(self) -> np.ndarray:
        with self._lock:
            return self._ordered(self._proc)

    def stage(self, name: str) -> np.ndarray:
        """Per-map milliseconds of stage ``name`` (NaN where the map's round had no such stage)."""
        with self._lock:
            if name not in self._cols:
                return np.full(self.retained, np.nan, np.float32)
            return self._ordered(self._stages[:, self._cols[name]])

    @property
    def output_ms(self) -> np.ndarray:
        """The output stage's milliseconds of the maps written so far."""
        out = self.stage(OUTPUT)
        return out[~np.isnan(out)]

    def stage_names(self) -> list[str]:
        return [n for n in self._cols if not np.all(np.isnan(self.stage(n)))]

    def stage_stats(self) -> dict[str, dict[str, float | None]]:
        out = {}
        for name in self.stage_names():
            v = self.stage(name)
            out[name] = percentiles(v[~np.isnan(v)])
        return out

    def latest(self, end_to_end: bool) -> float:
        """The newest map's capture -> map (``end_to_end``) or push -> map latency in ms (0 before any map)."""
        with self._lock:
            if self.count == 0:
                return 0.0
            row = (self.count - 1) % self.capacity
            return float((self._e2e if end_to_end else self._proc)[row])

    def fps(self) -> float:
        """Throughput: maps per second from the first capture to the last map."""
        if self.count == 0 or self.start_s is None:
            return 0.0
        with self._lock:
            last = float(self._ready[(self.count - 1) % self.capacity])
        span = last - self.start_s
        return self.count / span if span > 0 else 0.0

    def recent_fps(self, window: int = 30) -> float:
        with self._lock:
            n = min(window, self.retained)
            rows = [(self.count - 1 - k) % self.capacity for k in range(n)]
            r = self._ready[rows[::-1]] if rows else np.zeros(0)
        return (len(r) - 1) / (r[-1] - r[0]) if len(r) > 1 and r[-1] > r[0] else 0.0
