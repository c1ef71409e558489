"""ONNX translations of ``torchvision::deform_conv2d`` for the dynamo exporter.

``standard``: ONNX ``DeformConv`` (opset 19). Its offset layout (per offset group, per kernel tap,
(dy, dx) interleaved) is torchvision's; tests check this numerically with ONNX Runtime.

``plugin``: one node ``trt.plugins::ESANModulatedDeformConv2d`` for our TensorRT plugin, named by
``esan.runtime.core.plugin_spec``: inputs (input, offset, mask, weight, bias), explicit (h, w) pair
attributes ``stride``/``padding``/``dilation``, ints ``groups``/``deformable_groups``, and the
``plugin_version``/``plugin_namespace`` strings the TensorRT ONNX parser uses to find it. An ONNX
schema for it is registered in-process so onnxscript can emit it and ``onnx.checker`` can check it.

``plugin_to_deformconv`` rewrites plugin nodes back to ``DeformConv`` so ONNX Runtime can run a
plugin graph (tests, ``compare``).
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
import torch
from onnx import helper
from onnx.defs import OpSchema
from onnxscript import opset19 as op19
from onnxscript import values

from esan.runtime.core import plugin_spec as ps

DCN_MODES = ("standard", "plugin")


def register_plugin_schema() -> None:
    """Register the plugin node's ONNX schema once per process (idempotent)."""
    if onnx.defs.has(ps.PLUGIN_NAME, ps.ONNX_DOMAIN):
        return
    opt = OpSchema.FormalParameterOption.Optional
    inputs = [OpSchema.FormalParameter(n, "T") for n in ps.INPUT_NAMES[:4]]
    inputs.append(OpSchema.FormalParameter(ps.INPUT_NAMES[4], "T", param_option=opt))
    attr = OpSchema.AttrType
    attributes = [OpSchema.Attribute(n, attr.INTS, "(h, w) pair") for n in ps.PAIR_ATTRS]
    attributes += [OpSchema.Attribute(n, attr.INT, "count") for n in ps.INT_ATTRS]
    attributes += [
        OpSchema.Attribute(n, attr.STRING, "TensorRT parser lookup")
        for n in (ps.PARSER_VERSION_ATTR, ps.PARSER_NAMESPACE_ATTR)
    ]
    schema = OpSchema(
        ps.PLUGIN_NAME,
        ps.ONNX_DOMAIN,
        1,
        doc="Modulated deformable 2-D convolution served by the ESAN-RT TensorRT plugin.",
        inputs=inputs,
        outputs=[OpSchema.FormalParameter("output", "T")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "float tensors")],
        attributes=attributes,
    )
    onnx.defs.register_schema(schema)


def deform_conv_standard(
    input, weight, offset, mask, bias,
    stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int,
    groups: int, offset_groups: int, use_mask: bool,
):  # fmt: skip
    """``torchvision::deform_conv2d`` -> ONNX ``DeformConv`` (opset 19)."""
    return op19.DeformConv(
        input,
        weight,
        offset,
        bias,
        mask if use_mask else None,
        dilations=[dilation_h, dilation_w],
        strides=[stride_h, stride_w],
        pads=[pad_h, pad_w, pad_h, pad_w],
        group=groups,
        offset_group=offset_groups,
    )


def deform_conv_plugin(
    input, weight, offset, mask, bias,
    stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int,
    groups: int, offset_groups: int, use_mask: bool,
):  # fmt: skip
    """``torchvision::deform_conv2d`` -> our plugin node (modulated DCN only: a mask is required)."""
    if not use_mask or mask is None:
        raise ValueError("the ESAN TensorRT plugin implements modulated DCN only (deform_conv2d needs a mask)")
    register_plugin_schema()
    node = getattr(values.Opset(ps.ONNX_DOMAIN, 1), ps.PLUGIN_NAME)
    return node(
        input,
        offset,
        mask,
        weight,
        bias,
        stride=[stride_h, stride_w],
        padding=[pad_h, pad_w],
        dilation=[dilation_h, dilation_w],
        groups=groups,
        deformable_groups=offset_groups,
        **{ps.PARSER_VERSION_ATTR: ps.PLUGIN_VERSION, ps.PARSER_NAMESPACE_ATTR: ps.PLUGIN_NAMESPACE},
    )


def translation_table(mode: str) -> dict[Callable, Callable]:
    """The ``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``."""
    if mode not in DCN_MODES:
        raise ValueError(f"dcn mode must be one of {DCN_MODES}, got {mode!r}")
    import torchvision.ops  # noqa: F401  (registers torch.ops.torchvision.deform_conv2d)

    fn = deform_conv_standard if mode == "standard" else deform_conv_plugin
    if mode == "plugin":
        register_plugin_schema()
    return {torch.ops.torchvision.deform_conv2d.default: fn}


def plugin_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == ps.ONNX_DOMAIN and n.op_type == ps.PLUGIN_NAME]


def node_attrs(node: onnx.NodeProto) -> dict:
    """A node's attributes as plain Python values (strings decoded)."""
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else (list(v) if not isinstance(v, int | float) else v)
    return out


def plugin_to_deformconv(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every plugin node replaced by the equivalent ONNX ``DeformConv``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    for node in out.graph.node:
        if node.domain != ps.ONNX_DOMAIN or node.op_type != ps.PLUGIN_NAME:
            nodes.append(node)
            continue
        a = node_attrs(node)
        x, offset, mask, weight = node.input[:4]
        bias = node.input[4] if len(node.input) > 4 else ""
        (ph, pw) = a["padding"]
        nodes.append(
            helper.make_node(
                "DeformConv",
                [x, weight, offset, bias, mask],
                list(node.output),
                name=node.name,
                strides=a["stride"],
                pads=[ph, pw, ph, pw],
                dilations=a["dilation"],
                group=a["groups"],
                offset_group=a["deformable_groups"],
            )
        )
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    keep = [o for o in out.opset_import if o.domain != ps.ONNX_DOMAIN]
    del out.opset_import[:]
    out.opset_import.extend(keep)
    return out
