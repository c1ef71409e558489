"""TensorRT backend with dynamic-batch engines, TensorRT and CUDA simulated on the CPU.

The fake engines run the bundle's ONNX graphs with ONNX Runtime on host memory, with TensorRT's
dynamic-shape API (``-1`` dimensions, ``set_input_shape``, one optimisation profile); every execution is
recorded with its batch. Checked: the batched stages gather, run and scatter exactly (every stream's
maps equal its single-stream maps), one engine call serves several streams, calls are split at the
profile's maximum, and single-stream calls still run batch 1.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import types

import numpy as np
import pytest
from conftest import BUNDLE_LOOKAHEAD, make_clip
from support.trt_fakes import FakeCudart, fake_tensorrt_module

from esan.runtime.backends import open_backend
from esan.runtime.core.bundle import GRAPH_NAMES, load_bundle
from esan.runtime.core.processor import StreamProcessor
from esan.runtime.core.scheduler import MultiStreamScheduler


def dynamic_fake_tensorrt(bundle, max_batch: int, calls: list) -> types.ModuleType:
    """``tensorrt`` whose engines have a dynamic batch axis (profile 1 .. ``max_batch`` streams)."""
    return fake_tensorrt_module(bundle, max_batch=max_batch, calls=calls)


@pytest.fixture
def trt_sim(tiny_bundle, tmp_path, monkeypatch):
    """``open(max_batch)`` -> (TrtBackend over simulated dynamic engines, recorded calls, fake cudart)."""
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["batch"] == "dynamic"
    files = {}
    for g in GRAPH_NAMES:
        (root / f"{g}.plan").write_bytes(g.encode())
        files[g] = {"file": f"{g}.plan", "sha256": hashlib.sha256(g.encode()).hexdigest()}
    manifest["engines"] = {"tensorrt_version": "10.13.0", "gpu": "sim", "compute_capability": "9.0", "files": files}
    (root / "manifest.json").write_text(json.dumps(manifest))
    cudart = FakeCudart()
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    monkeypatch.setitem(sys.modules, "cuda.bindings", types.ModuleType("cuda.bindings"))
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    sys.modules["cuda.bindings"].runtime = cudart
    calls: list = []
    opened = []

    def _open(max_batch: int):
        monkeypatch.setitem(sys.modules, "tensorrt", dynamic_fake_tensorrt(load_bundle(root), max_batch, calls))
        backend = open_backend("trt", bundle_dir=root, device="cuda", lookahead=BUNDLE_LOOKAHEAD)
        opened.append(backend)
        return backend, calls, cudart

    yield _open
    for b in opened:
        b.close()


def _alone(backend, frames, lookahead):
    proc = StreamProcessor(backend, lookahead)
    return [r.saliency for f in frames for r in proc.push(f)] + [r.saliency for r in proc.finish()]


def test_batched_engine_calls_equal_single_stream(trt_sim):
    backend, calls, cudart = trt_sim(4)
    assert backend.max_batch == 4
    clips = [make_clip(n, hw, seed=30 + i) for i, (n, hw) in enumerate([(7, (50, 120)), (5, (90, 60)), (9, (64, 96))])]
    calls.clear()
    expected = [_alone(backend, c, BUNDLE_LOOKAHEAD) for c in clips]
    assert {b for _, b in calls} == {1}, "a single stream runs batch 1 on the dynamic engines"
    calls.clear()
    sched = MultiStreamScheduler(backend, BUNDLE_LOOKAHEAD)
    got: dict[int, dict[int, np.ndarray]] = {i: {} for i in range(len(clips))}
    for i in range(len(clips)):
        sched.open_stream(i)
    for k in range(max(len(c) for c in clips)):
        for i, c in enumerate(clips):
            if k < len(c):
                sched.push(i, c[k])
            if k == len(c) - 1:
                sched.finish(i)
        while sched.has_work():
            for r in sched.run():
                got[r.stream_id][r.index] = r.saliency
    for i, exp in enumerate(expected):
        assert sorted(got[i]) == list(range(len(exp)))
        assert max(float(np.abs(got[i][k] - exp[k]).max()) for k in got[i]) <= 1e-4, f"stream {i}"
    batches = {g: sorted({b for name, b in calls if name == g}) for g in GRAPH_NAMES}
    for g in ("encoder", "aligner", "cell_fwd", "bwd_window", "decoder"):
        assert 3 in batches[g], (g, batches[g])  # one engine call served all three streams


def test_calls_split_at_the_profile_maximum(trt_sim):
    backend, calls, _ = trt_sim(2)
    assert backend.max_batch == 2
    frames = make_clip(5, (64, 96), seed=8)
    calls.clear()
    entries = backend.encode_batch(np.stack(frames), np.ones((5, 64, 96, 1), np.uint8))
    assert [b for g, b in calls if g == "encoder"] == [2, 2, 1]
    single = [backend.encode_batch(f[None], np.ones((1, 64, 96, 1), np.uint8))[0] for f in frames]
    for got, exp in zip(entries, single, strict=True):
        assert set(got) == set(exp)
        for name in got:
            assert got[name].shape == exp[name].shape
            a = np.empty(got[name].shape, got[name].dtype)
            b = np.empty_like(a)
            backend.cuda.copy(a.ctypes.data, got[name].ptr, a.nbytes, "DeviceToHost")
            backend.cuda.copy(b.ctypes.data, exp[name].ptr, b.nbytes, "DeviceToHost")
            assert np.array_equal(a, b), name
