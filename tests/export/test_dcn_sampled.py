"""``DeformConv`` rewritten as bilinear sampling + a 1x1 conv equals ONNX Runtime's own ``DeformConv``.

Asymmetric shapes, pads, offset groups and offsets large enough to sample outside the picture; the
reference is ONNX Runtime's ``DeformConv`` kernel on the unrewritten graph (and torchvision through it,
in tests/export/test_export.py), fp32 within 1e-4.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ort = pytest.importorskip("onnxruntime")

from esan.export.dcn_sampled import deformconv_to_sampled  # noqa: E402


def deformconv_model(c, h, w, cout, kh, kw, groups, pads, mask=True, bias=True, seed=0, opset=19):
    rng = np.random.default_rng(seed)
    ho, wo = h + pads[0] + pads[2] - kh + 1, w + pads[1] + pads[3] - kw + 1
    weight = rng.standard_normal((cout, c, kh, kw)).astype(np.float32)
    inits = [numpy_helper.from_array(weight, "W")]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", c, h, w]),
              helper.make_tensor_value_info("offset", TensorProto.FLOAT, ["batch", 2 * groups * kh * kw, ho, wo])]
    names = ["X", "W", "offset", "B" if bias else ""]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "B"))
    if mask:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", groups * kh * kw, ho, wo]))
        names.append("mask")
    node = helper.make_node("DeformConv", names, ["Y"], name="dcn", kernel_shape=[kh, kw], pads=list(pads),
                            offset_group=groups)
    out = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", cout, ho, wo])
    graph = helper.make_graph([node], "g", inputs, [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model, (ho, wo)


def run(model, feed):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0]


@pytest.mark.parametrize("c, h, w, cout, kh, kw, groups, pads, batch, mask, bias", [
    (6, 7, 11, 5, 3, 3, 2, (1, 1, 1, 1), 2, True, True),
    (4, 9, 5, 3, 3, 3, 1, (1, 1, 1, 1), 1, True, False),
    (8, 6, 10, 4, 3, 2, 4, (1, 0, 1, 1), 3, False, True),   # non-square kernel, uneven pads
    (3, 5, 8, 7, 1, 1, 3, (0, 0, 0, 0), 2, True, True),     # 1x1 kernel
])  # fmt: skip
def test_rewrite_equals_deformconv(c, h, w, cout, kh, kw, groups, pads, batch, mask, bias):
    model, (ho, wo) = deformconv_model(c, h, w, cout, kh, kw, groups, pads, mask, bias)
    rng = np.random.default_rng(1)
    feed = {"X": rng.standard_normal((batch, c, h, w)).astype(np.float32),
            # offsets up to +-4 pixels: many taps land between pixels, some outside the picture
            "offset": (rng.standard_normal((batch, 2 * groups * kh * kw, ho, wo)) * 2.5).astype(np.float32)}
    if mask:
        feed["mask"] = rng.uniform(0, 1, (batch, groups * kh * kw, ho, wo)).astype(np.float32)
    ref = run(model, feed)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert deformconv_to_sampled(rewritten) == 1
    ops = [n.op_type for n in rewritten.graph.node]
    assert "DeformConv" not in ops and ops.count("GridSample") == 1 and ops[-1] == "Conv"
    got = run(rewritten, feed)
    assert got.shape == ref.shape == (batch, cout, ho, wo)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, float(np.abs(ref).max())))
    outside = np.abs(feed["offset"]).max()
    assert outside > 4  # the case exercised sampling outside the picture


def test_integer_offsets_sample_exact_pixels():
    """Zero offsets and a unit mask: a plain convolution with the same weights (an independent reference)."""
    model, (ho, wo) = deformconv_model(5, 6, 9, 4, 3, 3, 1, (1, 1, 1, 1), seed=3)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 6, 9)).astype(np.float32)
    feed = {"X": x, "offset": np.zeros((2, 18, ho, wo), np.float32), "mask": np.ones((2, 9, ho, wo), np.float32)}
    deformconv_to_sampled(model)
    w = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name.endswith("/weight")))
    b = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "B"))
    conv = helper.make_model(helper.make_graph(
        [helper.make_node("Conv", ["X", "W", "B"], ["Y"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])], "c",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 5, 6, 9])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w.reshape(4, 5, 3, 3), "W"), numpy_helper.from_array(b, "B")]),
        opset_imports=[helper.make_opsetid("", 19)])  # fmt: skip
    np.testing.assert_allclose(run(model, feed), run(conv, {"X": x}), rtol=0, atol=1e-4)


def test_unsupported_deformconv_is_refused():
    model, _ = deformconv_model(4, 6, 6, 4, 3, 3, 1, (1, 1, 1, 1))
    model.graph.node[0].attribute.append(helper.make_attribute("strides", [2, 2]))
    with pytest.raises(ValueError, match="only stride 1, dilation 1, group 1"):
        deformconv_to_sampled(model)


def test_graph_without_deformconv_is_unchanged():
    model, _ = deformconv_model(4, 6, 6, 4, 3, 3, 1, (1, 1, 1, 1))
    model.graph.node[0].op_type = "Identity"
    before = model.SerializeToString()
    assert deformconv_to_sampled(model) == 0 and model.SerializeToString() == before
