"""Split ONNX bundle export: per-graph ORT parity, the plugin node, asymmetric DCN, atomic writes."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from esan.export import dcn_onnx, graphs, parity  # noqa: E402
from esan.export.onnx_export import export_bundle  # noqa: E402
from esan.runtime.core import plugin_spec as ps  # noqa: E402
from esan.runtime.core.bundle import GRAPH_NAMES, load_bundle  # noqa: E402
from esan.runtime.core.errors import UserError  # noqa: E402

LOOKAHEAD = 2


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def plugin_bundle(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bp") / "tinyp"
    return export_bundle(tiny_checkpoint, out, lookahead=LOOKAHEAD, dcn="plugin", progress=lambda _: None)


def _parity(bundle_dir, model, precision):
    bundle = load_bundle(bundle_dir)
    defs = graphs.build_graphs(model, bundle.lookahead, precision)
    refs = graphs.build_graphs(model, bundle.lookahead, "fp32")
    samples = graphs.sample_inputs(model, bundle.lookahead, seed=1)
    results = {}
    for name in GRAPH_NAMES:
        feed = graphs.cast_inputs(defs[name], samples[name])
        ref_in = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in feed.items()}
        ref = graphs.run_torch(refs[name], ref_in)
        out = parity.run_ort(parity.ort_session(bundle.graph_path(name), threads=1), feed)
        results[name] = parity.compare_outputs(ref, out)
    return bundle, results


def test_fp32_parity_per_graph(tiny_bundle, tiny_model):
    bundle, results = _parity(tiny_bundle, tiny_model, "fp32")
    assert bundle.precision == "fp32" and bundle.dcn == "standard" and bundle.lookahead == 2
    for name, per_out in results.items():
        for out, m in per_out.items():
            assert m["max_abs"] <= 1e-4, (name, out, m)
    spec = bundle.graphs["encoder"]
    assert [(t.name, t.shape, t.dtype) for t in spec.inputs] == [
        ("frame", ("batch", 64, 96, 3), "uint8"),
        ("valid", ("batch", 64, 96, 1), "uint8"),
    ]
    assert [t.name for t in bundle.graphs["bwd_window"].inputs] == ["xs"]
    assert bundle.graphs["bwd_window"].inputs[0].shape == (f"{LOOKAHEAD + 1}*batch", 64, 8, 12)
    assert bundle.graphs["aligner"].inputs[0].shape == ("5*batch", 16, 8, 12)
    assert bundle.graphs["decoder"].outputs[0].shape == ("batch", 1, 32, 48)
    assert all(t.dynamic for g in bundle.graphs.values() for t in g.inputs + g.outputs)


def test_bwd_window_runs_l_recurrent_convs_and_equals_l_plus_1_cell_steps(tiny_bundle, tiny_model):
    """The first backward step starts from zero without a conv on it: L convs, and the L + 1 steps' result."""
    import onnxruntime as ort

    from esan.runtime.core.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    nodes = onnx.load(bundle.graph_path("bwd_window")).graph.node
    assert sum(n.op_type == "Conv" for n in nodes) == LOOKAHEAD  # not L + 1, with the batch axis dynamic
    xs = graphs.sample_inputs(tiny_model, LOOKAHEAD, seed=4, batch=2)["bwd_window"]["xs"]
    sess = ort.InferenceSession(str(bundle.graph_path("bwd_window")), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"xs": xs})[0]
    step = graphs.build_graphs(tiny_model, LOOKAHEAD)["cell_bwd"].module
    x = torch.from_numpy(xs).unflatten(0, (2, LOOKAHEAD + 1))
    h, c = tiny_model.zero_state(x[:, 0])
    with torch.no_grad():
        for i in range(LOOKAHEAD, -1, -1):  # the plain cell from the zero state, every step with its conv
            h, c = step(x[:, i], h, c)
    np.testing.assert_allclose(got, h.numpy(), rtol=0, atol=1e-5)


def test_fp16_parity_and_dtypes(tiny_bundle_fp16, tiny_model):
    bundle, results = _parity(tiny_bundle_fp16, tiny_model, "fp16")
    for name, per_out in results.items():
        for out, m in per_out.items():
            assert m["corr"] >= 0.999 and m["rel_l2"] <= 0.01, (name, out, m)
            assert parity.passes(m, "fp16"), (name, out, m)
    dt = {g: {t.name: t.dtype for t in s.inputs + s.outputs} for g, s in bundle.graphs.items()}
    assert dt["encoder"]["frame"] == "uint8" and dt["encoder"]["f1"] == "float16"
    assert dt["aligner"]["win_f1"] == "float16" and dt["aligner"]["xf"] == "float16"
    assert dt["cell_fwd"] == {"x": "float16", "h": "float16", "c": "float32", "h_out": "float16", "c_out": "float32"}
    assert dt["bwd_window"] == {"xs": "float16", "hb": "float16"}
    assert dt["decoder"] == {"hf": "float16", "hb": "float16", "map": "float32"}
    assert bundle.fp32_parts
    enc = onnx.load(bundle.graph_path("encoder"))
    kinds = {i.data_type for i in enc.graph.initializer if len(i.dims) == 4}
    assert kinds == {onnx.TensorProto.FLOAT16}  # conv weights are fp16 (strongly typed TensorRT)


