"""Fold weight slices into initializers.

The model's cached projections apply input-channel slices of conv weights (``split_conv``). The
exporter's optimizer leaves ``Slice`` on large initializers unfolded, so a graph would store the full
weight and slice it at run time (twice the file size, and TensorRT would see non-constant conv
weights). ``fold_initializer_slices`` replaces each such ``Slice`` by its result and drops the
initializers nothing uses any more.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


def _slice(data: np.ndarray, starts, ends, axes=None, steps=None) -> np.ndarray:
    axes = list(range(len(starts))) if axes is None else [int(a) % data.ndim for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * data.ndim
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        index[a] = slice(int(s), int(e), int(st))
    return np.ascontiguousarray(data[tuple(index)])


def fold_initializer_slices(model: onnx.ModelProto) -> int:
    """Fold, in place, every ``Slice`` whose inputs are all initializers; returns how many."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    kept, folded = [], 0
    for node in graph.node:
        names = [n for n in node.input if n]
        if node.op_type != "Slice" or node.domain not in ("", "ai.onnx") or not all(n in inits for n in names):
            kept.append(node)
            continue
        args = [numpy_helper.to_array(inits[n]) if n else None for n in node.input]
        result = _slice(args[0], *[a.tolist() if a is not None else None for a in args[1:]])
        tensor = numpy_helper.from_array(result, node.output[0])
        graph.initializer.append(tensor)
        inits[tensor.name] = tensor
        folded += 1
    if folded:
        del graph.node[:]
        graph.node.extend(kept)
        used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
        keep = [i for i in graph.initializer if i.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return folded
