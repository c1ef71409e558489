"""StreamProcessor: streamed maps equal ``ESAN.forward`` (docs/design.md section 2) on every CPU backend.

Frames are 50x120 (wider than the tiny model's 64x96), so letterboxing pads and the valid mask
matters; the reference clip is built with ``esan.runtime.core.letterbox.preprocess``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BUNDLE_LOOKAHEAD, make_clip, reference_maps

from esan.runtime.core.backend_api import Backend
from esan.runtime.core.letterbox import map_box
from esan.runtime.core.processor import STAGES, StreamProcessor, StreamResult

TOL = 1e-4
T = 2  # tiny preset radius


class Counting(Backend):
    """Delegates to a real backend and counts the items (frames, windows, steps) of its stage calls."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner.config, device=inner.device, precision=inner.precision)
        self.inner = inner
        self.calls = {"encode": 0, "align": 0, "fwd": 0, "bwd": 0, "window": 0, "decode": 0}

    def encode_batch(self, frames, valid):
        self.calls["encode"] += len(frames)
        return self.inner.encode_batch(frames, valid)

    def align_batch(self, windows, refs):
        assert all(len(w) == 2 * T + 1 for w in windows)
        self.calls["align"] += len(windows)
        return self.inner.align_batch(windows, refs)

    def step_batch(self, direction, xs, hs, cs):
        self.calls[direction] += len(xs)
        return self.inner.step_batch(direction, xs, hs, cs)

    def zero_state(self):
        return self.inner.zero_state()

    def backward_window_batch(self, xss):
        hb = self.inner.backward_window_batch(xss)
        self.calls["window"] += 0 if hb is None else len(xss)
        return hb

    def decode_batch(self, hfs, hbs):
        self.calls["decode"] += len(hfs)
        return self.inner.decode_batch(hfs, hbs)


def stream(proc: StreamProcessor, frames, payloads=None) -> tuple[list[StreamResult], list[int]]:
    """Push every frame, then finish; returns all results and how many each push returned."""
    results, per_push = [], []
    for i, f in enumerate(frames):
        got = proc.push(f, payload=None if payloads is None else payloads[i])
        per_push.append(len(got))
        results += got
    return results + proc.finish(), per_push


def clip_lengths(lookahead: int) -> list[int]:
    """Shorter than the window, shorter than window + lookahead, and longer."""
    window = 2 * T + 1
    return [3, window + lookahead - 1, window + lookahead + 7]


@pytest.mark.parametrize("lookahead", [0, 2, 8])
def test_streamed_maps_equal_reference(backend, tiny_model, lookahead):
    for n in clip_lengths(lookahead):
        frames = make_clip(n, seed=n + lookahead)
        ref = reference_maps(tiny_model, frames, lookahead)
        proc = StreamProcessor(backend, lookahead)
        results, per_push = stream(proc, frames)
        assert [r.index for r in results] == list(range(n))
        got = np.stack([r.saliency for r in results])
        assert got.dtype == np.float32 and got.shape == (n, 32, 48)
        err = float(np.abs(got - ref).max())
        assert err <= TOL, f"{backend.name} L={lookahead} N={n}: max abs {err:.2e}"
        # steady state: push k returns output k - delay
        delay = proc.delay_frames
        assert delay == lookahead + T
        assert per_push == [int(k >= delay) for k in range(n)]


def test_lookahead_changes_maps(torch_backend, tiny_model):
    """Sanity: the test data is sensitive to L (so the tolerance above is meaningful)."""
    frames = make_clip(12, seed=3)
    diff = np.abs(reference_maps(tiny_model, frames, 0) - reference_maps(tiny_model, frames, 8)).max()
    assert diff > 100 * TOL


@pytest.mark.parametrize("chunk,lookahead", [(2, 0), (3, 2), (4, 1)])
def test_backward_chunks_equal_reference(backend, tiny_model, chunk, lookahead):
    for n in (4, 13):
        frames = make_clip(n, seed=n * chunk)
        ref = reference_maps(tiny_model, frames, lookahead, backward_chunk=chunk)
        proc = StreamProcessor(backend, lookahead, backward_chunk=chunk)
        assert proc.delay_frames == lookahead + T + chunk - 1
        results, per_push = stream(proc, frames)
        assert [r.index for r in results] == list(range(n))
        err = float(np.abs(np.stack([r.saliency for r in results]) - ref).max())
        assert err <= TOL, f"{backend.name} C={chunk} L={lookahead} N={n}: max abs {err:.2e}"
        # a chunk's results come out together, once its last frame's window is complete
        assert set(per_push) <= {0, chunk}
        assert sum(per_push) == (max(0, n - proc.delay_frames) + chunk - 1) // chunk * chunk


