"""Requests of many sequences -> one scheduler, one round per batch (the logic of the Triton model, Triton-free).

Each Triton request carries one frame of one sequence (CORRID) with START / END flags. ``StreamRouter``
opens a stream on START (refusing one past ``max_streams``, and a START on an id already open: no client
joins, reads or resets another's stream), refuses frames of an id without START, queues the frame, marks
END, runs the scheduler's rounds and hands every request the maps its stream produced. A bad frame, an
unknown stream or a refusal is an error for that request only. Streams that send nothing for
``idle_timeout_s`` are dropped (Triton frees the sequence slot at the same timeout but does not tell the model).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esan.runtime.core.errors import UserError
from esan.runtime.serving import protocol as P

STAGE_KEYS = P.STAGES[:-1]


@dataclass
class Request:
    corrid: int
    start: bool
    end: bool
    frame: np.ndarray | None  # RGB uint8 [h, w, 3]; size 0 = no frame (END only)


@dataclass
class Outcome:
    results: list[Any] = field(default_factory=list)
    error: str | None = None
    stage_ms: tuple[float, ...] = (0.0,) * len(P.STAGES)


@dataclass
class RouterStats:
    """Cumulative counters (the Triton model turns them into metrics)."""

    frames: int = 0
    maps: int = 0
    rounds: int = 0
    requests: int = 0
    refused: int = 0
    rejected: int = 0
    idle_freed: int = 0
    stage_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(P.STAGES, 0.0))


class StreamRouter:
    """Routes sequence requests into ``scheduler`` (``esan.runtime.core.scheduler`` API); thread-safe."""

    def __init__(self, scheduler: Any, *, max_frame_pixels: int, idle_timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.scheduler = scheduler
        self.max_frame_pixels = max_frame_pixels
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self.stats = RouterStats()
        self._last_seen: dict[int, float] = {}
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return len(self._last_seen)

    def frame_error(self, frame: np.ndarray | None, end: bool) -> str | None:
        """This server's own rules: an empty frame only with END, at most ``max_frame_pixels``. The frame's
        type and shape are checked once, by the scheduler's ``push``."""
        if frame is None or frame.size == 0:
            return None if end else f"{P.BAD_FRAME} empty frame (an empty frame is only valid with END)"
        h, w = (frame.shape[:2] if frame.ndim >= 2 else (frame.size, 1))
        if h * w > self.max_frame_pixels:
            return (f"{P.BAD_FRAME} {w}x{h} is {h * w} pixels, over this server's limit of {self.max_frame_pixels} "
                    "(esan-rt serve --max-frame-pixels); send smaller frames")
        return None

    def handle(self, requests: list[Request]) -> list[Outcome]:
        """Serve one batch of requests (at most one per sequence per round; more are served in order)."""
        with self._lock:
            self._reap_locked()
            outcomes = [Outcome() for _ in requests]
            pending: dict[int, int] = {}
            for i, req in enumerate(requests):
                if req.corrid in pending:  # a second request of the same sequence: finish this round first
                    self._round(pending, outcomes)
                self._admit(i, req, outcomes[i], pending)
            self._round(pending, outcomes)
            self.stats.requests += len(requests)
            return outcomes

    def _admit(self, i: int, req: Request, out: Outcome, pending: dict[int, int]) -> None:
        sched, sid = self.scheduler, req.corrid
        error = self.frame_error(req.frame, req.end)
        if error:
            self.stats.rejected += 1
            out.error = error
            return
        if req.start:
            if sid in self._last_seen:  # another client's open stream: never join, read or reset it
                self.stats.refused += 1
                out.error = (f"{P.REFUSED} sequence {sid} is already open here; a new stream needs its own "
                             "CORRID (END the old one first, or wait until it idles out)")
                return
            try:
                sched.open_stream(sid)
            except UserError as exc:
                self.stats.refused += 1
                out.error = f"{P.REFUSED} this server is at its limit of streams ({exc}); use another server or wait"
                return
        elif sid not in self._last_seen:
            out.error = (f"{P.UNKNOWN_STREAM} sequence {sid} is not open here (it ended, was refused, or was idle "
                         f"for more than {self.idle_timeout_s:g} s); start a new sequence")
            return
        if req.frame is not None and req.frame.size:
            try:
                sched.push(sid, np.ascontiguousarray(req.frame))
            except ValueError as exc:  # not an RGB uint8 frame: this request fails, the stream goes on
                self.stats.rejected += 1
                out.error = f"{P.BAD_FRAME} {exc}"
                if req.start:  # a stream that never got a frame is not kept
                    self._drop(sid)
                return
            self.stats.frames += 1
        self._last_seen[sid] = self.clock()
        if req.end:
            sched.finish(sid)
        pending[sid] = i

    def _round(self, pending: dict[int, int], outcomes: list[Outcome]) -> None:
        if not pending:
            return
        sched = self.scheduler
        t0 = time.perf_counter()
        results: list[Any] = []
        try:
            while sched.has_work():
                results += sched.run()
        except Exception as exc:  # a failing engine: these streams are in an unknown state, drop them
            for sid, i in pending.items():
                self._drop(sid)
                outcomes[i].error = f"server error while computing: {type(exc).__name__}: {exc}"
            pending.clear()
            return
        total_ms = (time.perf_counter() - t0) * 1e3
        stages = dict.fromkeys(STAGE_KEYS, 0.0)
        if results:
            stages.update({k: float(v) for k, v in results[0].timings_ms.items() if k in stages})
        stage_ms = (*(stages[k] for k in STAGE_KEYS), total_ms)
        for r in results:
            outcomes[pending[r.stream_id]].results.append(r)
        for sid, i in pending.items():
            outcomes[i].stage_ms = stage_ms
            if sid not in sched.streams:  # ended and flushed
                self._last_seen.pop(sid, None)
        self.stats.rounds += 1
        self.stats.maps += len(results)
        for k, v in zip(P.STAGES, stage_ms, strict=True):
            self.stats.stage_ms[k] += v
        pending.clear()

    def _drop(self, sid: int) -> None:
        self.scheduler.close(sid)
        self._last_seen.pop(sid, None)

    def _reap_locked(self) -> list[int]:
        now = self.clock()
        idle = [sid for sid, seen in self._last_seen.items() if now - seen > self.idle_timeout_s]
        for sid in idle:
            self._drop(sid)
        self.stats.idle_freed += len(idle)
        return idle

    def reap(self) -> list[int]:
        """Drop the streams idle for longer than the timeout; returns their ids."""
        with self._lock:
            return self._reap_locked()
