"""Numerical parity of exported graphs against PyTorch: metrics and an ONNX Runtime runner."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from esan.export.dcn_onnx import plugin_nodes, plugin_to_deformconv

FP32_MAX_ABS = 1e-4
FP16_MIN_CORR = 0.999
FP16_MAX_REL_L2 = 0.01  # fp16 also keeps scale and offset: ||out - ref|| <= 1 % of ||ref||
INT8_MIN_CORR = 0.98  # per graph, int8 vs the fp32 PyTorch graph; maps are judged end to end (CC, KLD)


def metrics(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Max abs difference, Pearson correlation, relative L2 error and the reference's max magnitude (float64).

    ``rel_l2`` is ``||out - ref|| / ||ref||`` (0 when both are zero, infinite when only the reference is):
    unlike the correlation it sees a wrong scale or offset.
    """
    if np.shape(ref) != np.shape(out):  # before ravel: a transposed output of the same size is still wrong
        raise ValueError(f"shape mismatch: reference {np.shape(ref)} vs output {np.shape(out)}")
    r = np.asarray(ref, np.float64).ravel()
    o = np.asarray(out, np.float64).ravel()
    max_abs = float(np.max(np.abs(r - o))) if r.size else 0.0
    rs, os_ = r.std(), o.std()
    if rs < 1e-12 or os_ < 1e-12:  # constant maps: correlation is undefined; equal constants count as 1
        corr = 1.0 if max_abs <= FP32_MAX_ABS else 0.0
    else:
        corr = float(np.corrcoef(r, o)[0, 1])
    err, norm = float(np.linalg.norm(r - o)), float(np.linalg.norm(r))
    rel_l2 = err / norm if norm > 0 else (0.0 if err == 0 else float("inf"))
    return {"max_abs": max_abs, "corr": corr, "rel_l2": rel_l2, "ref_max": float(np.max(np.abs(r))) if r.size else 0.0}


def passes(m: dict[str, float], precision: str) -> bool:
    """fp32: max abs <= 1e-4 (scaled by the reference magnitude when that exceeds 1);
    fp16: corr >= 0.999 and relative L2 error <= 1 % (the correlation alone ignores scale and offset);
    int8: corr >= 0.98 per graph (int8 maps are judged end to end: CC, KLD)."""
    if precision == "fp32":
        return m["max_abs"] <= FP32_MAX_ABS * max(1.0, m["ref_max"])
    if precision == "int8":
        return m["corr"] >= INT8_MIN_CORR
    return m["corr"] >= FP16_MIN_CORR and m["rel_l2"] <= FP16_MAX_REL_L2


def rule(precision: str) -> str:
    """The tolerance of ``passes`` in words (for error messages and tables)."""
    if precision == "fp32":
        return f"max abs <= {FP32_MAX_ABS}"
    if precision == "int8":
        return f"corr >= {INT8_MIN_CORR}"
    return f"corr >= {FP16_MIN_CORR} and rel L2 <= {FP16_MAX_REL_L2}"


def ort_session(model: str | os.PathLike | onnx.ModelProto, threads: int = 0):
    """A CPU ONNX Runtime session; plugin nodes are rewritten to ``DeformConv`` first."""
    import onnxruntime as ort

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(Path(model))
    if plugin_nodes(model):
        model = plugin_to_deformconv(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_ort(session, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    return dict(zip(names, session.run(names, feed), strict=True))


def compare_outputs(ref: dict[str, np.ndarray], out: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {name: metrics(ref[name], out[name]) for name in ref}


def summarize(per_output: dict[str, dict[str, float]], backend: str) -> dict:
    """One manifest ``checks`` entry: worst max abs, lowest correlation, worst relative L2, per-output numbers."""
    return {
        "backend": backend,
        "max_abs": max(m["max_abs"] for m in per_output.values()),
        "corr": min(m["corr"] for m in per_output.values()),
        "rel_l2": max(m["rel_l2"] for m in per_output.values()),
        "outputs": per_output,
    }
