"""What a scheduler offers its callers (the pipeline, the CLI, the serving router), local or remote.

``esan.runtime.core.scheduler.MultiStreamScheduler`` runs the streams on a backend in this process;
``esan.runtime.serving.remote_scheduler.RemoteScheduler`` sends them to Triton servers. Both implement
:class:`Scheduler`, so callers never look at the backend behind it: ``engine`` describes it and
``location`` says where a stream runs.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


def delay_frames(lookahead: int, radius: int, backward_chunk: int = 1) -> int:
    """Frames between a frame and its map in steady state: ``L + T + (C - 1)``."""
    return lookahead + radius + backward_chunk - 1


@dataclass(frozen=True)
class EngineInfo:
    """What computes the maps: backend name, device and precision (for logs and reports)."""

    name: str
    device: str
    precision: str


@runtime_checkable
class Scheduler(Protocol):
    """Many streams through one engine: frames in with ``push``, maps out of ``run``."""

    lookahead: int
    backward_chunk: int
    radius: int

    @property
    def delay_frames(self) -> int: ...

    @property
    def engine(self) -> EngineInfo: ...

    @property
    def streams(self) -> list[Hashable]: ...

    def location(self, stream_id: Hashable) -> str | None:
        """Where the stream computes (a server address), ``None`` in this process."""
        ...

    def open_stream(self, stream_id: Hashable | None = None) -> Hashable: ...

    def push(self, stream_id: Hashable, frame: np.ndarray, payload: Any = None) -> None: ...

    def finish(self, stream_id: Hashable) -> None: ...

    def close(self, stream_id: Hashable) -> None: ...

    def run(self) -> list[Any]: ...

    def has_work(self) -> bool: ...

    def stream_memory(self, stream_id: Hashable) -> int: ...

    def shutdown(self) -> None:
        """Drop every stream and release the engine (backend, connections); the scheduler is unusable after."""
        ...
