"""Clock-free streaming core: frames in, saliency maps out, exactly docs/design.md section 2.

``StreamProcessor`` drives a backend (``esan.runtime.backends``) over the engine split of docs/design.md
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

``StreamProcessor`` is ``esan.runtime.core.scheduler.MultiStreamScheduler`` with one stream: the schedule
above is written once, there, and runs for 1 or N streams.

The core never reads a clock except ``time.perf_counter`` to fill ``StreamResult.timings_ms``:
the milliseconds spent per stage in the call (``push``/``finish``: one scheduling round) that produced the result, plus
``total``. Results produced by the same call share that call's timings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from esan.runtime.core.backend_api import Backend
from esan.runtime.core.scheduler import MultiStreamScheduler
from esan.runtime.core.scheduler_api import EngineInfo
from esan.runtime.core.stream_state import STAGES, StreamResult

__all__ = ["STAGES", "StreamProcessor", "StreamResult"]

_STREAM = 0


class StreamProcessor:
    """Streams frames through ``backend`` with lookahead ``L`` (see the module docstring)."""

    def __init__(self, backend: Backend, lookahead: int, backward_chunk: int = 1) -> None:
        self._scheduler = MultiStreamScheduler(backend, lookahead, backward_chunk)
        self.backend = backend
        self.lookahead = lookahead
        self.backward_chunk = backward_chunk
        self.radius = backend.config.radius
        self.reset()

    # -- properties ------------------------------------------------------------------------------
    @property
    def delay_frames(self) -> int:
        """Pushes between a frame and its map in steady state: ``L + T + (C - 1)``."""
        return self._scheduler.delay_frames

    @property
    def engine(self) -> EngineInfo:
        return self._scheduler.engine

    @property
    def input_size(self) -> tuple[int, int]:
        return self._scheduler.input_size

    @property
    def output_size(self) -> tuple[int, int]:
        return self._scheduler.output_size

    @property
    def frames_pushed(self) -> int:
        return self._scheduler.stream(_STREAM).n

    @property
    def cache_sizes(self) -> dict[str, int]:
        """Cached items: encoder entries, projected ``xb``, forward ``Hf``, per-frame metadata."""
        return self._scheduler.stream(_STREAM).cache_sizes()

    @property
    def memory_bytes(self) -> int:
        """Bytes held in the stream's cached arrays."""
        return self._scheduler.stream_memory(_STREAM)

    # -- stream ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the current stream (no flush); the next push starts a new one at index 0."""
        self._scheduler.close(_STREAM)
        self._scheduler.open_stream(_STREAM)

    def push(self, frame: np.ndarray, payload: Any = None) -> list[StreamResult]:
        """Add RGB ``uint8 [h, w, 3]`` frame; returns the maps that became ready (0 or 1, C at once if chunked)."""
        self._scheduler.push(_STREAM, frame, payload)  # validates the frame
        return self._scheduler.run()

    def finish(self) -> list[StreamResult]:
        """End of clip: flush every remaining map (clamped neighbours), then reset for a new stream."""
        if self.frames_pushed == 0:
            return []
        self._scheduler.finish(_STREAM)
        results = self._scheduler.run()
        self.reset()
        return results

    def shutdown(self) -> None:
        """Drop the stream and close the backend."""
        self._scheduler.shutdown()

    def __enter__(self) -> StreamProcessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
