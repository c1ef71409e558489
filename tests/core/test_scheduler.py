"""MultiStreamScheduler: every stream's maps equal the single-stream processor's, batched across streams.

Streams differ in frame size, length and start/end times; pushes are interleaved at random. The reference
for each stream is ``StreamProcessor`` on that stream alone (itself tested against ``ESAN.forward``).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import BUNDLE_LOOKAHEAD, make_clip

from esan.runtime.core.backend_api import Backend
from esan.runtime.core.errors import UserError
from esan.runtime.core.processor import StreamProcessor
from esan.runtime.core.scheduler import MultiStreamScheduler, TooManyStreams

TOL = 1e-4
# (frames, frame size, first round it joins): sizes wider, taller and smaller than the tiny 64x96 input
STREAMS = [(9, (50, 120), 0), (4, (80, 60), 2), (13, (64, 96), 1), (1, (31, 47), 5), (7, (120, 90), 6)]


class BatchCounting(Backend):
    """Delegates to a real backend; records the batch size of every batched stage call."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner.config, device=inner.device, precision=inner.precision)
        self.inner = inner
        self.batches: dict[str, list[int]] = {k: [] for k in ("encode", "align", "fwd", "bwd", "window", "decode")}

    def zero_state(self):
        return self.inner.zero_state()

    def encode_batch(self, frames, valid):
        self.batches["encode"].append(len(frames))
        return self.inner.encode_batch(frames, valid)

    def align_batch(self, windows, refs):
        self.batches["align"].append(len(windows))
        return self.inner.align_batch(windows, refs)

    def step_batch(self, direction, xs, hs, cs):
        self.batches[direction].append(len(xs))
        return self.inner.step_batch(direction, xs, hs, cs)

    def backward_window_batch(self, xss):
        got = self.inner.backward_window_batch(xss)
        if got is not None:
            self.batches["window"].append(len(xss))
        return got

    def decode_batch(self, hfs, hbs):
        self.batches["decode"].append(len(hfs))
        return self.inner.decode_batch(hfs, hbs)


def clips() -> list[list[np.ndarray]]:
    return [make_clip(n, hw, seed=10 + i) for i, (n, hw, _) in enumerate(STREAMS)]


def alone(backend: Backend, frames, lookahead: int, chunk: int = 1) -> dict[int, np.ndarray]:
    proc = StreamProcessor(backend, lookahead, chunk)
    out = [r for f in frames for r in proc.push(f)] + proc.finish()
    return {r.index: r.saliency for r in out}


def interleaved(sched: MultiStreamScheduler, frames_of: list[list[np.ndarray]], seed: int) -> dict:
    """Streams join at their round, push 1-3 frames at random per round, finish when out of frames."""
    rng = random.Random(seed)
    got: dict = {i: {} for i in range(len(frames_of))}
    pos = dict.fromkeys(range(len(frames_of)), 0)
    open_ids: set[int] = set()
    rnd = 0
    while any(pos[i] < len(f) for i, f in enumerate(frames_of)) or sched.has_work():
        for i, (_, _, start) in enumerate(STREAMS):
            if rnd == start:
                sched.open_stream(i)
                open_ids.add(i)
            if i in open_ids and pos[i] < len(frames_of[i]):
                for _ in range(rng.randint(0, 2)):
                    if pos[i] < len(frames_of[i]):
                        sched.push(i, frames_of[i][pos[i]], payload=(i, pos[i]))
                        pos[i] += 1
                if pos[i] == len(frames_of[i]):
                    sched.finish(i)
                    open_ids.discard(i)
        for r in sched.run():
            assert r.payload == (r.stream_id, r.index)
            assert r.index not in got[r.stream_id], "a map came out twice"
            assert all(r.index > k for k in got[r.stream_id]), "maps of a stream out of order"
            got[r.stream_id][r.index] = r.saliency
        rnd += 1
        assert rnd < 200
    return got


@pytest.mark.parametrize("lookahead,chunk", [(BUNDLE_LOOKAHEAD, 1), (1, 1), (2, 3)])
def test_every_stream_equals_the_single_stream_processor(backend, lookahead, chunk):
    frames_of = clips()
    expected = [alone(backend, f, lookahead, chunk) for f in frames_of]
    counting = BatchCounting(backend)
    sched = MultiStreamScheduler(counting, lookahead, chunk)
    got = interleaved(sched, frames_of, seed=lookahead * 10 + chunk)
    for i, exp in enumerate(expected):
        assert sorted(got[i]) == list(range(len(frames_of[i])))
        err = max(float(np.abs(got[i][k] - exp[k]).max()) for k in exp)
        assert err <= TOL, f"stream {i}: max abs {err}"
    assert not sched.streams, "finished streams are closed"
    # batched across streams: some calls of every stage carried several streams
    for stage in ("encode", "align", "fwd", "decode"):
        assert max(counting.batches[stage]) >= 2, (stage, counting.batches[stage])
    assert sum(counting.batches["encode"]) == sum(len(f) for f in frames_of)


