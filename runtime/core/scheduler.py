"""Many streams, one schedule: each stage runs once per round for every stream that has work in it.

``MultiStreamScheduler`` holds one ``StreamState`` per stream (ring of encoder entries, carried forward
state, pending ``xb``/``Hf``, geometry; docs/design.md section 6) and drives a backend over the engine split of
docs/design.md section 3. One ``run()`` is one scheduling round:

1. **encode** -- every stream with a queued frame contributes its oldest one; the frames are letterboxed
   and encoded in one ``encode_batch`` call (batch B = streams with a frame);
2. **align + forward** -- every stream whose window ``t-T .. t+T`` is complete aligns frame ``t``
   (``align_batch``) and steps its forward cell (``step_batch``), repeated while any stream has more
   (only finishing streams do);
3. **backward + decode** -- every stream whose backward window is complete runs it (``backward_window_batch``
   when the backend has the unrolled graph, else the backward cell in lockstep over the streams, shorter
   windows dropping out), then all maps of the round are decoded in one ``decode_batch``.

The schedule per stream is exactly ``StreamProcessor``'s (that class is this one with a single stream),
so every stream's maps equal what it would get alone, whatever the interleaving. Streams join
(``open_stream``) and leave (``finish`` flushes, ``close`` drops) at any time, with any frame size, and never
wait for each other: a round runs with whatever is queued. ``max_batch`` caps B per backend call (e.g. a
TensorRT profile's maximum); ``max_streams`` refuses one stream too many with a ``TooManyStreams`` error.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from esan.runtime.core.backend_api import Array, Backend
from esan.runtime.core.errors import UserError
from esan.runtime.core.letterbox import Box, letterbox, valid_mask
from esan.runtime.core.scheduler_api import EngineInfo, delay_frames
from esan.runtime.core.stream_state import EmitTask, FrameMeta, StageTimer, StreamResult, StreamState

T = TypeVar("T")
Ready = tuple[StreamState, int, np.ndarray]  # stream, frame index, decoded map


class TooManyStreams(UserError):
    """A stream was opened past ``max_streams``."""


def check_frame(frame: Any) -> None:
    """Raise ``ValueError`` unless ``frame`` is a non-empty RGB ``uint8 [h, w, 3]`` array.

    The one frame check: a scheduler's ``push`` runs it (the remote one on the client, the local one on the
    server), callers rely on it.
    """
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        desc = f"{frame.dtype} {list(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"frame must be an RGB uint8 array [h, w, 3], got {desc}")
    if frame.size == 0:  # refused here, not in a later round that other streams share
        raise ValueError(f"frame is empty ({frame.shape[1]}x{frame.shape[0]}); give frames of at least 1x1 pixels")


def check_schedule_args(lookahead: Any, backward_chunk: Any) -> None:
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 0:
        raise ValueError(f"lookahead must be an integer >= 0, got {lookahead!r}")
    if isinstance(backward_chunk, bool) or not isinstance(backward_chunk, int) or backward_chunk < 1:
        raise ValueError(f"backward_chunk must be an integer >= 1, got {backward_chunk!r}")


class MultiStreamScheduler:
    """Streams frames of many sources through one ``backend``, batched across streams (module docstring)."""

    def __init__(self, backend: Backend, lookahead: int, backward_chunk: int = 1, *,
                 max_streams: int | None = None, max_batch: int | None = None) -> None:  # fmt: skip
        check_schedule_args(lookahead, backward_chunk)
        for name, value in (("max_streams", max_streams), ("max_batch", max_batch)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an integer >= 1, got {value!r}")
        self.backend = backend
        self.lookahead = lookahead
        self.backward_chunk = backward_chunk
        self.radius = backend.config.radius
        self.max_streams = max_streams
        self.max_batch = max_batch
        self._streams: dict[Hashable, StreamState] = {}
        self._ids = itertools.count()

    # -- properties ------------------------------------------------------------------------------
    @property
    def delay_frames(self) -> int:
        """Frames between a frame and its map in steady state: ``L + T + (C - 1)``."""
        return delay_frames(self.lookahead, self.radius, self.backward_chunk)

    @property
    def engine(self) -> EngineInfo:
        return EngineInfo(self.backend.name, str(self.backend.device), self.backend.precision)

    def location(self, stream_id: Hashable) -> str | None:
        """Every stream computes in this process."""
        return None

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.backend.config.input_size)

    @property
    def output_size(self) -> tuple[int, int]:
        return tuple(self.backend.config.output_size)

    @property
    def streams(self) -> list[Hashable]:
        return list(self._streams)

    def stream(self, stream_id: Hashable) -> StreamState:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise KeyError(f"no open stream {stream_id!r} (open it with open_stream first)") from None

    def stream_memory(self, stream_id: Hashable) -> int:
        """Bytes the stream holds in cached arrays and queued frames (bounded: see ``StreamState``)."""
        return self.stream(stream_id).memory_bytes()

    def has_work(self) -> bool:
        """Frames queued or finished streams still to flush."""
        return any(s.queue or s.finishing for s in self._streams.values())

    # -- streams ---------------------------------------------------------------------------------
    def open_stream(self, stream_id: Hashable | None = None) -> Hashable:
        """Start a stream (frame index 0); returns its id (a fresh integer unless given)."""
        if stream_id is None:
            stream_id = next(i for i in self._ids if i not in self._streams)
        if stream_id in self._streams:
            raise ValueError(f"stream {stream_id!r} is already open")
        if self.max_streams is not None and len(self._streams) >= self.max_streams:
            raise TooManyStreams(f"{len(self._streams)} streams are already open (max_streams={self.max_streams}): "
                                 "finish one first or allow more streams")
        self._streams[stream_id] = StreamState(stream_id, self.backend.zero_state())
        return stream_id

    def push(self, stream_id: Hashable, frame: np.ndarray, payload: Any = None) -> None:
        """Queue RGB ``uint8 [h, w, 3]`` ``frame`` on a stream; its maps come out of later ``run()`` calls."""
        check_frame(frame)
        s = self.stream(stream_id)
        if s.finishing:
            raise ValueError(f"stream {stream_id!r} is finishing: open a new stream for more frames")
        s.queue.append((frame, payload))

    def finish(self, stream_id: Hashable) -> None:
        """End of the stream: the next rounds flush its remaining maps (clamped neighbours), then it closes."""
        self.stream(stream_id).finishing = True

    def close(self, stream_id: Hashable) -> None:
        """Drop a stream at once, without flushing (an abandoned or failed stream)."""
        self._streams.pop(stream_id, None)

    def shutdown(self) -> None:
        """Drop every stream and close the backend."""
        self._streams.clear()
        self.backend.close()

    def __enter__(self) -> MultiStreamScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- one round -------------------------------------------------------------------------------
    def run(self) -> list[StreamResult]:
        """One scheduling round (module docstring); returns the maps that became ready, per stream in order."""
        timer = StageTimer()
        self._encode_round(timer)
        while due := [s for s in self._streams.values() if s.align_due(self.radius)]:
            self._align(due, timer)
        maps: list[Ready] = []
        while tasks := self._emit_tasks():
            maps += self._emit(tasks, timer)
        timings = timer.as_ms()
        results = []
        for s, u, saliency in maps:
            meta = s.frames.pop(u)
            results.append(StreamResult(u, saliency, meta.box, dict(timings), meta.payload, meta.source_hw,
                                        s.stream_id))
        for sid in [sid for sid, s in self._streams.items() if s.done]:
            del self._streams[sid]
        return results

    def _batches(self, items: Sequence[T]) -> Iterator[Sequence[T]]:
        step = self.max_batch or max(len(items), 1)
        for i in range(0, len(items), step):
            yield items[i:i + step]

    def _geometry(self, s: StreamState, box: Box) -> tuple[np.ndarray, Box]:
        """Valid mask and output-canvas box of a letterbox box (cached per stream: sizes rarely change)."""
        if box not in s.geometry:
            if len(s.geometry) >= 16:  # sizes keep changing: do not grow without bound
                s.geometry.clear()
            size = self.input_size
            s.geometry[box] = (valid_mask(box, size), box.scaled(self.output_size[0] / size[0]))
        return s.geometry[box]

    def _encode_round(self, timer: StageTimer) -> None:
        ready = [s for s in self._streams.values() if s.queue]
        if not ready:
            return
        canvases, valids = [], []
        with timer.stage("preprocess"):
            for s in ready:
                frame, payload = s.queue.popleft()
                canvas, box = letterbox(frame, self.input_size)
                valid, out_box = self._geometry(s, box)
                canvases.append(canvas)
                valids.append(valid)
                s.frames[s.n] = FrameMeta(out_box, (int(frame.shape[0]), int(frame.shape[1])), payload)
        with timer.stage("encode"):
            entries = []
            for idx in self._batches(range(len(ready))):
                entries += self.backend.encode_batch(np.stack([canvases[i] for i in idx]),
                                                     np.stack([valids[i] for i in idx]))
        for s, entry in zip(ready, entries, strict=True):
            s.entries[s.n] = entry
            s.n += 1

    def _align(self, due: list[StreamState], timer: StageTimer) -> None:
        for group in self._batches(due):
            with timer.stage("align"):
                windows = [[s.entries[i] for i in s.window_indices(self.radius)] for s in group]
                pairs = self.backend.align_batch(windows, [s.entries[s.aligned] for s in group])
            with timer.stage("forward"):
                states = self.backend.step_batch("fwd", [xf for xf, _ in pairs],
                                                 [s.state[0] for s in group], [s.state[1] for s in group])
            for s, (_, xb), (h, c) in zip(group, pairs, states, strict=True):
                s.after_align(h, c, xb, self.radius)

    def _emit_tasks(self) -> list[tuple[StreamState, EmitTask]]:
        """One due backward run per stream that has one."""
        tasks = ((s, s.next_emit(self.lookahead, self.backward_chunk)) for s in self._streams.values())
        return [(s, t) for s, t in tasks if t is not None]

    def _emit(self, tasks: list[tuple[StreamState, EmitTask]], timer: StageTimer) -> list[Ready]:
        hb: list[dict[int, Array]] = [{} for _ in tasks]
        with timer.stage("backward"):
            whole = [i for i, (_, t) in enumerate(tasks)
                     if t.chunk_end == t.u0 and t.start - t.u0 == self.lookahead]  # fmt: skip
            stepwise = [i for i in range(len(tasks)) if i not in whole]
            for group in self._batches(whole):
                got = self.backend.backward_window_batch([[s.xb[j] for j in range(t.u0, t.start + 1)]
                                                          for s, t in (tasks[i] for i in group)])
                if got is None:  # no unrolled graph for this window: step the cell instead
                    stepwise += list(group)
                    continue
                for i, h in zip(group, got, strict=True):
                    hb[i][tasks[i][1].u0] = h
            self._backward_steps(tasks, sorted(stepwise), hb)
        out: list[Ready] = []
        with timer.stage("decode"):
            items = [(s, u, s.hf.pop(u), hb[i][u]) for i, (s, t) in enumerate(tasks)
                     for u in range(t.u0, t.chunk_end + 1)]  # fmt: skip
            for group in self._batches(items):
                maps = self.backend.decode_batch([it[2] for it in group], [it[3] for it in group])
                out += [(s, u, m) for (s, u, _, _), m in zip(group, maps, strict=True)]
        for s, t in tasks:
            s.after_emit(t)
        return out

    def _backward_steps(self, tasks: list[tuple[StreamState, EmitTask]], which: list[int],
                        hb: list[dict[int, Array]]) -> None:  # fmt: skip
        """Backward cell from zero, ``start`` down to ``u0``, in lockstep over the tasks (short ones drop out)."""
        state = {i: self.backend.zero_state() for i in which}
        for k in range(max((tasks[i][1].start - tasks[i][1].u0 + 1 for i in which), default=0)):
            active = [i for i in which if tasks[i][1].start - k >= tasks[i][1].u0]
            for group in self._batches(active):
                js = [tasks[i][1].start - k for i in group]
                new = self.backend.step_batch("bwd", [tasks[i][0].xb[j] for i, j in zip(group, js, strict=True)],
                                              [state[i][0] for i in group], [state[i][1] for i in group])
                for i, j, hc in zip(group, js, new, strict=True):
                    state[i] = hc
                    if j <= tasks[i][1].chunk_end:
                        hb[i][j] = hc[0]
