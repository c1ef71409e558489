"""TensorRT optimisation profiles from a bundle manifest's input specs (torch- and TensorRT-free).

A dynamic-batch bundle (docs/contracts.md) gives dimension 0 of every input as ``"batch"`` or ``"K*batch"``;
its engines get one profile over 1 .. ``max_streams`` streams: ``min`` = one stream's rows, ``opt`` =
``max`` = ``max_streams`` streams' (a full batch is the case worth tuning for). Static inputs (format 1
bundles) get their one shape.
"""

from __future__ import annotations

from collections.abc import Sequence

from esan.runtime.core.bundle import batch_rows

DEFAULT_MAX_STREAMS = 8
Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]


def profile_shapes(inputs: Sequence[dict], max_streams: int = DEFAULT_MAX_STREAMS) -> Profile:
    """``{input name: (min, opt, max)}`` for the manifest's input specs of one graph."""
    if isinstance(max_streams, bool) or not isinstance(max_streams, int) or max_streams < 1:
        raise ValueError(f"max_streams must be an integer >= 1, got {max_streams!r}")
    out = {}
    for spec in inputs:
        head, *rest = spec["shape"]
        tail = tuple(int(d) for d in rest)
        if isinstance(head, str):
            rows = batch_rows(head)
            out[spec["name"]] = ((rows, *tail), (rows * max_streams, *tail), (rows * max_streams, *tail))
        else:
            shape = (int(head), *tail)
            out[spec["name"]] = (shape, shape, shape)
    return out


def is_dynamic(manifest: dict) -> bool:
    """Whether the manifest's graphs take a dynamic batch (``"batch": "dynamic"``)."""
    return manifest.get("batch") == "dynamic"
