"""The many-streams scheduler the Triton model drives (``esan.runtime.core.scheduler`` API).

``open_scheduler`` returns ``MultiStreamScheduler`` when the runtime has it; until then
``ProcessorPerStream`` gives the same API with one ``StreamProcessor`` per stream (same maps; no
batching across streams inside a round).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from esan.runtime.core.backend_api import Backend
from esan.runtime.core.errors import UserError
from esan.runtime.core.processor import StreamProcessor, StreamResult


class TooManyStreams(UserError):
    """A stream was opened past ``max_streams``."""


class ProcessorPerStream:
    """``open_stream / push / finish / close / run / has_work`` over one ``StreamProcessor`` per stream."""

    def __init__(self, backend: Backend, lookahead: int, backward_chunk: int = 1, *,
                 max_streams: int | None = None) -> None:  # fmt: skip
        self.backend = backend
        self.lookahead = lookahead
        self.backward_chunk = backward_chunk
        self.max_streams = max_streams
        self._procs: dict[Hashable, StreamProcessor] = {}
        self._queued: dict[Hashable, list[tuple[np.ndarray, Any]]] = {}
        self._finishing: set[Hashable] = set()
        StreamProcessor(backend, lookahead, backward_chunk)  # validates the arguments

    @property
    def streams(self) -> list[Hashable]:
        return list(self._procs)

    @property
    def delay_frames(self) -> int:
        return self.lookahead + self.backend.config.radius + self.backward_chunk - 1

    def has_work(self) -> bool:
        return any(self._queued.values()) or bool(self._finishing)

    def open_stream(self, stream_id: Hashable) -> Hashable:
        if stream_id in self._procs:
            raise ValueError(f"stream {stream_id!r} is already open")
        if self.max_streams is not None and len(self._procs) >= self.max_streams:
            raise TooManyStreams(f"{len(self._procs)} streams are already open (max_streams={self.max_streams}): "
                                 "finish one first or allow more streams")
        self._procs[stream_id] = StreamProcessor(self.backend, self.lookahead, self.backward_chunk)
        self._queued[stream_id] = []
        return stream_id

    def push(self, stream_id: Hashable, frame: np.ndarray, payload: Any = None) -> None:
        if stream_id not in self._procs:
            raise KeyError(f"no open stream {stream_id!r}")
        if stream_id in self._finishing:
            raise ValueError(f"stream {stream_id!r} is finishing: open a new stream for more frames")
        self._queued[stream_id].append((frame, payload))

    def finish(self, stream_id: Hashable) -> None:
        if stream_id not in self._procs:
            raise KeyError(f"no open stream {stream_id!r}")
        self._finishing.add(stream_id)

    def close(self, stream_id: Hashable) -> None:
        self._procs.pop(stream_id, None)
        self._queued.pop(stream_id, None)
        self._finishing.discard(stream_id)

    def run(self) -> list[StreamResult]:
        """One round: each stream's oldest queued frame, then the flush of finishing streams without frames."""
        out: list[StreamResult] = []
        for sid, proc in list(self._procs.items()):
            if self._queued[sid]:
                frame, payload = self._queued[sid].pop(0)
                results = proc.push(frame, payload)
            elif sid in self._finishing:
                results = proc.finish()
                self.close(sid)
            else:
                continue
            for r in results:
                r.stream_id = sid  # type: ignore[attr-defined]
            out += results
        return out


def open_scheduler(backend: Backend, lookahead: int, backward_chunk: int, max_streams: int) -> Any:
    """The runtime's ``MultiStreamScheduler`` when present, else ``ProcessorPerStream``."""
    try:
        from esan.runtime.core.scheduler import MultiStreamScheduler
    except ImportError:
        return ProcessorPerStream(backend, lookahead, backward_chunk, max_streams=max_streams)
    return MultiStreamScheduler(backend, lookahead, backward_chunk, max_streams=max_streams)