def test_one_call_per_stage_per_round_in_steady_state(torch_backend):
    counting = BatchCounting(torch_backend)
    sched = MultiStreamScheduler(counting, lookahead=1)
    frames = [make_clip(8, hw, seed=s) for s, hw in enumerate([(50, 120), (70, 70), (64, 96)])]
    for sid in range(3):
        sched.open_stream(sid)
    per_round = []
    for k in range(8):
        for sid in range(3):
            sched.push(sid, frames[sid][k])
        before = {s: len(v) for s, v in counting.batches.items()}
        results = sched.run()
        per_round.append({s: counting.batches[s][before[s]:] for s in counting.batches})
        assert len(results) == (3 if k >= 1 + 2 else 0)
    steady = per_round[-1]
    assert steady["encode"] == [3] and steady["align"] == [3] and steady["fwd"] == [3] and steady["decode"] == [3]
    # the backward window of the 3 streams: one unrolled call, or L + 1 = 2 lockstep cell steps of batch 3
    assert steady["window"] == [3] or steady["bwd"] == [3, 3], steady


def test_max_batch_splits_calls(torch_backend):
    counting = BatchCounting(torch_backend)
    sched = MultiStreamScheduler(counting, lookahead=0, max_batch=2)
    for sid in range(5):
        sched.open_stream(sid)
        sched.push(sid, make_clip(1, seed=sid)[0])
    sched.run()
    assert counting.batches["encode"] == [2, 2, 1]


def test_max_streams_refuses_one_too_many_and_frees_on_finish(torch_backend):
    sched = MultiStreamScheduler(torch_backend, lookahead=0, max_streams=2)
    a, b = sched.open_stream(), sched.open_stream()
    with pytest.raises(TooManyStreams, match="max_streams=2"):
        sched.open_stream()
    assert issubclass(TooManyStreams, UserError)
    sched.push(a, make_clip(1)[0])
    sched.finish(a)
    assert len(sched.run()) == 1
    assert sched.streams == [b]
    sched.open_stream()  # room again


def test_closed_stream_does_not_disturb_the_others(torch_backend):
    frames = make_clip(6, seed=3)
    expected = alone(torch_backend, frames, 1)
    sched = MultiStreamScheduler(torch_backend, lookahead=1)
    keep, drop = sched.open_stream("keep"), sched.open_stream("drop")
    got = {}
    for k, f in enumerate(frames):
        sched.push(keep, f)
        if k < 3:
            sched.push(drop, make_clip(1, (40, 40), seed=k)[0])
        if k == 3:
            sched.close(drop)  # its source failed: dropped without a flush
        got.update({r.index: r.saliency for r in sched.run() if r.stream_id == "keep"})
    sched.finish(keep)
    got.update({r.index: r.saliency for r in sched.run()})
    assert sorted(got) == list(range(6))
    assert max(float(np.abs(got[k] - expected[k]).max()) for k in expected) <= TOL


def test_bad_input_is_refused(torch_backend):
    sched = MultiStreamScheduler(torch_backend, lookahead=0)
    sid = sched.open_stream()
    with pytest.raises(ValueError, match="RGB uint8"):
        sched.push(sid, np.zeros((4, 4), np.uint8))
    with pytest.raises(KeyError, match="no open stream"):
        sched.push("nope", make_clip(1)[0])
    with pytest.raises(ValueError, match="already open"):
        sched.open_stream(sid)
    sched.finish(sid)
    with pytest.raises(ValueError, match="finishing"):
        sched.push(sid, make_clip(1)[0])
    with pytest.raises(ValueError, match="max_batch"):
        MultiStreamScheduler(torch_backend, lookahead=0, max_batch=0)


def test_memory_per_stream_is_bounded(ort_backend):
    sched = MultiStreamScheduler(ort_backend, lookahead=BUNDLE_LOOKAHEAD)
    sid = sched.open_stream()
    sizes = []
    for f in make_clip(30, seed=4):
        sched.push(sid, f)
        sched.run()
        sizes.append(sched.stream_memory(sid))
    warm = BUNDLE_LOOKAHEAD + 2 * 2 + 1
    assert sizes[warm] > 0
    assert max(sizes[warm:]) == min(sizes[warm:]), "memory grows with the stream's length"
    state = sched.stream(sid).cache_sizes()
    assert state["entries"] <= 2 * 2 + 1 and state["xb"] <= BUNDLE_LOOKAHEAD + 1 and state["hf"] <= BUNDLE_LOOKAHEAD + 1
