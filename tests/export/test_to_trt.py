"""``export/to_trt.py`` without TensorRT: the ONNX bundle is written, then a clear non-zero exit."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.trt_fakes import fake_build_tensorrt, install_build_tensorrt

REPO = Path(__file__).resolve().parents[2]

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


# -- engines through Polygraphy's loaders, TensorRT simulated (tests/support/trt_fakes.py) -----------------------
@pytest.fixture
def fake_build(tiny_bundle, tiny_checkpoint, tmp_path, monkeypatch):
    """``(bundle copy, run(*extra argv) -> rc, trt)``: to_trt.py on a simulated TensorRT 10.9 and GPU."""
    from esan.export import to_trt, trt_build
    from esan.runtime.backends.cuda_probe import GpuStatus

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    trt = fake_build_tensorrt()
    install_build_tensorrt(monkeypatch, trt)
    monkeypatch.setattr(trt_build, "gpu_info", lambda: GpuStatus(True, "NVIDIA Fake (sm 9.0)", "NVIDIA Fake", "9.0"))

    def run(*extra: str) -> int:
        return to_trt.main([str(tiny_checkpoint), "--out", str(out), "--precision", "fp32", "--lookahead", "2",
                            "--workspace", "64", *extra])  # fmt: skip

    return out, run, trt


def _plans(out: Path) -> dict[str, dict]:
    from esan.runtime.core.bundle import load_bundle

    bundle = load_bundle(out)
    return {g: json.loads(bundle.engine_path(g).read_bytes()) for g in bundle.graphs}


def test_engines_built_through_polygraphy(fake_build, capsys):
    from esan.runtime.core.bundle import check_compatible, load_bundle

    out, run, trt = fake_build
    assert run("--max-streams", "3") == 0, capsys.readouterr().err
    assert "using the existing ONNX bundle" in capsys.readouterr().out
    bundle = load_bundle(out)
    assert bundle.engines is not None and bundle.engines.gpu == "NVIDIA Fake" and bundle.engines.max_batch == 3
    assert check_compatible(bundle, "trt", 2, tensorrt_version="10.9.0.34", compute_capability="9.0")
    for g, plan in _plans(out).items():  # what Polygraphy's loaders asked TensorRT for, per graph
        spec = bundle.graphs[g]
        assert plan["graph"] == spec.file.name and plan["strongly_typed"] is True
        assert plan["fp16"] is False and plan["tf32"] is False and plan["workspace"] == 64 << 20
        # dynamic batch: one profile over 1 .. 3 streams (min = one stream's rows, opt = max = three streams')
        rows = {t.name: t.at_batch(1)[0] for t in spec.inputs}
        assert plan["profiles"] == [{t.name: [[rows[t.name], *t.shape[1:]]] + [[3 * rows[t.name], *t.shape[1:]]] * 2
                                     for t in spec.inputs}]  # fmt: skip
    assert _plans(out)["encoder"]["profiles"][0]["frame"] == [[1, 64, 96, 3], [3, 64, 96, 3], [3, 64, 96, 3]]
    assert _plans(out)["aligner"]["profiles"][0]["win_f1"][0][0] == 5  # K = 2T + 1 window rows per stream
    cache = json.loads((out.parent / "bundle.timing-cache").read_bytes())
    assert cache["entries"] == [bundle.graphs[g].file.name for g in bundle.graphs]  # one cache, shared
    assert len(trt.plugin_inits) >= 2 and all(lg is trt.plugin_inits[0] for lg in trt.plugin_inits)


@pytest.mark.parametrize("content", [b"from-another-gpu", b"not a timing cache"])
def test_timing_cache_from_another_gpu_is_not_reused(fake_build, capsys, content):
    from support.trt_fakes import FAKE_DEVICE

    out, run, _ = fake_build
    cache_file = out.parent / "bundle.timing-cache"
    if content == b"from-another-gpu":
        content = json.dumps({"device": "NVIDIA Other sm80", "entries": ["stale"]}).encode()
    cache_file.write_bytes(content)
    assert run() == 0
    printed = capsys.readouterr().out
    assert printed.count("was recorded on another GPU or TensorRT version") == 1
    cache = json.loads(cache_file.read_bytes())
    assert cache["device"] == FAKE_DEVICE and "stale" not in cache["entries"] and len(cache["entries"]) == 6
    assert _plans(out)["encoder"]["timing_cache_entries"] == ["encoder.onnx"]  # started afresh


def test_timing_cache_of_this_gpu_is_reused(fake_build, capsys):
    from support.trt_fakes import FAKE_DEVICE

    out, run, _ = fake_build
    cache_file = out.parent / "bundle.timing-cache"
    cache_file.write_bytes(json.dumps({"device": FAKE_DEVICE, "entries": ["earlier"]}).encode())
    assert run() == 0
    assert "timing cache" not in capsys.readouterr().out
    assert json.loads(cache_file.read_bytes())["entries"][:2] == ["earlier", "encoder.onnx"]


@pytest.mark.parametrize(("version", "strong", "fp16"), [("10.9.0.34", False, True), ("11.1.0.106", True, False)])
def test_fp16_precision_without_and_with_strong_typing(tiny_bundle, tmp_path, monkeypatch, version, strong, fp16):
    """No STRONGLY_TYPED flag on 10.x: the FP16 builder flag; 11.x: always strongly typed, no flag asked for."""
    from esan.export.trt_build import EngineBuilder
    from esan.runtime.core.bundle import load_bundle

    trt = fake_build_tensorrt(version, strongly_typed_flag=False)
    install_build_tensorrt(monkeypatch, trt)
    builder = EngineBuilder(trt, "fp16", 32, None)
    assert builder.strongly_typed is strong
    spec = load_bundle(tiny_bundle).graphs["decoder"]
    builder.build(spec.file, [{"name": t.name, "shape": t.shape} for t in spec.inputs], tmp_path / "d.plan")
    plan = json.loads((tmp_path / "d.plan").read_bytes())
    assert plan["fp16"] is fp16 and plan["strongly_typed"] is False and plan["tf32"] is False


@pytest.mark.parametrize(("version", "int8"), [("10.9.0.34", True), ("11.1.0.106", False)])
def test_int8_bundle_sets_the_int8_flag_only_without_strong_typing(tiny_bundle, tmp_path, monkeypatch, version, int8):
    """An int8 (Q/DQ) graph: weakly typed networks need the INT8 builder flag (no calibrator: explicit
    quantization); strongly typed ones take the precision from the Q/DQ nodes."""
    from esan.export.trt_build import EngineBuilder
    from esan.runtime.core.bundle import load_bundle

    trt = fake_build_tensorrt(version, strongly_typed_flag=False)
    install_build_tensorrt(monkeypatch, trt)
    builder = EngineBuilder(trt, "int8", 32, None)
    spec = load_bundle(tiny_bundle).graphs["decoder"]
    builder.build(spec.file, [{"name": t.name, "shape": t.shape} for t in spec.inputs], tmp_path / "d.plan")
    plan = json.loads((tmp_path / "d.plan").read_bytes())
    assert plan["int8"] is int8 and plan["fp16"] is False and plan["tf32"] is False


def test_build_failure_is_one_line_and_records_no_engines(fake_build, capsys, monkeypatch):
    from esan.runtime.core.bundle import load_bundle

    out, run, trt = fake_build
    monkeypatch.setattr(trt.OnnxParser, "parse_from_file", lambda self, path: False)
    assert run() == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("to_trt.py")]
    assert len(lines) == 1 and "could not build an engine for encoder.onnx" in lines[0]
    assert load_bundle(out).engines is None


def test_profile_shapes_of_a_static_bundle_are_its_shapes():
    from esan.export.trt_profiles import profile_shapes

    static = [{"name": "x", "shape": [5, 16, 8, 12]}]
    assert profile_shapes(static, 8) == {"x": ((5, 16, 8, 12),) * 3}
    with pytest.raises(ValueError, match="max_streams"):
        profile_shapes(static, 0)