def test_plugin_node_structure_and_numerics(plugin_bundle, tiny_model):
    bundle = load_bundle(plugin_bundle)
    assert bundle.dcn == "plugin"
    plugin = bundle.manifest["plugin"]
    expected = (ps.PLUGIN_NAME, ps.PLUGIN_VERSION, ps.PLUGIN_NAMESPACE)
    assert (plugin["name"], plugin["version"], plugin["namespace"]) == expected
    # the export checked itself (plugin node run as DeformConv on ONNX Runtime)
    assert set(bundle.checks) == set(GRAPH_NAMES) and all(c["max_abs"] <= 1e-4 for c in bundle.checks.values())
    assert all(c["batch"] == 2 for c in bundle.checks.values())  # checked on two streams in one call
    model = onnx.load(bundle.graph_path("aligner"))
    assert not [n for n in model.graph.node if n.op_type == "DeformConv"]
    nodes = dcn_onnx.plugin_nodes(model)
    assert len(nodes) == 4  # L3, L2, L1 and cascade packs
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    assert (ps.ONNX_DOMAIN, 1) in [(o.domain, o.version) for o in model.opset_import]
    for node in nodes:
        a = dcn_onnx.node_attrs(node)
        assert a[ps.PARSER_VERSION_ATTR] == ps.PLUGIN_VERSION and a[ps.PARSER_NAMESPACE_ATTR] == ps.PLUGIN_NAMESPACE
        assert a["stride"] == [1, 1] and a["padding"] == [1, 1] and a["dilation"] == [1, 1]
        assert a["groups"] == 1 and a["deformable_groups"] == tiny_model.cfg.deform_groups
        x, offset, mask, weight, bias = node.input
        assert producers[mask] == "Sigmoid" and producers[offset] == "Concat"
        assert list(inits[weight].dims) == [16, 16, 3, 3] and list(inits[bias].dims) == [16]
    # numerics: the same graph through ORT with the plugin node rewritten to DeformConv
    _, results = _parity(plugin_bundle, tiny_model, "fp32")
    assert max(m["max_abs"] for per in results.values() for m in per.values()) <= 1e-4


class _AsymDCN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.weight = torch.nn.Parameter(torch.randn(6, 2, 3, 3, generator=g))  # groups = 2
        self.bias = torch.nn.Parameter(torch.randn(6, generator=g))

    def forward(self, x, offset, mask):
        from torchvision.ops import deform_conv2d

        kw = {"stride": (1, 2), "padding": (2, 1), "dilation": (2, 1)}
        return deform_conv2d(x, offset, self.weight, self.bias, mask=mask, **kw)


@pytest.mark.parametrize("mode", ["standard", "plugin"])
def test_asymmetric_dcn_parameters_survive(mode):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 4, 9, 11, generator=g)
    oh, ow = (9 + 4 - 4 - 1) // 1 + 1, (11 + 2 - 2 - 1) // 2 + 1
    offset = 1.5 * torch.randn(1, 2 * 2 * 9, oh, ow, generator=g)  # 2 deformable groups
    mask = torch.rand(1, 2 * 9, oh, ow, generator=g)
    module = _AsymDCN().eval()
    with torch.no_grad():
        ref = module(x, offset, mask).numpy()
    program = torch.onnx.export(module, (x, offset, mask), dynamo=True, opset_version=19, verbose=False,
                                custom_translation_table=dcn_onnx.translation_table(mode))  # fmt: skip
    model = program.model_proto
    onnx.checker.check_model(model)
    if mode == "plugin":
        (node,) = dcn_onnx.plugin_nodes(model)
        a = dcn_onnx.node_attrs(node)
        assert (a["stride"], a["padding"], a["dilation"]) == ([1, 2], [2, 1], [2, 1])
        assert (a["groups"], a["deformable_groups"]) == (2, 2)
        assert list(node.input[:3]) == ["x", "offset", "mask"]
    else:
        (node,) = [n for n in model.graph.node if n.op_type == "DeformConv"]
        a = dcn_onnx.node_attrs(node)
        assert (a["strides"], a["pads"], a["dilations"]) == ([1, 2], [2, 1, 2, 1], [2, 1])
        assert (a["group"], a["offset_group"]) == (2, 2)
    feed = {"x": x.numpy(), "offset": offset.numpy(), "mask": mask.numpy()}
    out = parity.run_ort(parity.ort_session(model, threads=1), feed)
    assert parity.metrics(ref, next(iter(out.values())))["max_abs"] <= 1e-4


def test_failed_export_leaves_no_bundle(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(parity, "passes", lambda m, precision: False)
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="ONNX Runtime disagrees"):
        export_bundle(tiny_checkpoint, out, lookahead=0, progress=lambda _: None)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temp directory is gone too


