"""Every refusal of ``load_bundle`` is one ``UserError`` line that names the problem and how to rebuild."""

from __future__ import annotations

import json

import pytest
from test_bundle import edit_manifest, make_bundle  # noqa: E402  (tests/ is on sys.path: rootdir conftest)

from esan.runtime.core.bundle import GRAPH_NAMES, batch_rows, check_compatible, load_bundle, rebuild_command
from esan.runtime.core.errors import UserError


def _refused(root, match: str) -> str:
    with pytest.raises(UserError, match=match) as info:
        load_bundle(root)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"bundle {root}")
    return msg


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"graphs": [{"file": "encoder.onnx"}]}, "'graphs' in manifest.json must be an object.*not list"),
        ({"graphs": list(GRAPH_NAMES)}, "must be an object"),
        ({"dcn": "magic"}, "unknown dcn mode 'magic'"),
        ({"lookahead": -1}, "bad lookahead -1 or radius 2"),
        ({"radius": -2}, "bad lookahead 2 or radius -2"),
        ({"precision": "bf16"}, "unknown precision 'bf16'"),
        ({"format_version": 0}, "bad format_version 0"),
        ({"format_version": "2"}, "bad format_version '2'"),
        ({"input_size": [64]}, "misses or mangles a required field"),
        ({"lookahead": "two"}, "misses or mangles a required field"),
        ({"config": None}, "misses or mangles a required field"),
    ],
)
def test_bad_field_is_one_line(tmp_path, changes, message):
    root = make_bundle(tmp_path / "b")
    edit_manifest(root, **changes)
    msg = _refused(root, message)
    assert "esan-rt export" in msg


@pytest.mark.parametrize("field", ["precision", "dcn", "radius", "lookahead", "input_size", "output_size", "config"])
def test_missing_field(tmp_path, field):
    root = make_bundle(tmp_path / "b")
    man = json.loads((root / "manifest.json").read_text())
    del man[field]
    (root / "manifest.json").write_text(json.dumps(man))
    _refused(root, rf"misses or mangles a required field \(KeyError\('{field}'\)\)")


def test_manifest_that_is_not_an_object(tmp_path):
    root = make_bundle(tmp_path / "b")
    (root / "manifest.json").write_text("[1, 2]")
    _refused(root, r"not an esan-rt-bundle manifest \(format=None\)")


def test_not_a_directory(tmp_path):
    _refused(tmp_path / "nothing", "directory does not exist")


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("dtype", "int64", "graph aligner inputs: tensor x has unknown dtype 'int64'"),
        ("shape", "64x8", "graph aligner inputs has a malformed tensor entry"),
        ("name", None, None),
    ],
)
def test_bad_tensor_entry(tmp_path, where, value, message):
    root = make_bundle(tmp_path / "b")
    man = json.loads((root / "manifest.json").read_text())
    tensor = man["graphs"]["aligner"]["inputs"][0]
    if value is None:
        del tensor[where]
        message = "graph aligner inputs has a malformed tensor entry"
    else:
        tensor[where] = value
    (root / "manifest.json").write_text(json.dumps(man))
    _refused(root, message)


@pytest.mark.parametrize("value", [[], None, {"name": "x"}])
def test_tensor_list_must_be_a_non_empty_list(tmp_path, value):
    root = make_bundle(tmp_path / "b")
    man = json.loads((root / "manifest.json").read_text())
    man["graphs"]["decoder"]["outputs"] = value
    (root / "manifest.json").write_text(json.dumps(man))
    _refused(root, "graph decoder outputs must be a non-empty list")


@pytest.mark.parametrize("graph_entry", [{"file": "cell_bwd.onnx"}, "cell_bwd.onnx", {"sha256": "0" * 64}])
def test_graph_without_file_or_hash(tmp_path, graph_entry):
    root = make_bundle(tmp_path / "b")
    man = json.loads((root / "manifest.json").read_text())
    man["graphs"]["cell_bwd"] = graph_entry
    (root / "manifest.json").write_text(json.dumps(man))
    _refused(root, "graph cell_bwd has no file/sha256")


