"""Scheduler edges on a micro model (fast): max_batch splits every stage, the geometry cache's reset after 16
frame sizes, a stream opened and finished without frames, argument checks. Maps are compared with the same
scheduler unbatched (1e-5: fp32 rounding of other batch sizes); tests/core/test_scheduler.py covers the real
backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_clip

from esan.runtime.core.letterbox import map_box
from esan.runtime.core.scheduler import MultiStreamScheduler, TooManyStreams, check_frame

STAGES = ("encode_batch", "align_batch", "step_batch", "backward_window_batch", "decode_batch")


@pytest.fixture(scope="module")
def micro_backend(tmp_path_factory):
    from esan.runtime.backends import open_backend
    from esan.train.checkpoint import save
    from esan.train.config import ESANConfig
    from esan.train.model import ESAN

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = ESANConfig(input_size=(32, 64), vgg_widths=(4, 8, 8, 8, 8), nf=8, deform_groups=2, hidden=8)
    model = ESAN(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ckpt = save(tmp_path_factory.mktemp("micro") / "micro.pt", model)
    backend = open_backend("torch", checkpoint=ckpt, threads=1)
    yield backend
    backend.close()


def counting(backend, calls: list[tuple[str, int]]):
    """Record (stage, batch size) of every batched call on ``backend`` (the instance's methods wrapped)."""
    for name in STAGES:
        real = getattr(type(backend), name).__get__(backend)

        def wrapped(first, *rest, _real=real, _name=name):
            calls.append((_name, len(first) if _name != "step_batch" else len(rest[0])))
            return _real(first, *rest)

        setattr(backend, name, wrapped)
    return backend


def run_all(sched: MultiStreamScheduler, clips: list[list[np.ndarray]]) -> dict:
    sids = [sched.open_stream() for _ in clips]
    got = {sid: {} for sid in sids}
    for t in range(max(map(len, clips))):
        for sid, clip in zip(sids, clips, strict=True):
            if t < len(clip):
                sched.push(sid, clip[t])
        for r in sched.run():
            got[r.stream_id][r.index] = r
    for sid in sids:
        sched.finish(sid)
    while sched.has_work():
        for r in sched.run():
            got[r.stream_id][r.index] = r
    assert sched.streams == []
    return got


@pytest.mark.parametrize(("lookahead", "chunk"), [(2, 1), (3, 2)])
def test_max_batch_splits_every_stage_and_changes_no_map(micro_backend, monkeypatch, lookahead, chunk):
    clips = [make_clip(n, hw, seed=n) for n, hw in ((7, (30, 70)), (5, (60, 40)), (6, (32, 64)), (4, (20, 90)),
                                                    (7, (45, 45)))]  # fmt: skip
    free = run_all(MultiStreamScheduler(micro_backend, lookahead, chunk), clips)
    calls: list[tuple[str, int]] = []
    counting(micro_backend, calls)
    capped = run_all(MultiStreamScheduler(micro_backend, lookahead, chunk, max_batch=2), clips)
    sizes = {name: [n for s, n in calls if s == name] for name in STAGES}
    for name in ("encode_batch", "align_batch", "step_batch", "decode_batch"):
        assert sizes[name] and max(sizes[name]) == 2, (name, sizes[name])  # used, split, and filled up to the cap
    assert all(n <= 2 for n in sizes["backward_window_batch"])
    for sid, maps in free.items():
        assert sorted(maps) == list(range(len(clips[sid]))) and sorted(capped[sid]) == sorted(maps)
        for u, r in maps.items():
            assert np.abs(r.saliency - capped[sid][u].saliency).max() <= 1e-5, (sid, u)  # batch size: fp32 rounding


def test_geometry_cache_is_reset_after_16_sizes_and_boxes_stay_right(micro_backend):
    sched = MultiStreamScheduler(micro_backend, 1)
    sid = sched.open_stream()
    sizes = [(20 + 3 * k, 90 - 2 * k) for k in range(20)]  # 20 aspect ratios: 20 different letterbox boxes
    rng = np.random.default_rng(0)
    results, cache = [], []
    for hw in sizes:
        sched.push(sid, rng.integers(0, 256, (*hw, 3), dtype=np.uint8), payload=hw)
        results += sched.run()
        cache.append(len(sched.stream(sid).geometry))
    assert cache == [*range(1, 17), 1, 2, 3, 4]  # grows to 16, then starts over
    sched.finish(sid)
    while sched.has_work():
        results += sched.run()
    assert [r.index for r in results] == list(range(20))
    for r in results:
        assert r.payload == r.source_hw == sizes[r.index]
        assert r.box == map_box(r.source_hw, (32, 64), (16, 32))


def test_stream_opened_and_finished_without_frames(micro_backend):
    sched = MultiStreamScheduler(micro_backend, 2)
    a = sched.open_stream()
    b = sched.open_stream()
    sched.push(b, make_clip(1)[0])
    sched.finish(a)
    assert sched.has_work()
    results = sched.run()
    assert all(r.stream_id == b for r in results) and a not in sched.streams and b in sched.streams
    sched.finish(b)
    while sched.has_work():
        results += sched.run()
    assert [r.index for r in results] == [0] and sched.streams == []


def test_arguments_and_stream_bookkeeping(micro_backend):
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="lookahead must be an integer >= 0"):
            MultiStreamScheduler(micro_backend, bad)
    for bad in (0, True, 2.0):
        with pytest.raises(ValueError, match="backward_chunk must be an integer >= 1"):
            MultiStreamScheduler(micro_backend, 1, bad)
    for name in ("max_streams", "max_batch"):
        for bad in (0, -2, True, 1.0):
            with pytest.raises(ValueError, match=f"{name} must be None or an integer >= 1"):
                MultiStreamScheduler(micro_backend, 1, **{name: bad})
    sched = MultiStreamScheduler(micro_backend, 2, 3, max_streams=2)
    assert sched.delay_frames == 2 + 2 + 2 and sched.input_size == (32, 64) and sched.output_size == (16, 32)
    assert sched.open_stream() == 0 and sched.open_stream("x") == "x"
    with pytest.raises(TooManyStreams, match=r"2 streams are already open \(max_streams=2\)"):
        sched.open_stream()
    sched.close("x")
    sched.close("x")  # closing twice is harmless
    assert sched.open_stream() == 2 and sched.streams == [0, 2]  # fresh ids are never reused
    dup = MultiStreamScheduler(micro_backend, 1)
    dup.open_stream(5)
    with pytest.raises(ValueError, match="stream 5 is already open"):
        dup.open_stream(5)
    with pytest.raises(KeyError, match="no open stream 'nope'"):
        sched.push("nope", make_clip(1)[0])
    sched.push(0, make_clip(1)[0])
    assert sched.stream_memory(0) > 0 and sched.has_work()
    sched.finish(0)
    with pytest.raises(ValueError, match="stream 0 is finishing"):
        sched.push(0, make_clip(1)[0])


@pytest.mark.parametrize(
    ("frame", "desc"),
    [(np.zeros((4, 5, 3), np.float32), "float32 [4, 5, 3]"), (np.zeros((4, 5), np.uint8), "uint8 [4, 5]"),
     (np.zeros((4, 5, 4), np.uint8), "uint8 [4, 5, 4]"), ([[1, 2, 3]], "list")],
)  # fmt: skip
def test_check_frame(frame, desc):
    with pytest.raises(ValueError, match=r"frame must be an RGB uint8 array \[h, w, 3\], got ") as info:
        check_frame(frame)
    assert str(info.value).endswith(desc)

