"""Polygraphy's side of ``esan-rt compare``: runners and the tolerance check (imports Polygraphy at import time).

``compare_graph`` runs one bundle graph on the PyTorch reference (a runner of ours), ONNX Runtime
(Polygraphy's ``OnnxrtRunner``) and TensorRT (Polygraphy's ``TrtRunner``) with
``Comparator.run``, and judges each backend against the reference with
``Comparator.compare_accuracy`` and our tolerance (``esan.export.parity.passes``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.onnxrt import OnnxrtRunner
from polygraphy.common import TensorMetadata
from polygraphy.comparator import Comparator
from polygraphy.logger import G_LOGGER

from esan.export import graphs, parity

REFERENCE = "torch"


class TorchReference(BaseRunner):
    """The checkpoint's fp32 PyTorch graph as a Polygraphy runner (each stream of a batch run alone)."""

    def __init__(self, graph: graphs.GraphDef, example: dict[str, np.ndarray]) -> None:
        super().__init__(name=REFERENCE)
        self.graph = graph
        self.meta = [(name, value.dtype, tuple(value.shape)) for name, value in example.items()]

    def get_input_metadata_impl(self) -> TensorMetadata:
        meta = TensorMetadata()
        for name, dtype, shape in self.meta:
            meta.add(name, dtype=dtype, shape=shape)
        return meta

    def infer_impl(self, feed_dict: dict[str, np.ndarray]) -> OrderedDict:
        feed = {k: (np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f" else np.asarray(v))
                for k, v in feed_dict.items()}  # fmt: skip
        t0 = time.perf_counter()
        out = graphs.run_torch_per_item(self.graph, feed)  # each stream alone: batching must not mix them
        self.inference_time = time.perf_counter() - t0
        return OrderedDict(out)


def ort_runner(onnx_path: Path) -> OnnxrtRunner:
    """ONNX Runtime on the CPU (plugin nodes rewritten to ONNX ``DeformConv`` by ``parity.ort_session``)."""
    return OnnxrtRunner(lambda: parity.ort_session(onnx_path, threads=1), name="ort")


def trt_runner(plan_path: Path) -> Any:
    """TensorRT on the bundle's engine (plugins must be registered before it activates)."""
    from polygraphy.backend.trt import EngineFromPath, TrtRunner

    return TrtRunner(EngineFromPath(str(plan_path)), name="trt")


def tolerance_check(precision: str, metrics: dict[tuple[str, str], dict]) -> Callable[[Any, Any], OrderedDict]:
    """A ``compare_func`` for ``Comparator.compare_accuracy``: our tolerance per output.

    It records each output's metrics (and verdict, under ``"ok"``) in ``metrics[(runner, output)]``.
    """

    def compare(reference: Any, result: Any) -> OrderedDict:
        verdicts: OrderedDict = OrderedDict()
        for name in reference.keys():
            m = parity.metrics(reference[name], result[name])
            m["ok"] = parity.passes(m, precision)
            metrics[(result.runner_name, name)] = m
            verdicts[name] = m["ok"]
        return verdicts

    return compare


def compare_graph(
    reference: TorchReference, runners: list[Any], feed: dict[str, np.ndarray], precision: str
) -> tuple[dict[tuple[str, str], dict], bool]:
    """Run ``feed`` through the reference and ``runners``; ``(metrics per (runner, output), all passed)``."""
    with G_LOGGER.verbosity(G_LOGGER.WARNING):
        results = Comparator.run([reference, *runners], data_loader=[feed])
    metrics: dict[tuple[str, str], dict] = {}
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):  # the table reports; Polygraphy's own lines would repeat it
        accuracy = Comparator.compare_accuracy(
            results, comparisons=[(0, i) for i in range(1, len(runners) + 1)],
            compare_func=tolerance_check(precision, metrics),
        )  # fmt: skip
    return metrics, bool(accuracy)
