"""Backend factory errors, TensorRT backend checks that run without TensorRT, fp16, and a memory soak run."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from conftest import make_clip, reference_maps
from support.trt_fakes import FakeCudart, bundle_with_engines, fake_tensorrt_module, install_cudart

from esan.runtime.backends import open_backend
from esan.runtime.core.bundle import GRAPH_NAMES
from esan.runtime.core.errors import UserError
from esan.runtime.core.processor import StreamProcessor


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def fake_bundle(root: Path, *, dcn: str = "standard", engines: str | None = None, precision: str = "fp32") -> Path:
    """A manifest-valid bundle with placeholder graph files (and engines built with TensorRT ``engines``)."""
    root.mkdir(parents=True, exist_ok=True)
    spec = [{"name": "x", "shape": [1], "dtype": "float32"}]
    graphs, plans = {}, {}
    for g in GRAPH_NAMES:
        for suffix, table in ((".onnx", graphs), (".plan", plans)):
            if suffix == ".plan" and engines is None:
                continue
            (root / f"{g}{suffix}").write_bytes(g.encode())
            table[g] = {"file": f"{g}{suffix}", "sha256": hashlib.sha256(g.encode()).hexdigest()}
        graphs[g].update(inputs=spec, outputs=spec)
    manifest = {
        "format": "esan-rt-bundle", "format_version": 1, "config": {}, "input_size": [64, 96],
        "output_size": [32, 48], "radius": 2, "lookahead": 2, "precision": precision, "dcn": dcn,
        "graphs": graphs,
    }  # fmt: skip
    if engines is not None:
        manifest["engines"] = {"tensorrt_version": engines, "gpu": "NVIDIA H100", "compute_capability": "9.0",
                               "files": plans}  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def fake_tensorrt(monkeypatch):
    """Pretend TensorRT 10.13.0 is installed (only its version is read before the checks fail)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0"
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


# -- factory -------------------------------------------------------------------------------------
def test_factory_argument_errors(tmp_path):
    with pytest.raises(UserError, match="unknown backend"):
        open_backend("tflite")
    with pytest.raises(UserError, match="checkpoint"):
        open_backend("torch")
    with pytest.raises(UserError, match="needs a bundle directory"):
        open_backend("ort")
    with pytest.raises(UserError, match="lookahead"):
        open_backend("ort", bundle_dir=fake_bundle(tmp_path / "neg"), lookahead=-1)
    with pytest.raises(UserError, match="esan-rt export") as exc:
        open_backend("ort", bundle_dir=tmp_path / "missing")
    one_line(exc)
    with pytest.raises(UserError, match="does not exist"):
        open_backend("torch", checkpoint=tmp_path / "missing.pt")


def test_precision_mismatch(tmp_path):
    bundle = fake_bundle(tmp_path / "b", precision="fp16")
    with pytest.raises(UserError, match="--precision fp16") as exc:
        open_backend("ort", bundle_dir=bundle, precision="fp32")
    one_line(exc)


def test_plugin_bundle_on_ort_cpu(tmp_path):
    if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the TensorRT EP, which can run plugin bundles")
    with pytest.raises(UserError, match="plugin") as exc:
        open_backend("ort", bundle_dir=fake_bundle(tmp_path / "b", dcn="plugin"))
    assert "--dcn standard" in one_line(exc)


def test_ort_cuda_without_onnxruntime_gpu(tiny_bundle):
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(UserError, match="onnxruntime-gpu") as exc:
        open_backend("ort", bundle_dir=tiny_bundle, device="cuda")
    one_line(exc)


def test_torch_cuda_without_gpu(tiny_checkpoint):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(UserError, match="CUDA"):
        open_backend("torch", checkpoint=tiny_checkpoint, device="cuda")


