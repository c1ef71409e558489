"""Per-stream pieces of the streaming schedule: results, per-frame metadata, stage timer, stream state.

Shared by ``esan.runtime.core.scheduler`` (N streams) and ``esan.runtime.core.processor`` (one stream).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esan.runtime.core.backend_api import Array, Entry, State
from esan.runtime.core.letterbox import Box, unletterbox

STAGES = ("preprocess", "encode", "align", "forward", "backward", "decode")


@dataclass
class StreamResult:
    """One output map. ``box`` locates the picture on the *output* canvas (``saliency``'s size)."""

    index: int
    saliency: np.ndarray  # float32 [H/2, W/2], values in (0, 1)
    box: Box
    timings_ms: dict[str, float]
    payload: Any = None
    source_hw: tuple[int, int] = (0, 0)  # size of the frame as pushed
    stream_id: Hashable = 0

    def to_source(self) -> np.ndarray:
        """The map cropped to the picture and resized onto the original frame (``float32 [h, w]``)."""
        return unletterbox(self.saliency, self.box, self.source_hw)


@dataclass
class FrameMeta:
    """What a result needs of its frame: output-canvas box, original size, the caller's payload."""

    box: Box
    source_hw: tuple[int, int]
    payload: Any


@dataclass
class StageTimer:
    """Seconds spent per stage during one scheduling round (``time.perf_counter``: the only clock read)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    start: float = field(default_factory=time.perf_counter)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    def as_ms(self) -> dict[str, float]:
        out = {k: v * 1e3 for k, v in self.seconds.items()}
        out["total"] = (time.perf_counter() - self.start) * 1e3
        return out


@dataclass
class EmitTask:
    """One backward run from ``start`` down to ``u0`` whose outputs ``u0 .. chunk_end`` are decoded."""

    u0: int
    chunk_end: int
    start: int


class StreamState:
    """Everything one stream carries between frames (docs/design.md section 6): nothing is shared across streams.

    ``entries`` (encoder ring, at most ``2T+1``), ``xb`` and ``hf`` (outputs not yet emitted, at most ``L+C``),
    the carried forward ``state``, per-frame ``frames`` metadata and the frames queued but not yet encoded.
    """

    def __init__(self, stream_id: Hashable, zero_state: State) -> None:
        self.stream_id = stream_id
        self.n = 0  # frames encoded
        self.aligned = 0  # frames aligned and run through the forward cell
        self.next_out = 0  # next output index
        self.entries: dict[int, Entry] = {}
        self.frames: dict[int, FrameMeta] = {}
        self.xb: dict[int, Array] = {}
        self.hf: dict[int, Array] = {}
        self.state: State = zero_state
        self.queue: deque[tuple[np.ndarray, Any]] = deque()
        self.finishing = False  # finish() called: flush once every queued frame is encoded
        self.geometry: dict[Box, tuple[np.ndarray, Box]] = {}

    @property
    def final(self) -> bool:
        """The clip length is known: every frame is encoded and the stream was finished."""
        return self.finishing and not self.queue

    def cache_sizes(self) -> dict[str, int]:
        return {"entries": len(self.entries), "xb": len(self.xb), "hf": len(self.hf), "frames": len(self.frames)}

    def memory_bytes(self) -> int:
        """Bytes held in cached arrays and queued frames (arrays without ``nbytes`` count 0)."""
        arrays: list[Any] = [a for e in self.entries.values() for a in e.values()]
        arrays += [*self.xb.values(), *self.hf.values(), *self.state, *(f for f, _ in self.queue)]
        return int(sum(int(getattr(a, "nbytes", 0)) for a in arrays))

    def align_due(self, radius: int) -> bool:
        """Is the window of frame ``aligned`` complete (all of ``t-T .. t+T`` encoded, or the clip ended)?"""
        if self.aligned >= self.n:
            return False
        return self.final or self.aligned + radius <= self.n - 1

    def window_indices(self, radius: int) -> list[int]:
        """Frames of the window of ``aligned``, clamped to ``0 .. n-1`` (edge frames replicated)."""
        t, last = self.aligned, self.n - 1
        return [min(max(t + k, 0), last) for k in range(-radius, radius + 1)]

    def after_align(self, xf_h: Array, c: Array, xb: Array, radius: int) -> None:
        """Record ``Hf_t`` and ``xb_t`` of frame ``aligned`` and drop ring entries no future window reads."""
        t = self.aligned
        self.state = (xf_h, c)
        self.hf[t] = xf_h
        self.xb[t] = xb
        self.aligned = t + 1
        for i in [i for i in self.entries if i < self.aligned - radius]:
            del self.entries[i]

    def next_emit(self, lookahead: int, chunk: int) -> EmitTask | None:
        """The next backward run whose window is complete, or ``None``."""
        if self.next_out >= self.aligned:
            return None
        u0 = self.next_out
        chunk_end = u0 + chunk - 1
        start = chunk_end + lookahead
        if self.final:
            last = self.n - 1
            chunk_end, start = min(chunk_end, last), min(start, last)
        if start >= self.aligned:
            return None
        return EmitTask(u0, chunk_end, start)

    def after_emit(self, task: EmitTask) -> None:
        self.next_out = task.chunk_end + 1
        for j in [j for j in self.xb if j < self.next_out]:
            del self.xb[j]

    @property
    def done(self) -> bool:
        """Finished and flushed: nothing left to compute or emit."""
        return self.final and self.next_out >= self.n