def test_mixed_frame_sizes(backend, tiny_model):
    """A stream may change frame size: each frame gets its own letterbox box."""
    sizes = [(50, 120), (90, 40), (64, 96), (33, 200), (50, 120), (120, 90), (48, 64)]
    frames = [make_clip(1, hw, seed=i)[0] for i, hw in enumerate(sizes)]
    ref = reference_maps(tiny_model, frames, 2)
    results, _ = stream(StreamProcessor(backend, 2), frames)
    assert np.abs(np.stack([r.saliency for r in results]) - ref).max() <= TOL
    for r, hw in zip(results, sizes, strict=True):
        assert r.box == map_box(hw, (64, 96), (32, 48))
        assert r.source_hw == hw
        assert r.to_source().shape == hw


def test_each_frame_encoded_and_aligned_once(backend):
    n, lookahead = 20, 2
    counting = Counting(backend)
    results, _ = stream(StreamProcessor(counting, lookahead), make_clip(n, seed=1))
    c = counting.calls
    assert (c["encode"], c["align"], c["fwd"], c["decode"]) == (n, n, n, n)
    full = n - lookahead  # outputs with a full L+1 backward window
    if backend.config.lookahead in (None, lookahead):  # unrolled bwd_window serves them
        assert c["window"] == full
        assert c["bwd"] == sum(n - u for u in range(full, n))
    else:
        assert c["window"] == 0
        assert c["bwd"] == sum(min(u + lookahead, n - 1) - u + 1 for u in range(n))
    assert len(results) == n


def test_ort_uses_unrolled_window_only_for_its_lookahead(ort_backend):
    assert ort_backend.config.lookahead == BUNDLE_LOOKAHEAD
    counting = Counting(ort_backend)
    stream(StreamProcessor(counting, 5), make_clip(10, seed=2))
    assert counting.calls["window"] == 0 and counting.calls["bwd"] > 0


def test_ring_buffer_stays_bounded(backend):
    lookahead, chunk = 8, 2
    proc = StreamProcessor(backend, lookahead, backward_chunk=chunk)
    frame = make_clip(1, (64, 96), seed=5)[0]
    emitted = 0
    for k in range(300):
        emitted += len(proc.push(frame, payload=k))
        sizes = proc.cache_sizes
        assert sizes["entries"] <= 2 * T + 1
        assert sizes["xb"] <= lookahead + chunk and sizes["hf"] <= lookahead + chunk
        assert sizes["frames"] <= proc.delay_frames + 1
    assert emitted >= 300 - proc.delay_frames
    assert len(proc.finish()) == 300 - emitted
    assert proc.cache_sizes == {"entries": 0, "xb": 0, "hf": 0, "frames": 0}


def test_payload_timings_and_reuse(torch_backend):
    frames = make_clip(9, seed=4)
    proc = StreamProcessor(torch_backend, 2)
    results, _ = stream(proc, frames, payloads=[f"p{i}" for i in range(9)])
    assert [r.payload for r in results] == [f"p{i}" for i in range(9)]
    for r in results:
        assert set(r.timings_ms) == {*STAGES, "total"}
        assert all(v >= 0 for v in r.timings_ms.values())
        assert r.timings_ms["total"] >= r.timings_ms["encode"]
        assert 0 < r.saliency.min() and r.saliency.max() < 1
    # finish() reset the processor: a second stream starts at 0 and gives the same maps
    again, _ = stream(proc, frames)
    assert [r.index for r in again] == list(range(9))
    assert all(np.array_equal(a.saliency, b.saliency) for a, b in zip(results, again, strict=True))
    # reset() mid-stream drops the stream without output
    proc.push(frames[0])
    proc.reset()
    assert proc.finish() == [] and proc.frames_pushed == 0
    assert proc.input_size == (64, 96) and proc.output_size == (32, 48)


def test_bad_arguments(torch_backend):
    with pytest.raises(ValueError, match="lookahead"):
        StreamProcessor(torch_backend, -1)
    with pytest.raises(ValueError, match="backward_chunk"):
        StreamProcessor(torch_backend, 2, backward_chunk=0)
    proc = StreamProcessor(torch_backend, 0)
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match="RGB uint8"):
            proc.push(bad)
    assert proc.frames_pushed == 0
