"""The streaming schedule against its definition, on a toy numpy backend: fast enough for mutation testing.

``ToyBackend`` implements the batched backend interface with small order-sensitive arithmetic (every
stage mixes its inputs with distinct weights, so a wrong window, a swapped stream or an off-by-one frame
changes the numbers). ``oracle_maps`` computes each frame's map straight from the definition in
docs/design.md: window ``t-T .. t+T`` clamped to the clip, forward cell over ``0 .. t``, backward cell from
zero over ``min(u0 + C - 1 + L, n - 1)`` down to ``t`` (``u0`` = first frame of ``t``'s chunk of ``C``),
decoder on both. The schedulers under test must give exactly those maps, for many streams pushed and run
in random interleavings, with any ``max_batch``, with and without the unrolled backward window.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from esan.runtime.core.backend_api import Backend, BackendConfig
from esan.runtime.core.letterbox import letterbox
from esan.runtime.core.processor import StreamProcessor
from esan.runtime.core.scheduler import MultiStreamScheduler, TooManyStreams

IN_HW, OUT_HW = (12, 20), (6, 10)
W_WIN = (0.7, -1.3, 2.1, 0.4, -0.9, 1.7, 0.2)  # weights of the window's frames (up to T = 3), all distinct


def encode(canvas: np.ndarray, valid: np.ndarray) -> float:
    """One number per frame that depends on its pixels, their position and the padding."""
    ramp = np.arange(canvas.size, dtype=np.float64).reshape(canvas.shape) % 7 + 1
    return float((canvas * ramp).sum() / (canvas.size * 255 * 4) + valid.mean() / 2)  # O(1): nothing saturates


def align(window: list[float], ref: float) -> tuple[float, float]:
    xf = sum(w * e for w, e in zip(W_WIN, window, strict=False)) + 0.5 * ref
    return xf, 0.3 * xf - ref


def cell(direction: str, x: float, h: float, c: float) -> tuple[float, float]:
    a = 0.8 if direction == "fwd" else -0.6
    c_new = 0.9 * c + np.tanh(a * x + 0.5 * h)
    return float(np.tanh(c_new) + 0.1 * x), float(c_new)


def decode(hf: float, hb: float) -> np.ndarray:
    ramp = np.linspace(-0.5, 0.5, OUT_HW[0] * OUT_HW[1]).reshape(OUT_HW)
    return (1 / (1 + np.exp(-(hf + 2 * hb + ramp)))).astype(np.float32)


class ToyBackend(Backend):
    """The backend interface on scalars; records every call's stage and batch size."""

    name = "toy"

    def __init__(self, radius: int = 2, window_lengths: tuple[int, ...] | None = None) -> None:
        super().__init__(BackendConfig(IN_HW, OUT_HW, radius, hidden=1, state_size=(1, 1)))
        self.window_lengths = window_lengths  # lengths bwd_window serves (None: none)
        self.calls: list[tuple[str, int]] = []

    def encode_batch(self, frames, valid):
        self.calls.append(("encode", len(frames)))
        return [{"e": encode(f, v)} for f, v in zip(frames, valid, strict=True)]

    def align_batch(self, windows, refs):
        self.calls.append(("align", len(windows)))
        return [align([e["e"] for e in w], r["e"]) for w, r in zip(windows, refs, strict=True)]

    def step_batch(self, direction, xs, hs, cs):
        self.calls.append((direction, len(xs)))
        return [cell(direction, x, h, c) for x, h, c in zip(xs, hs, cs, strict=True)]

    def zero_state(self):
        return 0.0, 0.0

    def backward_window_batch(self, xss):
        if self.window_lengths is None or len(xss[0]) not in self.window_lengths:
            return None
        self.calls.append(("bwd_window", len(xss)))
        out = []
        for xs in xss:
            h, c = self.zero_state()
            for x in reversed(xs):
                h, c = cell("bwd", x, h, c)
            out.append(h)
        return out

    def decode_batch(self, hfs, hbs):
        self.calls.append(("decode", len(hfs)))
        return [decode(hf, hb) for hf, hb in zip(hfs, hbs, strict=True)]


