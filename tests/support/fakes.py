"""Test doubles for the pipeline: a scheduler without a model and frame readers (no files, no camera)."""

from __future__ import annotations

import os
import time

import numpy as np

from esan.runtime.core.letterbox import map_box
from esan.runtime.core.scheduler import check_frame
from esan.runtime.core.scheduler_api import EngineInfo
from esan.runtime.core.stream_state import StreamResult

IN_HW, OUT_HW = (64, 96), (32, 48)


class FakeScheduler:
    """The pipeline's scheduler interface without a model: a stream's frame ``t`` comes out once ``t + delay``
    was pushed (all at ``finish``); ``interrupt_at`` raises KeyboardInterrupt at that push of a stream;
    ``signal_at=(n, signum)`` sends a real signal to this process at push ``n`` (once)."""

    def __init__(self, delay: int = 3, interrupt_at: int | None = None, slow_s: float = 0.0,
                 signal_at: tuple[int, int] | None = None) -> None:  # fmt: skip
        self.delay_frames, self.lookahead, self.backward_chunk, self.radius = delay, delay, 1, 0
        self.engine = EngineInfo("fake", "cpu", "fp32")
        self.shut_down = False
        self.interrupt_at, self.slow_s, self.signal_at = interrupt_at, slow_s, signal_at
        self.queued: dict[object, list[tuple[int, np.ndarray, object]]] = {}
        self.waiting: dict[object, list[tuple[int, np.ndarray, object]]] = {}
        self.n: dict[object, int] = {}
        self.finishing: set[object] = set()
        self.finished: list[object] = []
        self.batches: list[list[object]] = []  # the streams that had a frame, per round

    @property
    def streams(self) -> list[object]:
        return list(self.n)

    def location(self, sid: object) -> str | None:
        return None

    def shutdown(self) -> None:
        self.shut_down = True

    def open_stream(self, sid: object = None) -> object:
        self.queued[sid], self.waiting[sid], self.n[sid] = [], [], 0
        return sid

    def push(self, sid: object, frame: np.ndarray, payload: object = None) -> None:
        check_frame(frame)  # as every scheduler's push
        if self.interrupt_at is not None and self.n[sid] == self.interrupt_at:
            raise KeyboardInterrupt
        if self.signal_at is not None and self.n[sid] == self.signal_at[0]:
            os.kill(os.getpid(), self.signal_at[1])
            self.signal_at = None
        self.queued[sid].append((self.n[sid], frame, payload))
        self.n[sid] += 1

    def finish(self, sid: object) -> None:
        self.finishing.add(sid)

    def close(self, sid: object) -> None:
        for d in (self.queued, self.waiting, self.n):
            d.pop(sid, None)
        self.finishing.discard(sid)

    def has_work(self) -> bool:
        return any(self.queued.values()) or bool(self.finishing)

    def stream_memory(self, sid: object) -> int:
        return sum(f.nbytes for _, f, _ in self.waiting[sid])

    def _result(self, sid: object, i: int, frame: np.ndarray, payload: object) -> StreamResult:
        sal = np.full(OUT_HW, (i % 10 + 1) / 12.0, np.float32)
        return StreamResult(i, sal, map_box(frame.shape[:2], IN_HW, OUT_HW), {"encode": 1.0, "decode": 0.5},
                            payload, frame.shape[:2], sid)

    def run(self) -> list[StreamResult]:
        time.sleep(self.slow_s)
        self.batches.append(sorted(sid for sid, q in self.queued.items() if q))
        out = []
        for sid in list(self.n):
            self.waiting[sid] += self.queued[sid]
            self.queued[sid] = []
            while len(self.waiting[sid]) > self.delay_frames:
                out.append(self._result(sid, *self.waiting[sid].pop(0)))
            if sid in self.finishing:
                out += [self._result(sid, *w) for w in self.waiting[sid]]
                self.finished.append(sid)
                self.close(sid)
        return out


def counter_reader(n: int, hw: tuple[int, int] = (40, 60), fail: Exception | None = None):
    state = {"i": 0}

    def read() -> np.ndarray | None:
        i = state["i"]
        if i >= n:
            if fail is not None:
                raise fail
            return None
        state["i"] += 1
        return np.full((*hw, 3), i % 256, np.uint8)

    return read
