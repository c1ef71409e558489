"""One stream's output writer: a thread that drains a bounded queue of maps into that stream's ``Outputs``.

The compute thread only appends (``put`` never blocks); it keeps the queue bounded by admitting no
new frame of a stream whose writer is ``full`` (backpressure: a file source then waits, a live source
drops its own oldest frames). Each map's output time is recorded in the stream's log (``"output"``).
A failing write (disk full, ...) is kept in ``error``; the pipeline then ends that stream only, and
the writer discards what is still queued for it.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Any

from esan.runtime.io.outputs import Outputs
from esan.runtime.io.report import LatencyLog
from esan.runtime.io.sources import Frame

DEFAULT_CAPACITY = 8


@dataclass
class Job:
    result: Any
    frame: Frame
    record: int  # the map's record in the stream's LatencyLog


class OutputWriter:
    """Writes one stream's maps on its own thread (module docstring)."""

    def __init__(self, outputs: Outputs, log: LatencyLog, *, capacity: int = DEFAULT_CAPACITY,
                 wake: threading.Event | None = None, name: str = "output") -> None:  # fmt: skip
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.outputs = outputs
        self.log = log
        self.capacity = capacity
        self.error: str | None = None
        self.written = 0
        self.discarded = 0
        self.peak_backlog = 0
        self._wake = wake
        self._jobs: collections.deque[Job] = collections.deque()
        self._busy = 0
        self._cond = threading.Condition()
        self._closing = False
        self._done = threading.Event()  # not Thread.is_alive(): a Ctrl-C inside Thread.join can corrupt it
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        """Maps queued or being written."""
        return len(self._jobs) + self._busy

    @property
    def full(self) -> bool:
        return self.backlog >= self.capacity

    def put(self, job: Job) -> None:
        """Queue one map (never blocks)."""
        with self._cond:
            self._jobs.append(job)
            self.peak_backlog = max(self.peak_backlog, self.backlog)
            self._cond.notify_all()

    def close(self) -> None:
        """No more maps: write what is queued, then close the outputs (video file)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Drop what is queued (counted in ``discarded``) and close the outputs as soon as possible."""
        with self._cond:
            self.discarded += len(self._jobs)
            self._jobs.clear()
            self._closing = True
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True once it has finished (queue drained, outputs closed)."""
        return self._done.wait(timeout)

    def _next(self) -> Job | None:
        with self._cond:
            while not self._jobs and not self._closing:
                self._cond.wait()
            if not self._jobs:
                return None
            self._busy = 1
            return self._jobs.popleft()

    def _run(self) -> None:
        try:
            while (job := self._next()) is not None:
                try:
                    if self.error is None:
                        t0 = time.perf_counter()
                        self.outputs.write(job.result, job.frame.image, self.log)
                        self.log.set_output(job.record, (time.perf_counter() - t0) * 1000.0)
                        self.written += 1
                    else:
                        self.discarded += 1
                except Exception as exc:  # this stream's outputs failed: the pipeline ends this stream only
                    self.error = f"{type(exc).__name__}: {exc}"
                    self.discarded += 1
                finally:
                    with self._cond:
                        self._busy = 0
                    if self._wake is not None:
                        self._wake.set()
        finally:
            try:
                self.outputs.finish()
            except Exception as exc:
                self.error = self.error or f"{type(exc).__name__}: {exc}"
            self._done.set()
            if self._wake is not None:
                self._wake.set()
