"""Clock-free streaming core: frames in, saliency maps out, exactly DESIGN.md section 2.

``StreamProcessor`` drives a backend (``esan.runtime.backends``) over the engine split of DESIGN.md
section 3. With radius ``T``, lookahead ``L`` and backward chunk ``C`` (default 1), the schedule is:

* **push of frame n** — letterbox + valid mask (preprocess), ``encode`` once; the entry goes into a
  ring buffer.
* **frame t+T has arrived** (n = t+T) — the window ``clamp(t-T..t+T)`` of ``t`` is complete: ``align``
  it once (start clamped: frame 0 replicated), giving ``(xf_t, xb_t)``; then the forward cell
  ``Hf_t = cell_fwd(xf_t, Hf_{t-1})`` (state carried, zero at the start).
* **frame u+L+T has arrived** (C = 1) — output ``u`` is ready: the backward cell runs from zero over
  ``xb_{u+L} .. xb_u`` (the backend's unrolled ``bwd_window`` when it has one for ``L+1`` frames,
  else ``L+1`` ``cell_bwd`` steps) and ``M_u = decode(Hf_u, Hb_u)``. So each push returns at most one
  result once warmed up, ``delay_frames = L + T`` pushes later.
* **C > 1** (approximation, never the default) — frames ``kC .. kC+C-1`` share one backward run that
  starts at ``min(kC+C-1+L, N-1)`` and records ``Hb`` at each of them; the chunk's results come out
  together once frame ``kC+C-1+L+T`` has arrived (``delay_frames = L + T + C - 1``).
* **finish()** — the clip length ``N`` is now known: the last ``T`` frames are aligned with clamped
  neighbours (frame ``N-1`` replicated), and the remaining outputs use shorter backward windows
  ``e = min(u+L, N-1)``. Clips shorter than the window work. The processor is then reset.

Memory is bounded: the ring keeps only entries a future window still needs (at most ``2T+1``),
and ``xb``/``Hf`` only for outputs not yet emitted (at most ``L+C``); see ``cache_sizes``.
Frames of a stream may change size (the letterbox box is recomputed per frame).

The core never reads a clock except ``time.perf_counter`` to fill ``StreamResult.timings_ms``:
the milliseconds spent per stage in the call (``push``/``finish``) that produced the result, plus
``total``. Results produced by the same call share that call's timings.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esan.runtime.core.backend_api import Array, Backend, Entry
from esan.runtime.core.letterbox import Box, letterbox, unletterbox, valid_mask

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

    def to_source(self) -> np.ndarray:
        """The map cropped to the picture and resized onto the original frame (``float32 [h, w]``)."""
        return unletterbox(self.saliency, self.box, self.source_hw)


@dataclass
class _Frame:
    box: Box
    source_hw: tuple[int, int]
    payload: Any


@dataclass
class _Timer:
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


class StreamProcessor:
    """Streams frames through ``backend`` with lookahead ``L`` (see the module docstring)."""

    def __init__(self, backend: Backend, lookahead: int, backward_chunk: int = 1) -> None:
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
            raise ValueError(f"lookahead must be an integer >= 0, got {lookahead!r}")
        if isinstance(backward_chunk, bool) or not isinstance(backward_chunk, int) or backward_chunk < 1:
            raise ValueError(f"backward_chunk must be an integer >= 1, got {backward_chunk!r}")
        self.backend = backend
        self.lookahead = lookahead
        self.backward_chunk = backward_chunk
        self.radius = backend.config.radius
        self.reset()

    # -- properties ------------------------------------------------------------------------------
    @property
    def delay_frames(self) -> int:
        """Pushes between a frame and its map in steady state: ``L + T + (C - 1)``."""
        return self.lookahead + self.radius + self.backward_chunk - 1

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.backend.config.input_size)

    @property
    def output_size(self) -> tuple[int, int]:
        return tuple(self.backend.config.output_size)

    @property
    def frames_pushed(self) -> int:
        return self._n

    @property
    def cache_sizes(self) -> dict[str, int]:
        """Cached items: encoder entries, projected ``xb``, forward ``Hf``, per-frame metadata."""
        return {"entries": len(self._entries), "xb": len(self._xb), "hf": len(self._hf), "frames": len(self._frames)}

    # -- stream ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the current stream (no flush); the next push starts a new one at index 0."""
        self._n = 0  # frames pushed
        self._aligned = 0  # frames aligned and run through the forward cell
        self._next_out = 0  # next output index
        self._entries: dict[int, Entry] = {}
        self._frames: dict[int, _Frame] = {}
        self._xb: dict[int, Array] = {}
        self._hf: dict[int, Array] = {}
        self._state = self.backend.zero_state()
        self._geometry_cache: dict[Box, tuple[np.ndarray, Box]] = {}

    def push(self, frame: np.ndarray, payload: Any = None) -> list[StreamResult]:
        """Add RGB ``uint8 [h, w, 3]`` frame; returns the maps that became ready (0 or 1, C at once if chunked)."""
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"frame must be an RGB uint8 array [h, w, 3], got {desc}")
        timer = _Timer()
        size = self.input_size
        with timer.stage("preprocess"):
            canvas, box = letterbox(frame, size)
            valid, out_box = self._geometry(box)
        with timer.stage("encode"):
            entry = self.backend.encode(canvas[None], valid[None])
        self._entries[self._n] = entry
        self._frames[self._n] = _Frame(out_box, (int(frame.shape[0]), int(frame.shape[1])), payload)
        self._n += 1
        return self._advance(timer, final=False)

    def _geometry(self, box: Box) -> tuple[np.ndarray, Box]:
        """Valid mask and output-canvas box of a letterbox box (cached: a stream rarely changes size)."""
        if box not in self._geometry_cache:
            if len(self._geometry_cache) >= 16:  # sizes keep changing: do not grow without bound
                self._geometry_cache.clear()
            size = self.input_size
            self._geometry_cache[box] = (valid_mask(box, size), box.scaled(self.output_size[0] / size[0]))
        return self._geometry_cache[box]

    def finish(self) -> list[StreamResult]:
        """End of clip: flush every remaining map (clamped neighbours), then reset for a new stream."""
        if self._n == 0:
            return []
        results = self._advance(_Timer(), final=True)
        self.reset()
        return results

    # -- schedule --------------------------------------------------------------------------------
    def _advance(self, timer: _Timer, final: bool) -> list[StreamResult]:
        last = self._n - 1
        t_radius = self.radius
        while self._aligned < self._n and (final or self._aligned + t_radius <= last):
            self._align_next(timer, last)
        results: list[tuple[int, np.ndarray]] = []
        while self._next_out < self._aligned:
            u0 = self._next_out
            chunk_end = u0 + self.backward_chunk - 1
            start = chunk_end + self.lookahead
            if final:
                chunk_end, start = min(chunk_end, last), min(start, last)
            if start >= self._aligned:
                break  # its backward window is not complete yet
            results += self._emit(timer, u0, chunk_end, start)
        timings = timer.as_ms()
        out = []
        for u, saliency in results:
            meta = self._frames.pop(u)
            out.append(StreamResult(u, saliency, meta.box, dict(timings), meta.payload, meta.source_hw))
        return out

    def _align_next(self, timer: _Timer, last: int) -> None:
        t = self._aligned
        idx = [min(max(t + k, 0), last) for k in range(-self.radius, self.radius + 1)]
        with timer.stage("align"):
            xf, xb = self.backend.align([self._entries[i] for i in idx], self._entries[t])
        with timer.stage("forward"):
            h, c = self.backend.step("fwd", xf, *self._state)
        self._state = (h, c)
        self._hf[t] = h
        self._xb[t] = xb
        self._aligned = t + 1
        # future windows start at (t + 1) - T: older entries are never read again
        for i in [i for i in self._entries if i < self._aligned - self.radius]:
            del self._entries[i]

    def _emit(self, timer: _Timer, u0: int, chunk_end: int, start: int) -> list[tuple[int, np.ndarray]]:
        """Backward run from ``start`` down to ``u0``; decode outputs ``u0 .. chunk_end``."""
        hb: dict[int, Array] = {}
        with timer.stage("backward"):
            xs = [self._xb[j] for j in range(u0, start + 1)]
            if chunk_end == u0 and len(xs) == self.lookahead + 1:
                h = self.backend.backward_window(xs)
                if h is not None:
                    hb[u0] = h
            if not hb:
                h, c = self.backend.zero_state()
                for j in range(start, u0 - 1, -1):
                    h, c = self.backend.step("bwd", self._xb[j], h, c)
                    if j <= chunk_end:
                        hb[j] = h
        maps = []
        with timer.stage("decode"):
            for u in range(u0, chunk_end + 1):
                maps.append((u, self.backend.decode(self._hf.pop(u), hb[u])))
        self._next_out = chunk_end + 1
        for j in [j for j in self._xb if j < self._next_out]:
            del self._xb[j]
        return maps
