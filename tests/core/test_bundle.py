"""Bundle manifest validation and compatibility rules (esan.runtime.core.bundle), on synthetic bundles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from esan.runtime.core.bundle import GRAPH_NAMES, check_compatible, load_bundle, sha256_file
from esan.runtime.core.errors import UserError

CONFIG = {"input_size": [64, 96], "radius": 2, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def make_bundle(root: Path, dcn: str = "standard", lookahead: int = 2, engines: bool = False) -> Path:
    """A bundle whose graph files are placeholders (the manifest is what is under test)."""
    root.mkdir(parents=True)
    graphs = {}
    for name in GRAPH_NAMES:
        (root / f"{name}.onnx").write_bytes(f"fake {name}".encode())
        graphs[name] = {
            "file": f"{name}.onnx",
            "sha256": sha256_file(root / f"{name}.onnx"),
            "inputs": [{"name": "x", "shape": [1, 64, 8, 12], "dtype": "float32"}],
            "outputs": [{"name": "y", "shape": [1, 16, 8, 12], "dtype": "float32"}],
        }
    man = {
        "format": "esan-rt-bundle", "format_version": 1, "config": CONFIG, "input_size": [64, 96],
        "output_size": [32, 48], "radius": 2, "lookahead": lookahead, "precision": "fp32", "fp32_parts": [],
        "dcn": dcn, "plugin": None, "opset": 19, "graphs": graphs, "checks": {},
        "normalization": {"mean": CONFIG["mean"], "std": CONFIG["std"], "in_graph": True},
        "source_checkpoint": {"path": "/ckpts/tiny.pt", "sha256": "0" * 64},
    }  # fmt: skip
    if engines:
        files = {}
        for name in GRAPH_NAMES:
            (root / f"{name}.plan").write_bytes(b"plan")
            files[name] = {"file": f"{name}.plan", "sha256": sha256_file(root / f"{name}.plan")}
        built = {"tensorrt_version": "10.9.0", "gpu": "NVIDIA H100", "compute_capability": "9.0"}
        man["engines"] = {**built, "files": files}
    (root / "manifest.json").write_text(json.dumps(man))
    return root


def edit_manifest(root: Path, **changes) -> None:
    man = json.loads((root / "manifest.json").read_text())
    man.update(changes)
    (root / "manifest.json").write_text(json.dumps(man))


def test_valid_bundle_loads(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b"))
    assert b.lookahead == 2 and b.radius == 2 and b.window == 5 and b.input_size == (64, 96)
    assert set(b.graphs) == set(GRAPH_NAMES) and b.engines is None
    assert b.graph_path("encoder") == tmp_path / "b" / "encoder.onnx"
    assert b.graphs["decoder"].outputs[0].shape == (1, 16, 8, 12)


def test_missing_file_says_how_to_rebuild(tmp_path):
    root = make_bundle(tmp_path / "b")
    (root / "aligner.onnx").unlink()
    rebuild = r"esan-rt export CKPT --out .* --lookahead"
    with pytest.raises(UserError, match=r"aligner\.onnx is missing.*" + rebuild):
        load_bundle(root)


def test_hash_mismatch(tmp_path):
    root = make_bundle(tmp_path / "b")
    (root / "decoder.onnx").write_bytes(b"tampered")
    with pytest.raises(UserError, match="does not match its sha256"):
        load_bundle(root)
    assert load_bundle(root, verify_hashes=False).precision == "fp32"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "something-else"}, "not an esan-rt-bundle manifest"),
        ({"format_version": 99}, "upgrade esan-rt or re-export"),
        ({"precision": "int4"}, "unknown precision"),
        ({"graphs": {}}, "missing from manifest.json"),
    ],
)
def test_wrong_format(tmp_path, changes, message):
    root = make_bundle(tmp_path / "b")
    edit_manifest(root, **changes)
    with pytest.raises(UserError, match=message):
        load_bundle(root)


def _with_shapes(root: Path, batch, in_shape, out_shape) -> None:
    man = json.loads((root / "manifest.json").read_text())
    for g in man["graphs"].values():
        g["inputs"][0]["shape"], g["outputs"][0]["shape"] = in_shape, out_shape
    man.update(format_version=2, batch=batch)
    (root / "manifest.json").write_text(json.dumps(man))


def test_dynamic_batch_shapes(tmp_path):
    root = make_bundle(tmp_path / "b")
    _with_shapes(root, "dynamic", ["5*batch", 16, 8, 12], ["batch", 64, 8, 12])
    b = load_bundle(root)
    assert b.batch == "dynamic"
    x, y = b.graphs["aligner"].inputs[0], b.graphs["aligner"].outputs[0]
    assert x.shape == ("5*batch", 16, 8, 12) and x.rows == 5 and x.dynamic and x.at_batch(3) == (15, 16, 8, 12)
    assert y.rows == 1 and y.at_batch(1) == (1, 64, 8, 12)
    old = load_bundle(make_bundle(tmp_path / "old"))
    assert old.batch == 1 and not old.graphs["encoder"].inputs[0].dynamic
    assert old.graphs["encoder"].inputs[0].at_batch(4) == (1, 64, 8, 12)  # static: one stream per call


@pytest.mark.parametrize(
    ("batch", "in_shape", "message"),
    [
        ("dynamic", [1, 64, 8, 12], "manifest says batch dynamic"),  # a static tensor in a dynamic bundle
        (1, ["batch", 64, 8, 12], "manifest says batch 1"),  # symbolic dims without "batch": "dynamic"
        ("dynamic", ["n*batch", 64, 8, 12], "malformed tensor entry"),
        ("dynamic", ["batch", "h", 8, 12], "malformed tensor entry"),  # only dimension 0 may be symbolic
        ("maybe", ["batch", 64, 8, 12], "unknown batch 'maybe'"),
    ],
)
def test_bad_batch_shapes(tmp_path, batch, in_shape, message):
    root = make_bundle(tmp_path / "b")
    _with_shapes(root, batch, in_shape, ["batch", 16, 8, 12] if batch == "dynamic" else [1, 16, 8, 12])
    with pytest.raises(UserError, match=message):
        load_bundle(root)


def test_not_a_bundle(tmp_path):
    with pytest.raises(UserError, match="no manifest.json"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_bundle(tmp_path)


def test_lookahead_selects_window_or_steps(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b", lookahead=2))
    assert check_compatible(b, "ort", 2) is True
    assert check_compatible(b, "ort", 5) is False  # served by cell_bwd steps
    assert check_compatible(b, "torch", None) is False
    with pytest.raises(UserError, match=">= 0"):
        check_compatible(b, "ort", -1)


def test_plugin_bundle_refused_on_ort(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b", dcn="plugin"))
    with pytest.raises(UserError, match="--dcn standard"):
        check_compatible(b, "ort", 2)


def test_trt_needs_matching_engines(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b"))
    with pytest.raises(UserError, match=r"esan-rt export /ckpts/tiny\.pt --engines"):
        check_compatible(b, "trt", 2)
    with pytest.raises(UserError, match="no TensorRT engines"):
        b.engine_path("encoder")
    e = load_bundle(make_bundle(tmp_path / "e", engines=True))
    assert check_compatible(e, "trt", 2, tensorrt_version="10.9.0", compute_capability="9.0") is True
    assert e.engine_path("decoder").name == "decoder.plan"
    with pytest.raises(UserError, match="TensorRT 10.9.0"):
        check_compatible(e, "trt", 2, tensorrt_version="11.0.0")
    with pytest.raises(UserError, match="compute capability 9.0"):
        check_compatible(e, "trt", 2, compute_capability="8.6")
    (tmp_path / "e" / "cell_fwd.plan").write_bytes(b"other")
    with pytest.raises(UserError, match="cell_fwd.plan does not match"):
        load_bundle(tmp_path / "e")


def test_bundle_module_is_torch_free():
    code = "import sys, esan.runtime.core.bundle; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