def test_missing_engine_file_and_malformed_engines(tmp_path):
    root = make_bundle(tmp_path / "b", engines=True)
    (root / "bwd_window.plan").unlink()
    msg = _refused(root, "engine for bwd_window is missing")
    assert "esan-rt export CKPT --engines" in msg
    root2 = make_bundle(tmp_path / "c", engines=True)
    man = json.loads((root2 / "manifest.json").read_text())
    del man["engines"]["files"]["decoder"]["file"]
    (root2 / "manifest.json").write_text(json.dumps(man))
    _refused(root2, "engine for decoder is missing")
    for bad in ([1, 2], {"files": ["encoder.plan"]}):
        edit_manifest(root2, engines=bad)
        _refused(root2, "'engines' in manifest.json is malformed")


def test_engine_fields_are_read(tmp_path):
    root = make_bundle(tmp_path / "b", engines=True)
    b = load_bundle(root)
    assert (b.engines.tensorrt_version, b.engines.gpu, b.engines.compute_capability) == ("10.9.0", "NVIDIA H100", "9.0")
    assert b.engines.max_batch == 1 and b.engines.files["cell_fwd"] == root / "cell_fwd.plan"
    man = json.loads((root / "manifest.json").read_text())
    man["engines"]["max_batch"] = 6
    (root / "manifest.json").write_text(json.dumps(man))
    assert load_bundle(root).engines.max_batch == 6
    edit_manifest(root, engines=None)
    assert load_bundle(root).engines is None


def test_optional_fields_and_defaults(tmp_path):
    root = make_bundle(tmp_path / "b")
    b = load_bundle(root)
    assert b.opset == 19 and b.output_size == (32, 48) and b.precision == "fp32" and b.dcn == "standard"
    assert b.normalization["in_graph"] is True and b.fp32_parts == () and b.checks == {}
    assert b.source_checkpoint["path"] == "/ckpts/tiny.pt" and b.manifest["format_version"] == 1
    assert b.config == json.loads((root / "manifest.json").read_text())["config"] and b.batch == 1
    assert b.graphs["encoder"].sha256 == json.loads((root / "manifest.json").read_text())["graphs"]["encoder"]["sha256"]
    man = json.loads((root / "manifest.json").read_text())
    for key in ("opset", "normalization", "fp32_parts", "checks", "source_checkpoint"):
        del man[key]
    man["fp32_parts"] = ["c"]
    (root / "manifest.json").write_text(json.dumps(man))
    b = load_bundle(root)
    assert b.opset == 0 and b.normalization == {} and b.checks == {} and b.fp32_parts == ("c",)
    assert "CKPT" in rebuild_command(b)


@pytest.mark.parametrize("backend", ["tflite", "cuda", ""])
def test_unknown_backend(tmp_path, backend):
    b = load_bundle(make_bundle(tmp_path / "b"))
    with pytest.raises(UserError, match=f"unknown backend '{backend}'; use ort, trt or torch"):
        check_compatible(b, backend, 2)


@pytest.mark.parametrize("name", ["ort", "ORT-CPU", "ort-cuda", "ort-gpu", "onnxruntime", "torch"])
def test_known_non_trt_backends_accept_a_standard_bundle(tmp_path, name):
    b = load_bundle(make_bundle(tmp_path / "b"))
    assert check_compatible(b, name, 2) is True and check_compatible(b, name, 0) is False


@pytest.mark.parametrize("name", ["onnxruntime", "ort-cuda", "ort-cpu", "ort-gpu"])
def test_every_ort_name_refuses_plugin_bundles(tmp_path, name):
    b = load_bundle(make_bundle(tmp_path / "b", dcn="plugin"))
    with pytest.raises(UserError, match="TensorRT DCN plugin"):
        check_compatible(b, name, 2)
    assert check_compatible(b, "torch", 2) is True


