"""``export/to_trt.py`` without TensorRT: the ONNX bundle is written, then a clear non-zero exit."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

no_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")


def _to_trt(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "export" / "to_trt.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@no_tensorrt
def test_to_trt_without_tensorrt(tiny_checkpoint, tmp_path):
    out = tmp_path / "trt_bundle"
    proc = _to_trt(str(tiny_checkpoint), "--out", str(out), "--lookahead", "1", "--precision", "fp16")
    assert proc.returncode == 3, proc.stderr
    err_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(err_lines) == 1 and "TensorRT" in err_lines[0] and "pip install 'esan-rt[trt]'" in err_lines[0]
    from esan.runtime.core.bundle import load_bundle

    bundle = load_bundle(out)
    assert bundle.precision == "fp16" and bundle.lookahead == 1 and bundle.engines is None
    again = _to_trt(str(tiny_checkpoint), "--out", str(out), "--lookahead", "1", "--precision", "fp16")
    assert again.returncode == 3 and "using the existing ONNX bundle" in again.stdout


class _FakeTrt:
    """Just enough of the TensorRT Python API to drive ``build_engines`` without a GPU."""

    __version__ = "10.9.0.34"
    calls: list = []

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 5

    class BuilderFlag:
        FP16, TF32 = 0, 7

    class MemoryPoolType:
        WORKSPACE = 0

    class _Cache:
        def serialize(self):
            return b"timing-cache"

    class _Config:
        def set_memory_pool_limit(self, pool, size):
            _FakeTrt.calls.append(("workspace", size))

        def set_flag(self, flag):
            _FakeTrt.calls.append(("set_flag", flag))

        def clear_flag(self, flag):
            _FakeTrt.calls.append(("clear_flag", flag))

        def create_timing_cache(self, data):
            return _FakeTrt._Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            pass

        def get_timing_cache(self):
            return _FakeTrt._Cache()

        def add_optimization_profile(self, profile):
            _FakeTrt.calls.append(("profile", profile.shapes))
            return 0

    class _Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            _FakeTrt.calls.append(("network_flags", flags))
            return object()

        def create_builder_config(self):
            return _FakeTrt._Config()

        def create_optimization_profile(self):
            return _FakeTrt._Profile()

        def build_serialized_network(self, network, config):
            return b"fake-plan"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            _FakeTrt.calls.append(("parse", Path(path).name))
            return True

    @staticmethod
    def init_libnvinfer_plugins(logger, namespace):
        return True


def test_build_engines_with_a_fake_tensorrt(tiny_bundle, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import shutil

    from esan.export import to_trt, trt_build
    from esan.runtime.core.bundle import check_compatible, load_bundle

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    monkeypatch.setattr(trt_build, "import_tensorrt", lambda: _FakeTrt)
    monkeypatch.setattr(trt_build, "gpu_info", lambda: ("NVIDIA Fake", "9.0"))
    _FakeTrt.calls.clear()
    argv = [str(tiny_checkpoint), "--out", str(out), "--precision", "fp32", "--lookahead", "2", "--workspace", "64",
            "--max-streams", "3"]
    assert to_trt.main(argv) == 0, capsys.readouterr().err
    assert "using the existing ONNX bundle" in capsys.readouterr().out
    bundle = load_bundle(out)
    assert bundle.engines is not None and bundle.engines.gpu == "NVIDIA Fake"
    assert check_compatible(bundle, "trt", 2, tensorrt_version="10.9.0.34", compute_capability="9.0")
    assert bundle.engine_path("decoder").read_bytes() == b"fake-plan"
    assert ("network_flags", 1 << 5) in _FakeTrt.calls and ("clear_flag", 7) in _FakeTrt.calls
    assert ("workspace", 64 << 20) in _FakeTrt.calls
    assert [c[1] for c in _FakeTrt.calls if c[0] == "parse"] == [f"{g}.onnx" for g in bundle.graphs]
    assert (tmp_path / "bundle.timing-cache").read_bytes() == b"timing-cache"
    # dynamic batch: one profile per graph, 1 .. 3 streams (the window inputs: K = 5 rows per stream)
    profiles = [c[1] for c in _FakeTrt.calls if c[0] == "profile"]
    assert len(profiles) == len(bundle.graphs) and bundle.engines.max_batch == 3
    assert profiles[0]["frame"] == ((1, 64, 96, 3), (3, 64, 96, 3), (3, 64, 96, 3))
    assert profiles[1]["win_f1"] == ((5, 16, 8, 12), (15, 16, 8, 12), (15, 16, 8, 12))
    assert profiles[4]["xs"] == ((3, 64, 8, 12), (9, 64, 8, 12), (9, 64, 8, 12))  # L + 1 = 3 rows per stream


def test_profile_shapes_of_a_static_bundle_are_its_shapes():
    from esan.export.trt_profiles import profile_shapes

    static = [{"name": "x", "shape": [5, 16, 8, 12], "dtype": "float32"}]
    assert profile_shapes(static, 8) == {"x": ((5, 16, 8, 12),) * 3}
    with pytest.raises(ValueError, match="max_streams"):
        profile_shapes(static, 0)