def oracle_maps(frames: list[np.ndarray], radius: int, lookahead: int, chunk: int) -> list[np.ndarray]:
    """Every frame's map from the definition (module docstring)."""
    n = len(frames)
    enc = []
    for f in frames:
        canvas, box = letterbox(f, IN_HW)
        valid = np.zeros((*IN_HW, 1), np.uint8)
        valid[box.top : box.top + box.height, box.left : box.left + box.width] = 1
        enc.append(encode(canvas, valid))
    pairs = [align([enc[min(max(t + k, 0), n - 1)] for k in range(-radius, radius + 1)], enc[t]) for t in range(n)]
    xf, xb = [p[0] for p in pairs], [p[1] for p in pairs]
    hf, (h, c) = [], (0.0, 0.0)
    for t in range(n):
        h, c = cell("fwd", xf[t], h, c)
        hf.append(h)
    maps = []
    for t in range(n):
        start = min(t // chunk * chunk + chunk - 1 + lookahead, n - 1)
        h, c = 0.0, 0.0
        for j in range(start, t - 1, -1):
            h, c = cell("bwd", xb[j], h, c)
        maps.append(decode(hf[t], h))
    return maps


def clip(n: int, hw: tuple[int, int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


def assert_maps(results, frames, radius, lookahead, chunk) -> None:
    ref = oracle_maps(frames, radius, lookahead, chunk)
    assert [r.index for r in results] == list(range(len(frames)))
    for r, m in zip(results, ref, strict=True):
        assert r.saliency.dtype == np.float32 and r.saliency.shape == OUT_HW
        np.testing.assert_allclose(r.saliency, m, rtol=0, atol=1e-7)


@pytest.mark.parametrize("radius, lookahead, chunk, n", [(2, 3, 1, 9), (1, 0, 1, 4), (3, 5, 2, 13), (2, 2, 3, 1),
                                                         (0, 1, 4, 7), (2, 8, 1, 5), (1, 4, 3, 2)])  # fmt: skip
@pytest.mark.parametrize("windows", [None, "exact"])
def test_single_stream_equals_the_definition(radius, lookahead, chunk, n, windows):
    backend = ToyBackend(radius, (lookahead + 1,) if windows else None)
    proc = StreamProcessor(backend, lookahead, chunk)
    frames = clip(n, (9, 23), seed=n)
    got = []
    for i, f in enumerate(frames):
        got += proc.push(f, payload=("p", i))
        chunks = max(0, i + 1 - proc.delay_frames + chunk - 1) // chunk  # a chunk's maps: L + T + C - 1 frames late
        assert len(got) == min(chunks * chunk, i + 1)
    got += proc.finish()
    assert_maps(got, frames, radius, lookahead, chunk)
    assert [r.payload for r in got] == [("p", i) for i in range(n)]
    assert all(r.source_hw == (9, 23) and r.stream_id == 0 for r in got)


@pytest.mark.parametrize("seed", range(12))
def test_many_streams_in_random_interleavings_equal_the_definition(seed):
    rng = random.Random(seed)
    radius, lookahead, chunk = rng.choice([(2, 3, 1), (1, 2, 2), (2, 0, 1), (3, 4, 3)])
    backend = ToyBackend(radius, rng.choice([None, (lookahead + 1,), (lookahead + 1, 2)]))
    sched = MultiStreamScheduler(backend, lookahead, chunk, max_batch=rng.choice([None, 1, 2, 3]))
    clips = {}
    for k in range(rng.randint(2, 5)):
        hw = (rng.randint(5, 30), rng.randint(5, 30))  # other sizes and aspects than the model's 12x20
        clips[f"s{k}"] = clip(rng.randint(0, 11), hw, seed=100 * seed + k)
    pending = {sid: list(frames) for sid, frames in clips.items()}
    opened, results = set(), {sid: [] for sid in clips}
    while pending or sched.has_work():
        for sid in list(pending):
            if sid not in opened and rng.random() < 0.5:
                assert sched.open_stream(sid) == sid
                opened.add(sid)
            elif sid in opened:
                for _ in range(rng.randint(0, 2)):
                    if pending[sid]:
                        sched.push(sid, pending[sid].pop(0))
                if not pending[sid] and rng.random() < 0.7:
                    sched.finish(sid)
                    del pending[sid]
        for r in sched.run():
            results[r.stream_id].append(r)
    assert sched.streams == []  # every finished stream was flushed and dropped
    for sid, frames in clips.items():
        assert_maps(results[sid], frames, radius, lookahead, chunk)


def test_one_call_per_stage_per_round_and_max_batch_splits():
    backend = ToyBackend(2, (4,))
    sched = MultiStreamScheduler(backend, 3, max_batch=2)
    ids = [sched.open_stream() for _ in range(3)]
    assert ids == [0, 1, 2]
    for t in range(8):
        for sid in ids:
            sched.push(sid, clip(1, (12, 20), seed=10 * t + sid)[0])
        backend.calls.clear()
        got = sched.run()
        stages = [s for s, _ in backend.calls]
        if t >= 5:  # steady state (L + T = 5): every stage once per batch of at most 2 streams
            assert backend.calls == [("encode", 2), ("encode", 1), ("align", 2), ("fwd", 2), ("align", 1), ("fwd", 1),
                                     ("bwd_window", 2), ("bwd_window", 1), ("decode", 2), ("decode", 1)]
            assert [r.stream_id for r in got] == ids and {r.index for r in got} == {t - 5}
        else:
            assert "decode" not in stages and not got


def test_state_stays_bounded_and_streams_leave():
    radius, lookahead, chunk = 2, 3, 2
    backend = ToyBackend(radius)
    sched = MultiStreamScheduler(backend, lookahead, chunk, max_streams=2)
    a, b = sched.open_stream("a"), sched.open_stream("b")
    with pytest.raises(TooManyStreams, match="max_streams=2"):
        sched.open_stream("c")
    with pytest.raises(ValueError, match="already open"):
        sched.open_stream("a")
    for t in range(30):
        sched.push(a, clip(1, (7, 9), seed=t)[0])
        sched.run()
        sizes = sched.stream(a).cache_sizes()
        assert sizes["entries"] <= 2 * radius + 1 and sizes["xb"] <= lookahead + chunk
        assert sizes["hf"] <= lookahead + chunk + radius and sizes["frames"] <= lookahead + radius + chunk
        assert sched.stream_memory(a) == 0  # toy arrays are floats: nothing counts, nothing queued
    sched.close(b)
    assert sched.streams == [a] and sched.has_work() is False
    sched.finish(a)
    assert sched.has_work()
    with pytest.raises(ValueError, match="is finishing"):
        sched.push(a, clip(1, (7, 9), seed=0)[0])
    flushed = sched.run()
    assert [r.index for r in flushed] == list(range(30 - lookahead - radius - 1, 30))
    assert sched.streams == [] and not sched.has_work()
    with pytest.raises(KeyError, match="no open stream 'a'"):
        sched.push(a, clip(1, (7, 9), seed=0)[0])


def test_stage_timer_reports_milliseconds_per_stage_and_in_total(monkeypatch):
    import esan.runtime.core.stream_state as ss

    clock = iter([10.5, 10.75, 11.0, 11.002, 12.0])  # encode in/out, align in/out, as_ms
    monkeypatch.setattr(ss.time, "perf_counter", lambda: next(clock))
    timer = ss.StageTimer(start=10.0)
    with timer.stage("encode"):
        pass
    with timer.stage("align"):
        pass
    ms = timer.as_ms()
    assert ms["encode"] == pytest.approx(250.0) and ms["align"] == pytest.approx(2.0)
    assert ms["total"] == pytest.approx(2000.0) and ms["decode"] == 0.0
    assert set(ms) == {*ss.STAGES, "total"}


def test_stream_memory_counts_every_cached_array_and_queued_frame():
    from esan.runtime.core.stream_state import StreamState

    s = StreamState("s", (np.zeros(3, np.float32), np.zeros(5, np.float32)))  # 12 + 20 bytes
    s.entries = {0: {"a": np.zeros(7, np.uint8), "b": np.zeros(2, np.float64)}, 1: {"a": np.zeros(1, np.uint8)}}
    s.xb = {0: np.zeros(4, np.float32)}
    s.hf = {0: np.zeros(6, np.int16)}
    s.queue.append((np.zeros((2, 3, 3), np.uint8), None))
    assert s.memory_bytes() == 12 + 20 + 7 + 16 + 1 + 16 + 12 + 18
    assert s.cache_sizes() == {"entries": 2, "xb": 1, "hf": 1, "frames": 0}
    assert s.finishing is False and not s.final and not s.done


def test_result_to_source_is_the_picture_resized_onto_the_frame():
    from esan.runtime.core.letterbox import Box, unletterbox
    from esan.runtime.core.stream_state import StreamResult

    sal = np.arange(6 * 10, dtype=np.float32).reshape(6, 10) / 60
    box = Box(1, 2, 4, 7)
    got = StreamResult(0, sal, box, {}, source_hw=(9, 13)).to_source()
    assert got.shape == (9, 13) and got.dtype == np.float32
    np.testing.assert_array_equal(got, unletterbox(sal, box, (9, 13)))
    assert got.min() >= sal[1:5, 2:9].min() - 1e-6 and got.max() <= sal[1:5, 2:9].max() + 1e-6  # only the picture


class ShortBackend(ToyBackend):
    """Returns one item too few from one stage: a broken backend the scheduler must refuse, not paper over."""

    def __init__(self, stage: str) -> None:
        super().__init__(2, (4,) if stage == "backward_window_batch" else None)
        self.stage = stage

    def _short(self, name, out):
        return out[:-1] if name == self.stage else out

    def encode_batch(self, frames, valid):
        return self._short("encode_batch", super().encode_batch(frames, valid))

    def align_batch(self, windows, refs):
        return self._short("align_batch", super().align_batch(windows, refs))

    def step_batch(self, direction, xs, hs, cs):
        return self._short(f"step_{direction}", super().step_batch(direction, xs, hs, cs))

    def backward_window_batch(self, xss):
        out = super().backward_window_batch(xss)
        return None if out is None else self._short("backward_window_batch", out)

    def decode_batch(self, hfs, hbs):
        return self._short("decode_batch", super().decode_batch(hfs, hbs))


@pytest.mark.parametrize("stage", ["encode_batch", "align_batch", "step_fwd", "step_bwd", "backward_window_batch",
                                   "decode_batch"])  # fmt: skip
def test_a_backend_returning_too_few_items_is_an_error(stage):
    sched = MultiStreamScheduler(ShortBackend(stage), 3)
    ids = [sched.open_stream(), sched.open_stream()]
    with pytest.raises(ValueError, match="zip"):
        for t in range(12):
            for sid in ids:
                sched.push(sid, clip(1, (12, 20), seed=t)[0])
            sched.run()


def test_frame_checks_and_their_messages():
    from esan.runtime.core.scheduler import check_frame

    check_frame(np.zeros((1, 1, 3), np.uint8))  # the smallest usable frame
    with pytest.raises(ValueError) as err:
        check_frame(np.zeros((5, 0, 3), np.uint8))
    assert str(err.value) == "frame is empty (0x5); give frames of at least 1x1 pixels"
    sched = MultiStreamScheduler(ToyBackend(), 1, max_streams=1)
    sched.open_stream()
    with pytest.raises(TooManyStreams) as err:
        sched.open_stream()
    assert str(err.value) == ("1 streams are already open (max_streams=1): finish one first or allow more streams")


def test_results_carry_the_round_timings():
    proc = StreamProcessor(ToyBackend(1), 0)
    got = proc.push(clip(1, (12, 20), seed=0)[0]) + proc.push(clip(1, (12, 20), seed=1)[0]) + proc.finish()
    assert got and all(set(r.timings_ms) >= {"encode", "align", "decode", "total"} for r in got)
    assert all(r.timings_ms["total"] >= r.timings_ms["encode"] >= 0 for r in got)


@pytest.mark.parametrize("windows", [None, (2,)])  # no unrolled window for L + 1 = 4: every group steps the cell
def test_streams_ending_at_different_times_with_one_stream_per_call(windows):
    """Whole windows in several groups of one round fall back to stepping, beside the tails of finishing streams."""
    radius, lookahead = 1, 3
    sched = MultiStreamScheduler(ToyBackend(radius, windows), lookahead, max_batch=1)
    clips = {sid: clip(n, (10 + n, 20), seed=n) for sid, n in (("a", 6), ("b", 9), ("c", 12))}
    for sid in clips:
        sched.open_stream(sid)
    results = {sid: [] for sid in clips}
    for t in range(12):
        for sid, frames in clips.items():
            if t < len(frames):
                sched.push(sid, frames[t])
            if t == len(frames) - 1:
                sched.finish(sid)
        for r in sched.run():
            results[r.stream_id].append(r)
    while sched.has_work():
        for r in sched.run():
            results[r.stream_id].append(r)
    for sid, frames in clips.items():
        assert_maps(results[sid], frames, radius, lookahead, 1)
