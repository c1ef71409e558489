"""INT8 post-training static quantization of a bundle's graphs with ONNX Runtime's quantization tool.

``onnxruntime.quantization.quantize_static`` (QDQ format, per-channel int8 weights) does the work; this
module only chooses what it quantizes and how, per graph, and keeps its calibration cache (the tensor
ranges, JSON) in the bundle under ``calibration/``. Two flavours:

* ``ort``: uint8 activations (asymmetric), int8 symmetric per-channel weights: ONNX Runtime's CPU fast
  path (``DequantizeLinear -> Conv -> QuantizeLinear`` fuses into ``QLinearConv``);
* ``tensorrt``: int8 symmetric activations (zero points 0), int8 symmetric per-channel weights: what
  TensorRT's explicit quantization expects; Q/DQ sit on the inputs and outputs of the quantized ops.

What stays float (``FLOAT_PARTS``): the encoder's normalisation and its first convolution (the one on
the normalised picture: cheap, and the input range that varies most between deployments);
``DeformConv`` (no int8 kernel; its offset convs are quantized, Q/DQ around it); in the cells and
``bwd_window`` everything but the recurrent convolution (the gate sum, sigmoid/tanh and the cell state
``c``); the whole decoder (it *is* the last layer: hf + hb, one conv, upsampling, sigmoid).
The per-part sensitivity table (``esan.bench.int8_sensitivity``) is the measurement behind that choice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

from esan.export.calib_data import NpzReader

FLAVOURS = ("ort", "tensorrt")
CALIB_DIR = "calibration"
# op types ONNX Runtime's QDQ tool may quantize, per graph; () = the graph stays float
PART_OPS: dict[str, tuple[str, ...]] = {
    "encoder": ("Conv", "Relu", "MaxPool"),
    "aligner": ("Conv",),
    "cell_fwd": ("Conv",),
    "cell_bwd": ("Conv",),
    "bwd_window": ("Conv",),
    "decoder": (),
}
FLOAT_PARTS = (
    "encoder: uint8 -> ImageNet normalisation, valid-mask padding and the first convolution (on the picture)",
    "aligner: DeformConv (no int8 kernel; Q/DQ around it), the offset/mask sigmoid, fusion adds",
    "cell_fwd, cell_bwd, bwd_window: gate sum, sigmoid/tanh and the cell state c (only the recurrent conv is int8)",
    "decoder: all of it (hf + hb, final conv, x4 upsampling, sigmoid)",
)


def flavour_options(flavour: str) -> dict:
    """``quantize_static`` keyword arguments of a flavour."""
    if flavour == "ort":
        return {"activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8,
                "extra_options": {"ActivationSymmetric": False, "WeightSymmetric": True}}  # fmt: skip
    if flavour == "tensorrt":
        return {"activation_type": QuantType.QInt8, "weight_type": QuantType.QInt8,
                "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True}}  # fmt: skip
    raise ValueError(f"int8 flavour must be one of {FLAVOURS}, got {flavour!r}")


def flavour_record(flavour: str) -> dict:
    """The manifest's description of a flavour."""
    act = "uint8 asymmetric" if flavour == "ort" else "int8 symmetric (zero point 0)"
    return {"flavour": flavour, "format": "QDQ", "activations": act, "weights": "int8 symmetric per-channel",
            "calibration": "MinMax", "tool": "onnxruntime.quantization.quantize_static"}  # fmt: skip


class _DropAdvice(logging.Filter):
    """Drops the tool's advice to run its shape pre-processing (our graphs are exported with static shapes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def quantize_graph(src: Path, dst: Path, inputs: Sequence[Path], flavour: str, op_types: Iterable[str],
                   cache: Path, nodes_to_exclude: Sequence[str] = ()) -> None:  # fmt: skip
    """Quantize one graph file; reuses ``cache`` (tensor ranges JSON) when it exists, else writes it."""
    opts = flavour_options(flavour)
    model = onnx.load(src)
    names = [i.name for i in model.graph.input]
    root = logging.getLogger()
    quiet = _DropAdvice()
    root.addFilter(quiet)
    try:
        quantize_static(
            model, dst, NpzReader(inputs, names), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
            per_channel=True, reduce_range=False, nodes_to_exclude=list(nodes_to_exclude),
            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=cache, **opts,
        )  # fmt: skip
    finally:
        root.removeFilter(quiet)
    onnx.checker.check_model(onnx.load(dst))


def quantize_graphs(fp32_dir: Path, out_dir: Path, samples: dict[str, list[Path]], flavour: str,
                    parts: Iterable[str] | None = None,
                    progress: Callable[[str], None] = print) -> dict[str, dict]:  # fmt: skip
    """Quantize the graphs in ``parts`` (default: every graph with op types in ``PART_OPS``) from ``fp32_dir``.

    Graphs not quantized are copied as they are. Returns per graph what was done (for the manifest).
    """
    parts = set(PART_OPS if parts is None else parts)
    cache_dir = out_dir / CALIB_DIR
    cache_dir.mkdir(parents=True, exist_ok=True)
    done = {}
    for name, ops in PART_OPS.items():
        src, dst = fp32_dir / f"{name}.onnx", out_dir / f"{name}.onnx"
        if name in parts and ops:
            if not samples.get(name):
                raise RuntimeError(f"no calibration inputs for {name}: the calibration footage is too short")
            exclude = default_exclusions(name, src)
            quantize_graph(src, dst, samples[name], flavour, ops, cache_dir / f"{name}.json", exclude)
            q = _count_quantized(dst)
            done[name] = {"quantized": True, "op_types": list(ops), "calibration_inputs": len(samples[name]),
                          "float_nodes_kept": list(exclude),
                          "calibration_cache": f"{CALIB_DIR}/{name}.json", **q}  # fmt: skip
            progress(f"int8 {name}: {q['int8_nodes']} nodes int8, {q['float_nodes']} float "
                     f"({len(samples[name])} calibration inputs)")  # fmt: skip
        else:
            dst.write_bytes(src.read_bytes())
            done[name] = {"quantized": False}
    return done


def default_exclusions(graph: str, path: Path) -> list[str]:
    """Nodes kept float besides the op types left out: the encoder's first Conv (it reads the picture)."""
    if graph != "encoder":
        return []
    model = onnx.load(path, load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type == "Conv"][:1]


def _count_quantized(path: Path) -> dict:
    """Compute nodes between DequantizeLinear inputs and QuantizeLinear outputs vs the rest (approximate)."""
    model = onnx.load(path, load_external_data=False)
    producers = {o: n for n in model.graph.node for o in n.output}
    q_ops = {"QuantizeLinear", "DequantizeLinear"}
    int8, flt = 0, 0
    float_types: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type in q_ops or n.op_type in ("Constant", "Shape", "Reshape", "Split", "Squeeze", "Unsqueeze",
                                                "Gather", "Concat", "ConstantOfShape", "Expand", "Transpose", "Cast"):
            continue
        fed = [producers.get(i) for i in n.input if i]
        if fed and fed[0] is not None and fed[0].op_type == "DequantizeLinear":
            int8 += 1
        else:
            flt += 1
            float_types[n.op_type] = float_types.get(n.op_type, 0) + 1
    return {"int8_nodes": int8, "float_nodes": flt, "float_op_types": float_types}


def read_cache(bundle_dir: Path, graph: str) -> dict:
    """A graph's calibration cache (tensor ranges) from a bundle."""
    return json.loads((Path(bundle_dir) / CALIB_DIR / f"{graph}.json").read_text())