def test_trt_alias_and_version_match(tmp_path):
    e = load_bundle(make_bundle(tmp_path / "e", engines=True))
    assert check_compatible(e, "tensorrt", 3, tensorrt_version="10.9.0", compute_capability="9.0") is False
    assert check_compatible(e, "TRT", 2) is True


def test_rebuild_commands_carry_the_bundle_settings(tmp_path):
    b = load_bundle(make_bundle(tmp_path / "b", dcn="plugin", lookahead=3))
    assert rebuild_command(b, 3) == f"`esan-rt export /ckpts/tiny.pt --out {b.root} --lookahead 3 " \
        "--precision fp32 --dcn plugin`"
    assert rebuild_command(tmp_path) == f"`esan-rt export CKPT --out {tmp_path} --lookahead L`"


@pytest.mark.parametrize(("dim", "rows"), [("batch", 1), ("5*batch", 5), (" 3 * batch", 3), (4, 4)])
def test_batch_rows(dim, rows):
    assert batch_rows(dim) == rows


@pytest.mark.parametrize("dim", ["batch*2", "0*batch", "x*batch", "n", "-1*batch"])
def test_batch_rows_refuses(dim):
    with pytest.raises(ValueError, match="neither 'batch' nor 'K\\*batch'"):
        batch_rows(dim)


def test_zero_lookahead_and_radius_are_valid(tmp_path):
    root = make_bundle(tmp_path / "b", lookahead=0)
    edit_manifest(root, radius=0)
    b = load_bundle(root)
    assert b.lookahead == 0 and b.radius == 0 and b.window == 1
    assert batch_rows("1*batch") == 1


def test_messages_name_the_bundle_the_format_and_the_commands(tmp_path):
    root = make_bundle(tmp_path / "b")
    edit_manifest(root, format="other-format")
    msg = _refused(root, r"not an esan-rt-bundle manifest \(format='other-format'\)")
    assert msg.endswith(f"rebuild it with `esan-rt export CKPT --out {root} --lookahead L`")
    edit_manifest(root, format="esan-rt-bundle", format_version=3)
    with pytest.raises(UserError, match=f"re-export with `esan-rt export CKPT --out {root} --lookahead L`"):
        load_bundle(root)
    plugin = load_bundle(make_bundle(tmp_path / "p", dcn="plugin"))
    with pytest.raises(UserError) as info:
        check_compatible(plugin, "ort", 2)
    assert f"`esan-rt export /ckpts/tiny.pt --out {plugin.root} --lookahead 2 --precision fp32 " \
        "--dcn standard` or use --backend trt" in str(info.value)
    eng = make_bundle(tmp_path / "e", engines=True)
    (eng / "aligner.plan").unlink()
    assert _refused(eng, "engine for aligner").endswith("rebuild the engines with "
                                                        "`esan-rt export CKPT --engines --out DIR`")


def test_bundle_fields_checks_and_engine_defaults(tmp_path):
    from esan.runtime.core.bundle import to_trt_command

    root = make_bundle(tmp_path / "b", engines=True)
    man = json.loads((root / "manifest.json").read_text())
    man["checks"] = {"encoder": {"max_abs": 1e-6}}
    for key in ("tensorrt_version", "gpu", "compute_capability"):
        del man["engines"][key]
    del man["source_checkpoint"]
    (root / "manifest.json").write_text(json.dumps(man))
    b = load_bundle(root)
    assert b.root == root and all(g.name == n for n, g in b.graphs.items())
    assert b.checks == {"encoder": {"max_abs": 1e-6}}
    assert (b.engines.tensorrt_version, b.engines.gpu, b.engines.compute_capability) == ("", "", "")
    assert check_compatible(b, "trt", 2, tensorrt_version="10.9.0", compute_capability="9.0") is True
    assert to_trt_command(b).startswith("`esan-rt export CKPT --engines --out")
