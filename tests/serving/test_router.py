"""``StreamRouter`` branch by branch, without a Triton server (the model's logic, on the fake scheduler).

The fake scheduler (tests/support/fakes.py) emits a stream's frame ``t`` once ``t + 2`` was pushed and everything at
``finish``; the real scheduler behind the router is covered by tests/serving/test_serving_offline.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.fakes import FakeScheduler

from esan.runtime.core.errors import UserError
from esan.runtime.serving import protocol as P
from esan.runtime.serving.router import Request, StreamRouter

EMPTY = np.zeros((0, 0, 3), np.uint8)


class Sched(FakeScheduler):
    """The fake with a stream limit and an engine that can fail on a given round."""

    def __init__(self, max_streams: int = 2, fail_round: int | None = None) -> None:
        super().__init__(delay=2)
        self.max_streams, self.fail_round, self.rounds, self.pushed = max_streams, fail_round, 0, []

    def open_stream(self, sid=None):
        if len(self.n) >= self.max_streams:
            raise UserError(f"at most {self.max_streams} streams")
        return super().open_stream(sid)

    def push(self, sid, frame, payload=None):
        super().push(sid, frame, payload)  # checks the frame, as every scheduler's push
        self.pushed.append((sid, frame))

    def run(self):
        self.rounds += 1
        if self.rounds == self.fail_round:
            raise RuntimeError("engine exploded")
        return super().run()


class Clock:
    t = 0.0

    def __call__(self) -> float:
        return self.t


def frame(v: int = 0, hw=(6, 8)) -> np.ndarray:
    return np.full((*hw, 3), v, np.uint8)


def make(**kw):
    clock = Clock()
    sched = Sched(**kw)
    return StreamRouter(sched, max_frame_pixels=100, idle_timeout_s=5.0, clock=clock), sched, clock


def indices(out) -> list[int]:
    return [r.index for r in out.results]


def test_one_sequence_through_start_frames_end():
    r, sched, _ = make()
    outs = [r.handle([Request(7, i == 0, False, frame(i))])[0] for i in range(4)]
    assert [indices(o) for o in outs] == [[], [], [0], [1]]
    assert all(o.error is None for o in outs) and r.active == 1
    end = r.handle([Request(7, False, True, EMPTY)])[0]
    assert end.error is None and indices(end) == [2, 3] and r.active == 0
    assert r.stats.frames == 4 and r.stats.maps == 4 and r.stats.requests == 5 and r.stats.rounds == 5
    assert [sid for sid, _ in sched.pushed] == [7] * 4 and sched.finished == [7]
    assert len(end.stage_ms) == len(P.STAGES) and end.stage_ms[1] == 1.0 and end.stage_ms[5] == 0.5
    assert end.stage_ms[0] == 0.0 and end.stage_ms[-1] >= 0.0
    assert r.stats.stage_ms["encode"] == 3.0 and r.stats.stage_ms["decode"] == 1.5  # rounds with maps: 3


def test_end_with_a_frame_pushes_it_then_flushes():
    r, sched, _ = make()
    r.handle([Request(1, True, False, frame(1))])
    out = r.handle([Request(1, False, True, frame(2))])[0]
    assert indices(out) == [0, 1] and r.active == 0 and len(sched.pushed) == 2


def test_two_requests_of_one_sequence_in_one_batch_are_served_in_order():
    r, sched, _ = make()
    reqs = [Request(1, True, False, frame(0)), Request(2, True, False, frame(9))]
    reqs += [Request(1, False, False, frame(i)) for i in (1, 2, 3)]
    outs = r.handle(reqs)
    assert all(o.error is None for o in outs)
    # each request of sequence 1 ends a round: frame t comes out in the round of the push of t + 2
    assert [indices(o) for o in outs] == [[], [], [], [0], [1]]
    assert sched.batches == [[1, 2], [1], [1], [1]]  # the first round served both sequences, then one each
    assert r.stats.rounds == 4 and r.stats.requests == 5


def test_engine_failure_drops_the_streams_of_that_round_only():
    r, sched, _ = make(max_streams=3, fail_round=3)
    r.handle([Request(1, True, False, frame(0)), Request(2, True, False, frame(0))])  # round 1
    r.handle([Request(3, True, False, frame(0))])  # round 2: only stream 3 pending
    outs = r.handle([Request(1, False, False, frame(1)), Request(2, False, False, frame(1))])  # round 3 fails
    for o in outs:
        assert o.error == "server error while computing: RuntimeError: engine exploded" and o.results == []
    assert sorted(sched.streams) == [3] and r.active == 1  # 1 and 2 closed in the scheduler and forgotten
    again = r.handle([Request(1, False, False, frame(2))])[0]
    assert again.error.startswith(P.UNKNOWN_STREAM)
    ok = r.handle([Request(3, False, True, EMPTY)])[0]
    assert ok.error is None and indices(ok) == [0]
    fresh = r.handle([Request(1, True, False, frame(5))])[0]  # the freed slot serves a new sequence
    assert fresh.error is None and r.active == 1


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((6, 8, 3), np.float32),  # wrong dtype
        np.zeros((6, 8), np.uint8),  # no channel axis
        np.zeros((6, 8, 4), np.uint8),  # RGBA
        np.zeros((1, 6, 8, 3), np.uint8),  # batch axis left in
        np.zeros((6, 8, 3), np.int64),
    ],
    ids=["float32", "2d", "rgba", "4d", "int64"],
)
def test_frame_of_wrong_dtype_or_ndim_is_rejected_alone(bad):
    r, sched, _ = make()
    outs = r.handle([Request(1, True, False, frame(0)), Request(2, True, False, bad)])
    assert outs[0].error is None
    assert outs[1].error.startswith(P.BAD_FRAME) and "RGB uint8 array [h, w, 3]" in outs[1].error
    assert str(bad.dtype) in outs[1].error and str(list(bad.shape)) in outs[1].error
    assert sorted(sched.streams) == [1] and r.stats.rejected == 1 and r.stats.frames == 1


def test_frame_size_limit_is_inclusive():
    r, _, _ = make()
    assert r.frame_error(np.zeros((10, 10, 3), np.uint8), False) is None  # exactly max_frame_pixels
    msg = r.frame_error(np.zeros((1, 101, 3), np.uint8), False)
    assert msg == (f"{P.BAD_FRAME} 101x1 is 101 pixels, over this server's limit of 100 "
                   "(esan-rt serve --max-frame-pixels); send smaller frames")


def test_empty_frame_is_valid_only_with_end():
    r, _, _ = make()
    assert r.frame_error(None, True) is None and r.frame_error(EMPTY, True) is None
    assert r.frame_error(np.zeros((0, 5, 3), np.uint8), False).startswith(P.BAD_FRAME)
    out = r.handle([Request(1, True, False, EMPTY)])[0]
    assert "only valid with END" in out.error and r.active == 0


def test_refusal_past_max_streams_and_unknown_stream():
    r, sched, _ = make(max_streams=1)
    outs = r.handle([Request(1, True, False, frame()), Request(2, True, False, frame())])
    assert outs[0].error is None and outs[1].error.startswith(P.REFUSED) and "at most 1 streams" in outs[1].error
    assert r.stats.refused == 1 and sorted(sched.streams) == [1]
    r.handle([Request(3, True, False, frame()), Request(1, False, False, np.zeros((2, 2), np.uint8))])
    r.handle([Request(1, False, False, np.zeros((2, 2), np.uint8))])
    assert r.stats.refused == 2 and r.stats.rejected == 2  # counters add up
    unknown = r.handle([Request(2, False, False, frame())])[0]
    assert unknown.error.startswith(P.UNKNOWN_STREAM) and "sequence 2" in unknown.error and "5 s" in unknown.error
    assert len(sched.pushed) == 1


def test_start_reusing_an_open_id_is_refused_and_the_owner_keeps_its_stream():
    r, sched, _ = make(max_streams=1)
    r.handle([Request(1, True, False, frame(1)), Request(1, False, False, frame(2))])
    out = r.handle([Request(1, True, False, frame(3))])[0]
    assert out.error.startswith(P.REFUSED) and "already open" in out.error
    assert r.active == 1 and sched.n[1] == 2  # the owner's stream goes on, not reset


def test_idle_streams_are_reaped_before_a_batch_and_by_reap():
    r, sched, clock = make()
    r.handle([Request(1, True, False, frame())])
    clock.t = 3.0
    r.handle([Request(2, True, False, frame())])
    clock.t = 5.0  # stream 1 idle exactly the timeout: kept
    assert r.reap() == [] and r.active == 2
    clock.t = 5.5
    out = r.handle([Request(2, False, False, frame())])[0]  # stream 1 reaped first
    assert out.error is None and sorted(sched.streams) == [2] and r.stats.idle_freed == 1
    clock.t = 11.0
    assert r.reap() == [2] and r.active == 0 and sched.streams == [] and r.stats.idle_freed == 2


def test_rejected_request_does_not_refresh_the_idle_clock():
    r, _, clock = make()
    r.handle([Request(1, True, False, frame())])
    clock.t = 4.0
    r.handle([Request(1, False, False, np.zeros((6, 8), np.uint8))])
    clock.t = 5.5
    assert r.reap() == [1]
