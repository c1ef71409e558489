"""Rewrite ONNX ``DeformConv`` as bilinear sampling plus a 1x1 ``Conv``, so its arithmetic can be int8.

ONNX Runtime has no int8 ``DeformConv``, and the deformable convolution's GEMM is the aligner's largest
part. A modulated deformable convolution (stride 1, dilation 1, ``group`` 1) is exactly:

1. per offset group ``g`` and kernel tap ``k = i*kw + j``, sample the input bilinearly at
   ``(y - pad_top + i + dy, x - pad_left + j + dx)``, zero outside the picture: one ``GridSample``
   (``align_corners=1``, zeros padding) over ``[N*G, C/G, H, W]`` with a grid of ``[N*G, KK*Ho, Wo, 2]``;
2. multiply by the mask: ``[N, G, C/G, KK, Ho, Wo] * [N, G, 1, KK, Ho, Wo]``;
3. a 1x1 ``Conv`` of the ``C*KK`` sampled channels with the weight flattened to ``[Cout, C*KK, 1, 1]``
   (channel ``c*KK + k``: the weight's own ``[Cout, C, kh, kw]`` order) plus the bias.

ONNX Runtime's quantization tool then makes step 3 an int8 convolution; the sampling and the mask stay
float. ``deformconv_to_sampled`` rewrites a model in place; spatial sizes must be static (only the batch
axis may be symbolic), as in every bundle graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _static_shape(value_info: dict[str, onnx.ValueInfoProto], name: str) -> list:
    vi = value_info.get(name)
    if vi is None:
        raise ValueError(f"DeformConv input {name!r} has no inferred shape")
    dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise ValueError(f"DeformConv input {name!r} needs static C, H, W, got {dims}")
    return dims


class _Builder:
    """Adds nodes and initializers with names unique to one rewritten node."""

    def __init__(self, graph: onnx.GraphProto, prefix: str) -> None:
        self.graph, self.prefix, self.nodes = graph, prefix, []

    def const(self, name: str, value: np.ndarray) -> str:
        full = f"{self.prefix}/const/{name}"
        self.graph.initializer.append(numpy_helper.from_array(np.array(value, order="C"), full))  # keeps 0-d
        return full

    def node(self, op: str, inputs: list[str], name: str, **attrs) -> str:
        out = f"{self.prefix}/{name}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _rewrite(graph: onnx.GraphProto, node: onnx.NodeProto, vinfo: dict, inits: dict, opset: int) -> list:
    a = _attrs(node)
    if a.get("group", 1) != 1 or any(s != 1 for s in a.get("strides", [1, 1])) \
            or any(d != 1 for d in a.get("dilations", [1, 1])):  # fmt: skip
        raise ValueError(f"{node.name}: only stride 1, dilation 1, group 1 DeformConv can be rewritten")
    x, w_name, offset = node.input[0], node.input[1], node.input[2]
    bias = node.input[3] if len(node.input) > 3 and node.input[3] else None
    mask = node.input[4] if len(node.input) > 4 and node.input[4] else None
    if w_name not in inits:
        raise ValueError(f"{node.name}: the weight must be an initializer")
    weight = numpy_helper.to_array(inits[w_name])
    cout, c, kh, kw = weight.shape
    _, cx, h, w = _static_shape(vinfo, x)
    g = int(a.get("offset_group", 1))
    pt, pl, pb, pr = (list(a.get("pads", [0, 0, 0, 0])) + [0, 0, 0, 0])[:4]
    ho, wo = h + pt + pb - kh + 1, w + pl + pr - kw + 1
    kk = kh * kw
    if cx != c or c % g or h < 2 or w < 2:
        raise ValueError(f"{node.name}: unsupported shapes input {[cx, h, w]}, weight {list(weight.shape)}, groups {g}")
    dt = np.float32
    b = _Builder(graph, node.name or f"deformconv_{id(node)}")
    taps_y, taps_x = np.repeat(np.arange(kh), kw), np.tile(np.arange(kw), kh)  # tap k = i*kw + j
    sy, sx = 2.0 / (h - 1), 2.0 / (w - 1)  # pixel -> [-1, 1] with align_corners=1
    base_y = ((np.arange(ho)[None, :, None] - pt + taps_y[:, None, None]) * sy - 1).astype(dt)[None, None]
    base_x = ((np.arange(wo)[None, None, :] - pl + taps_x[:, None, None]) * sx - 1).astype(dt)[None, None]
    off = b.node("Reshape", [offset, b.const("off_shape", np.array([-1, g, kk, 2, ho, wo], np.int64))], "off")
    dy = b.node("Gather", [off, b.const("zero", np.array(0, np.int64))], "dy", axis=3)
    dx = b.node("Gather", [off, b.const("one", np.array(1, np.int64))], "dx", axis=3)
    gy = b.node("Add", [b.node("Mul", [dy, b.const("sy", np.array(sy, dt))], "dy_n"), b.const("base_y", base_y)], "gy")
    gx = b.node("Add", [b.node("Mul", [dx, b.const("sx", np.array(sx, dt))], "dx_n"), b.const("base_x", base_x)], "gx")
    last = b.const("last", np.array([-1], np.int64))
    xy = b.node("Concat", [b.node("Unsqueeze", [gx, last], "gx1"), b.node("Unsqueeze", [gy, last], "gy1")], "xy",
                axis=-1)  # fmt: skip
    grid = b.node("Reshape", [xy, b.const("grid_shape", np.array([-1, kk * ho, wo, 2], np.int64))], "grid")
    xg = b.node("Reshape", [x, b.const("x_shape", np.array([-1, c // g, h, w], np.int64))], "x_groups")
    mode = "bilinear" if opset < 20 else "linear"
    cols = b.node("GridSample", [xg, grid], "cols", align_corners=1, mode=mode, padding_mode="zeros")
    cols = b.node("Reshape", [cols, b.const("cols6", np.array([-1, g, c // g, kk, ho, wo], np.int64))], "cols6")
    if mask is not None:
        m6 = b.node("Reshape", [mask, b.const("mask6", np.array([-1, g, 1, kk, ho, wo], np.int64))], "mask6")
        cols = b.node("Mul", [cols, m6], "masked")
    cols = b.node("Reshape", [cols, b.const("cols4", np.array([-1, c * kk, ho, wo], np.int64))], "columns")
    w_flat = b.const("weight", weight.reshape(cout, c * kk, 1, 1).astype(weight.dtype))
    b.nodes.append(helper.make_node("Conv", [cols, w_flat] + ([bias] if bias else []), list(node.output),
                                    name=f"{b.prefix}/conv1x1", kernel_shape=[1, 1]))  # fmt: skip
    return b.nodes


def deformconv_to_sampled(model: onnx.ModelProto) -> int:
    """Replace every ONNX ``DeformConv`` of ``model`` (float32) by the sampled form, in place; returns how many."""
    graph = model.graph
    targets = [n for n in graph.node if n.op_type == "DeformConv" and n.domain in ("", "ai.onnx")]
    if not targets:
        return 0
    inferred = shape_inference.infer_shapes(model)
    vinfo = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input]}
    for v in vinfo.values():
        if v.type.tensor_type.elem_type != TensorProto.FLOAT and any(v.name == t.input[0] for t in targets):
            raise ValueError(f"DeformConv input {v.name!r} is not float32: rewrite the fp32 graph")
    inits = {i.name: i for i in graph.initializer}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    new_nodes = []
    for n in graph.node:
        new_nodes += _rewrite(graph, n, vinfo, inits, opset) if n in targets else [n]
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return len(targets)