# -- TensorRT backend (runs here without TensorRT) ------------------------------------------------
def test_trt_without_tensorrt(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails even where TensorRT exists
    with pytest.raises(UserError, match="TensorRT") as exc:
        open_backend("trt", bundle_dir=fake_bundle(tmp_path / "b", engines="10.13.0"), device="cuda")
    assert "pip install" in one_line(exc)


def test_trt_bundle_without_engines(tmp_path, fake_tensorrt):
    with pytest.raises(UserError, match="no TensorRT engines") as exc:
        open_backend("trt", bundle_dir=fake_bundle(tmp_path / "b"), device="cuda")
    assert "esan-rt export" in one_line(exc) and "--engines" in one_line(exc)


def test_trt_version_mismatch(tmp_path, fake_tensorrt):
    with pytest.raises(UserError, match="10.9.0") as exc:
        open_backend("trt", bundle_dir=fake_bundle(tmp_path / "b", engines="10.9.0"), device="cuda")
    msg = one_line(exc)
    assert "10.13.0" in msg and "esan-rt export" in msg and "--engines" in msg


def test_trt_without_cuda_python(tmp_path, fake_tensorrt, monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(UserError, match="cuda-python") as exc:
        open_backend("trt", bundle_dir=fake_bundle(tmp_path / "b", engines="10.13.0"), device="cuda")
    one_line(exc)


# -- precision -----------------------------------------------------------------------------------
def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def _stream_maps(backend, frames, lookahead) -> np.ndarray:
    proc = StreamProcessor(backend, lookahead)
    results = [r for f in frames for r in proc.push(f)] + proc.finish()
    return np.stack([r.saliency for r in results])


def _rel_l2(got: np.ndarray, ref: np.ndarray) -> float:
    """``||got - ref|| / ||ref||``: sees a wrong scale or offset, which the correlation ignores."""
    got, ref = got.astype(np.float64), ref.astype(np.float64)
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def test_torch_fp16_matches_fp32(tiny_checkpoint, tiny_model):
    backend = open_backend("torch", checkpoint=tiny_checkpoint, precision="fp16", threads=1)
    frames = make_clip(8, seed=11)
    try:
        got = _stream_maps(backend, frames, 2)
    except (RuntimeError, NotImplementedError) as exc:
        if "not implemented for 'Half'" not in str(exc):  # only a missing CPU half kernel is this torch's limit
            raise
        pytest.skip(f"this torch has no CPU fp16 kernel for an operator of the model: {exc}")
    assert backend.precision == "fp16" and got.dtype == np.float32
    ref = reference_maps(tiny_model, frames, 2)
    assert _corr(got, ref) >= 0.999
    assert _rel_l2(got, ref) <= 0.01
    assert np.abs(got - ref).max() < 0.02


@pytest.mark.slow
def test_ort_fp16_bundle_matches_fp32(tiny_bundle_fp16, tiny_model):
    backend = open_backend("ort", bundle_dir=tiny_bundle_fp16, precision="fp16", threads=1)
    assert backend.precision == "fp16"
    frames = make_clip(8, seed=12)
    got = _stream_maps(backend, frames, 2)
    ref = reference_maps(tiny_model, frames, 2)
    assert _corr(got, ref) >= 0.999
    assert _rel_l2(got, ref) <= 0.01


# -- soak ----------------------------------------------------------------------------------------
def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux) for RSS")
def test_soak_memory_flat(request):
    """2000 frames through one stream: every map comes out and resident memory stays flat after warm-up.

    Latency drift is timing, measured by ``benchmarks/soak_multistream.py``, not asserted here.
    """
    try:
        backend = request.getfixturevalue("ort_backend")
    except pytest.skip.Exception:
        backend = request.getfixturevalue("torch_backend")
    proc = StreamProcessor(backend, 2)
    frames = make_clip(16, (50, 120), seed=7)
    emitted, rss = 0, {}
    for k in range(2000):
        emitted += len(proc.push(frames[k % len(frames)], payload=k))
        if k + 1 in (200, 2000):
            rss[k + 1] = rss_mb()
    emitted += len(proc.finish())
    assert emitted == 2000
    growth = rss[2000] - rss[200]
    print(f"soak {backend.name}: RSS {rss[200]:.1f} -> {rss[2000]:.1f} MB (+{growth:.1f})")
    # generous (allocator noise is a few MB); keeping one float32 copy of each frame (72 KB) would add 130 MB
    assert growth < 64, f"resident memory grew by {growth:.1f} MB between frames 200 and 2000"


# -- TensorRT backend plumbing, with TensorRT and CUDA simulated on the CPU (tests/support/trt_fakes.py) ----------
def test_trt_backend_plumbing_exact(tiny_bundle, tiny_model, tmp_path, monkeypatch):
    """TrtBackend's buffers, pool, window stacking and bindings, exact vs ESAN.forward (simulated GPU)."""
    from esan.runtime.core.bundle import load_bundle

    root = bundle_with_engines(tiny_bundle, tmp_path / "bundle")
    cudart = FakeCudart()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt_module(load_bundle(root)))
    install_cudart(monkeypatch, cudart)

    backend = open_backend("trt", bundle_dir=root, device="cuda", lookahead=2)
    for lookahead, chunk, n in ((2, 1, 12), (1, 1, 4), (0, 3, 8)):
        frames = make_clip(n, seed=20 + n)
        proc = StreamProcessor(backend, lookahead, backward_chunk=chunk)
        results = []
        for k, f in enumerate(frames):
            results += proc.push(f)
            if k == 5:
                allocated = len(cudart.buffers)
        results += proc.finish()
        ref = reference_maps(tiny_model, frames, lookahead, backward_chunk=chunk)
        assert [r.index for r in results] == list(range(n))
        assert np.abs(np.stack([r.saliency for r in results]) - ref).max() <= 1e-4
    assert len(cudart.buffers) == allocated  # steady state: the pool recycles, nothing new is allocated
    backend.close()
    assert not cudart.buffers and cudart.streams_destroyed == 1
