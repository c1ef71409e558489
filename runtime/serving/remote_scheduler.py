"""The pipeline's scheduler interface with the compute on Triton servers (``esan-rt stream --server``).

``RemoteScheduler`` implements ``esan.runtime.core.scheduler_api.Scheduler`` as ``MultiStreamScheduler``
does, but each stream is a ``RemoteStream``: stream ``i`` is pinned to ``server_for(servers, i)``, so ``--server``
given several times shards the streams and a stream never moves. One ``run()`` sends the oldest queued
frame of every stream (or its END) concurrently, one request per stream, and returns the maps that came
back; the batching across streams happens on the server (Triton's sequence batcher feeds the model's
scheduler).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from esan.runtime.core.scheduler import check_frame
from esan.runtime.core.scheduler_api import EngineInfo, delay_frames
from esan.runtime.core.stream_state import StreamResult
from esan.runtime.serving.client import RemoteStream, check_address, connect, server_for


class RemoteScheduler:
    """Streams on one or more servers behind the scheduler interface (module docstring)."""

    def __init__(self, servers: list[str], *, timeout_s: float = 60.0) -> None:
        self.servers = [check_address(s) for s in servers]
        self.timeout_s = timeout_s
        client, self.model = connect(self.servers[0])  # the model's parameters (and: is it there at all?)
        client.close()
        self.lookahead = self.model.lookahead
        self.backward_chunk = self.model.backward_chunk
        self.radius = self.model.radius
        self._remote: dict[Hashable, RemoteStream] = {}
        self._queue: dict[Hashable, deque[tuple[np.ndarray, Any]]] = {}
        self._finishing: set[Hashable] = set()
        self._opened = 0
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="esan-remote")

    @property
    def delay_frames(self) -> int:
        return delay_frames(self.lookahead, self.radius, self.backward_chunk)

    @property
    def engine(self) -> EngineInfo:
        return self.model.engine

    def location(self, stream_id: Hashable) -> str:
        return self.server_of(stream_id)

    @property
    def streams(self) -> list[Hashable]:
        return list(self._remote)

    def server_of(self, stream_id: Hashable) -> str:
        """The server a stream is pinned to: an integer id ``i`` to server ``i mod (servers)``."""
        if stream_id in self._remote:
            return self._remote[stream_id].address
        return server_for(self.servers, stream_id if isinstance(stream_id, int) else self._opened)

    def open_stream(self, stream_id: Hashable | None = None) -> Hashable:
        if stream_id is None:
            stream_id = self._opened
        if stream_id in self._remote:
            raise ValueError(f"stream {stream_id!r} is already open")
        self._remote[stream_id] = RemoteStream(self.server_of(stream_id), timeout_s=self.timeout_s)
        self._queue[stream_id] = deque()
        self._opened += 1
        return stream_id

    def push(self, stream_id: Hashable, frame: np.ndarray, payload: Any = None) -> None:
        check_frame(frame)  # the client side's one check (the server checks again)
        if stream_id in self._finishing:
            raise ValueError(f"stream {stream_id!r} is finishing: open a new stream for more frames")
        self._queue[stream_id].append((frame, payload))

    def finish(self, stream_id: Hashable) -> None:
        self._remote[stream_id]  # noqa: B018 - KeyError for an unknown stream, as the local scheduler
        self._finishing.add(stream_id)

    def close(self, stream_id: Hashable) -> None:
        remote = self._remote.pop(stream_id, None)
        self._queue.pop(stream_id, None)
        self._finishing.discard(stream_id)
        if remote is not None:
            remote.close()

    def has_work(self) -> bool:
        return any(self._queue.values()) or bool(self._finishing)

    def stream_memory(self, stream_id: Hashable) -> int:
        """Bytes of frames queued here (the stream's state lives on its server)."""
        return int(sum(f.nbytes for f, _ in self._queue.get(stream_id, ())))

    def _step(self, stream_id: Hashable) -> list[StreamResult]:
        remote, queue = self._remote[stream_id], self._queue[stream_id]
        if queue:
            frame, payload = queue.popleft()
            results = remote.push(frame, payload)
        else:  # finishing and every frame sent: END flushes the rest
            results = remote.finish()
        for r in results:
            r.stream_id = stream_id
        return results

    def run(self) -> list[StreamResult]:
        """One request per stream with work (concurrently); the maps that came back."""
        ready = [sid for sid in self._remote if self._queue[sid] or sid in self._finishing]
        results: list[StreamResult] = []
        for sid, got in zip(ready, self._pool.map(self._step, ready), strict=True):
            results += got
            if sid in self._finishing and not self._queue[sid]:
                self.close(sid)
        return results

    def shutdown(self) -> None:
        """Close every stream and the worker threads."""
        for sid in list(self._remote):
            self.close(sid)
        self._pool.shutdown(wait=True)

