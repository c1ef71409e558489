"""``esan-rt compare`` on the tiny bundle prints one row per graph output and notes skipped backends."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from esan.runtime.cli import main  # noqa: E402


def test_compare_prints_table(tiny_bundle, tiny_checkpoint, capsys):
    rc = main(["compare", str(tiny_bundle), "--checkpoint", str(tiny_checkpoint), "--backends", "ort,trt"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["backend", "graph", "output", "max_abs", "corr", "rel_l2", "ok"]
    rows = [line.split() for line in lines if line.startswith("ort ")]
    assert {r[1] for r in rows} == {"encoder", "aligner", "cell_fwd", "cell_bwd", "bwd_window", "decoder", "end-to-end"}
    assert len(rows) == 10 + 2 + 2 + 2 + 1 + 1 + 1
    assert all(r[-1] == "yes" and float(r[3]) <= 1e-4 for r in rows)
    e2e = next(r for r in rows if r[1] == "end-to-end")
    assert e2e[2] == "map" and float(e2e[4]) > 0.9999  # mean per-frame CC of the streamed maps
    assert any(line.startswith("note: end-to-end: 24 sample-clip frames streamed, fp32 bundle") for line in lines)
    import importlib.util

    assert not [line for line in lines if line.startswith("trt ")]  # the tiny bundle has no engines
    notes = [line for line in lines if line.startswith("note: trt: skipped: ")]
    assert len(notes) == 1, out
    if importlib.util.find_spec("tensorrt") is None:
        assert "TensorRT is not installed" in notes[0]
    else:  # TensorRT here: skipped for want of a GPU or of engines, never silently
        assert "no usable NVIDIA GPU" in notes[0] or "the bundle has no engines" in notes[0]


def test_compare_rejects_other_checkpoint(tiny_bundle, tmp_path, capsys):
    import torch

    from esan.train.checkpoint import save
    from esan.train.config import ESANConfig
    from esan.train.model import ESAN

    cfg = ESANConfig(input_size=(32, 64), vgg_widths=(8, 16, 24, 16, 16), nf=16, deform_groups=2, hidden=16)
    torch.manual_seed(0)
    other = save(tmp_path / "other.pt", ESAN(cfg))
    rc = main(["compare", str(tiny_bundle), "--checkpoint", str(other), "--backends", "ort"])
    assert rc == 2
    assert "another config" in capsys.readouterr().err


def test_compare_catches_a_wrong_graph(tiny_bundle, tiny_checkpoint, tmp_path, capsys):
    """A decoder whose weights were changed after export: Polygraphy's comparison fails it, the table says NO."""
    import hashlib
    import json
    import shutil

    import numpy as np
    import onnx
    from onnx import numpy_helper

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    model = onnx.load(bundle / "decoder.onnx")
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))  # the final conv's weights
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))
    onnx.save(model, bundle / "decoder.onnx")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["graphs"]["decoder"]["sha256"] = hashlib.sha256((bundle / "decoder.onnx").read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))

    rc = main(["compare", str(bundle), "--checkpoint", str(tiny_checkpoint), "--backends", "ort"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("ort ")]
    assert rc == 1
    assert [r[1] for r in rows if r[-1] == "NO"] == ["decoder", "end-to-end"]  # per graph and in the streamed maps
    assert float(next(r for r in rows if r[1] == "decoder")[3]) > 1e-4


def test_polygraphy_comparison_with_our_tolerance():
    """Polygraphy's ``compare_accuracy`` with our tolerance (fp32: max abs <= 1e-4) fails the pair that misses it."""
    from collections import OrderedDict

    import numpy as np
    from polygraphy.comparator import Comparator, IterationResult, RunResults

    from esan.export.compare_runners import tolerance_check

    ref = IterationResult(OrderedDict(m=np.linspace(0, 1, 12, dtype=np.float32)), runner_name="torch")
    close = IterationResult(OrderedDict(m=ref["m"] + 5e-5), runner_name="ort")
    off = IterationResult(OrderedDict(m=ref["m"] + 5e-4), runner_name="trt")
    results = RunResults([("torch", [ref]), ("ort", [close]), ("trt", [off])])
    metrics: dict = {}
    check = tolerance_check("fp32", metrics)
    assert not Comparator.compare_accuracy(results, comparisons=[(0, 1), (0, 2)], compare_func=check)
    assert metrics[("ort", "m")]["ok"] and not metrics[("trt", "m")]["ok"]
    assert metrics[("trt", "m")]["max_abs"] == pytest.approx(5e-4, rel=1e-3)


@pytest.mark.slow
def test_compare_fails_an_fp16_graph_with_a_wrong_scale(tiny_bundle_fp16, tiny_checkpoint, tmp_path, capsys):
    """An fp16 aligner whose output ``xf`` is doubled (hashes updated): perfectly correlated, yet it must fail."""
    import hashlib
    import json
    import shutil

    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    bundle = tmp_path / "bundle16"
    shutil.copytree(tiny_bundle_fp16, bundle)
    model = onnx.load(bundle / "aligner.onnx")
    producer = next(n for n in model.graph.node if "xf" in n.output)
    producer.output[list(producer.output).index("xf")] = "xf_unscaled"
    for node in model.graph.node:  # any other reader of xf reads the unscaled value
        node.input[:] = ["xf_unscaled" if i == "xf" else i for i in node.input]
    model.graph.initializer.append(numpy_helper.from_array(np.array(2, np.float16), "xf_two"))
    model.graph.node.append(helper.make_node("Mul", ["xf_unscaled", "xf_two"], ["xf"]))
    onnx.checker.check_model(model)
    onnx.save(model, bundle / "aligner.onnx")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["graphs"]["aligner"]["sha256"] = hashlib.sha256((bundle / "aligner.onnx").read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))

    rc = main(["compare", str(bundle), "--checkpoint", str(tiny_checkpoint), "--backends", "ort", "--e2e-frames", "0"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("ort ")]
    assert rc == 1
    bad = [(r[1], r[2]) for r in rows if r[-1] == "NO"]
    assert bad == [("aligner", "xf")]
    row = next(r for r in rows if r[1:3] == ["aligner", "xf"])
    assert float(row[4]) > 0.999  # the correlation alone would have passed it
    assert float(row[5]) > 0.9  # relative L2 error of a doubled output: 1


def test_end_to_end_rule_follows_the_precision():
    from esan.export.compare_e2e import judge

    exact = {"max_abs": 5e-5, "cc_mean": 1.0, "rel_l2": 1e-5, "kld_mean": 0.0}
    assert judge("fp32", exact) and not judge("fp32", {**exact, "max_abs": 2e-4})
    assert judge("fp16", {**exact, "max_abs": 1e-2}) and not judge("fp16", {**exact, "rel_l2": 0.02})
    assert not judge("fp16", {**exact, "cc_mean": 0.998})
    assert judge("int8", {**exact, "max_abs": 0.1, "cc_mean": 0.995, "kld_mean": 0.01})
    assert not judge("int8", {**exact, "cc_mean": 0.985}) and not judge("int8", {**exact, "kld_mean": 0.03})


def test_negative_e2e_frames_is_one_line(tiny_bundle, tiny_checkpoint, capsys):
    rc = main(["compare", str(tiny_bundle), "--checkpoint", str(tiny_checkpoint), "--e2e-frames", "-1"])
    err = capsys.readouterr().err
    assert rc == 2 and "--e2e-frames must be >= 0" in err and len(err.strip().splitlines()) == 1