def test_refuses_to_overwrite_a_foreign_directory(tiny_checkpoint, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a bundle"):
        export_bundle(tiny_checkpoint, tmp_path, lookahead=0)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_manifest_matches_contract(tiny_bundle, tiny_checkpoint):
    man = json.loads((tiny_bundle / "manifest.json").read_text())
    assert man["format"] == "esan-rt-bundle" and man["format_version"] == 2 and man["batch"] == "dynamic"
    assert set(man["graphs"]) == set(GRAPH_NAMES) and "engines" not in man
    assert man["normalization"]["in_graph"] is True and man["opset"] >= 19
    assert man["plugin"] is None and man["fp32_parts"] == []
    from esan.runtime.core.bundle import sha256_file

    assert man["source_checkpoint"]["sha256"] == sha256_file(tiny_checkpoint)


def test_encoder_normalises_like_letterbox(tiny_bundle, tiny_model):
    from esan.runtime.core.letterbox import letterbox, normalize, valid_mask

    frame = np.random.default_rng(5).integers(0, 256, (50, 120, 3), dtype=np.uint8)
    canvas, box = letterbox(frame, (64, 96))
    with torch.no_grad():
        ref = tiny_model.encode(torch.from_numpy(normalize(canvas, box))[None])
    feed = {"frame": canvas[None], "valid": valid_mask(box, (64, 96))[None]}
    out = parity.run_ort(parity.ort_session(tiny_bundle / "encoder.onnx", threads=1), feed)
    for name, value in ref.items():
        assert parity.metrics(value.numpy(), out[name])["max_abs"] <= 1e-5, name


class _MixesStreams(torch.nn.Module):
    """A decoder that hands stream 0 the map of the last stream: right for one stream, wrong for two."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, hf, hb):
        return self.inner(hf, hb).flip(0)


def test_export_check_runs_two_different_streams_in_one_call(tiny_model, tmp_path):
    from esan.export.onnx_export import check_graph, export_graph

    defs = graphs.build_graphs(tiny_model, 0)
    samples = graphs.sample_inputs(tiny_model, 0, seed=2)
    assert samples["decoder"]["hf"].shape[0] == 2
    for graph, name in (("decoder", "hf"), ("cell_fwd", "c"), ("aligner", "ref_p3"), ("aligner", "win_f3")):
        v = samples[graph][name]
        a, b = v[: len(v) // 2], v[len(v) // 2 :]  # stream-major: the first half is stream 0
        assert np.abs(a - b).max() > 0.1 * np.abs(v).max(), f"the two streams of the check barely differ: {name}"
    good = export_graph(defs["decoder"], samples["decoder"], tmp_path / "good.onnx", "standard", 19)
    assert check_graph(defs["decoder"], defs["decoder"], good, samples["decoder"], "fp32")["batch"] == 2
    bad_def = dataclasses.replace(defs["decoder"], module=_MixesStreams(defs["decoder"].module))
    bad = export_graph(bad_def, samples["decoder"], tmp_path / "bad.onnx", "standard", 19)
    with pytest.raises(RuntimeError, match="disagrees"):
        check_graph(bad_def, defs["decoder"], bad, samples["decoder"], "fp32")


class _ExtraOutput(torch.nn.Module):
    """A decoder that also returns its input: one output more than the contract names."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, hf, hb):
        return self.inner(hf, hb), hf * 2


def test_exported_io_names_must_match_the_contract(tiny_model, tmp_path):
    from esan.export.onnx_export import export_graph

    defs = graphs.build_graphs(tiny_model, 0)
    sample = graphs.sample_inputs(tiny_model, 0, batch=1)["decoder"]
    bad = dataclasses.replace(defs["decoder"], module=_ExtraOutput(defs["decoder"].module))
    with pytest.raises(RuntimeError, match="does not match the contract") as err:
        export_graph(bad, sample, tmp_path / "bad.onnx", "standard", 19)
    assert str(err.value).startswith("decoder: exported I/O ['hf', 'hb'] -> ['map', "), err.value
    assert not (tmp_path / "bad.onnx").exists(), "a graph that breaks the contract must not be saved"


def test_static_batch1_export_writes_a_format1_manifest(tiny_model, tmp_path):
    from esan.export.manifest_writer import build_manifest, graph_entry
    from esan.export.onnx_export import export_graph

    defs = graphs.build_graphs(tiny_model, 0)
    sample = graphs.sample_inputs(tiny_model, 0, batch=1)["decoder"]
    export_graph(defs["decoder"], sample, tmp_path / "decoder.onnx", "standard", 19, dynamic=False)
    entry = graph_entry(tmp_path / "decoder.onnx")
    assert entry["inputs"][0]["shape"] == [1, 16, 8, 12] and entry["outputs"][0]["shape"] == [1, 1, 32, 48]
    common = dict(config=tiny_model.cfg.to_dict(), lookahead=0, precision="fp32", fp32_parts=[], dcn="standard",
                  opset=19, graphs={"decoder": entry}, checks={}, checkpoint=tmp_path, checkpoint_sha256="0")
    old = build_manifest(batch=1, **common)
    assert old["format_version"] == 1 and "batch" not in old
    assert build_manifest(batch="dynamic", **common)["batch"] == "dynamic"
