"""ONNX Runtime sessions of one bundle, chosen by the number of streams in a call.

A dynamic-batch bundle (manifest ``"batch": "dynamic"``) serves any number of streams, but ONNX Runtime
may optimise a graph better with its batch axis fixed. It did for ``bwd_window`` before graph revision 2
(a zero start state shaped by the batch kept a ``W_h * 0`` convolution alive, ~10 % of the graph); since
the exported window starts without that conv, the two are equal there, and on the paper preset the
aligner ran 5 % faster fixed, the other graphs within 2 % (ORT's profiler and medians:
``benchmarks/ort_sessions_ab.py``, ``benchmarks/results/ort_fixed_batch_sessions.json``). So, per graph:

* a **single-stream** session whose batch axis is fixed to 1 through ONNX Runtime's free-dimension overrides
  (``"batch"`` -> 1, ``"K*batch"`` -> K), used for every call with one stream; opened when the backend opens
  (one stream is the common case: ``esan-rt stream`` on one source);
* a **dynamic** session, used for calls with several streams; opened on the first such call, so a
  single-stream run never holds the graph twice.

Only ONNX Runtime's CPU execution provider gets the single-stream specialisation; GPU providers (CUDA, the
TensorRT EP with its engine cache keyed by shapes) and static batch-1 bundles keep one session per graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from esan.runtime.core.bundle import Bundle, batch_rows

Opener = Callable[[str, Any], Any]  # (graph name, SessionOptions) -> InferenceSession


def fixed_batch_dims(bundle: Bundle, graph: str) -> dict[str, int]:
    """The symbolic dimension names of ``graph``'s inputs and their values for one stream (``"5*batch"`` -> 5)."""
    dims = {}
    for t in bundle.graphs[graph].inputs:
        if isinstance(t.shape[0], str):
            dims[t.shape[0]] = batch_rows(t.shape[0])
    return dims


class SessionSet:
    """Per graph of ``bundle``: the single-stream session and the dynamic one (module docstring).

    ``make_options()`` returns fresh ``SessionOptions``; ``open(graph, options)`` opens one session.
    ``specialise``: open single-stream sessions with fixed shapes (False: one session per graph serves all).
    """

    def __init__(self, bundle: Bundle, make_options: Callable[[], Any], open: Opener, *, specialise: bool) -> None:
        self.bundle = bundle
        self._make_options, self._open = make_options, open
        self.specialise = specialise and bundle.batch == "dynamic"
        self.single: dict[str, Any] = {}
        self.dynamic: dict[str, Any] = {}
        for name in bundle.graphs:
            self.single[name] = self._open_session(name, fixed=self.specialise)
            if not self.specialise:
                self.dynamic[name] = self.single[name]

    def _open_session(self, graph: str, *, fixed: bool) -> Any:
        so = self._make_options()
        if fixed:
            for dim, value in fixed_batch_dims(self.bundle, graph).items():
                so.add_free_dimension_override_by_name(dim, value)
        return self._open(graph, so)

    def for_batch(self, graph: str, streams: int) -> Any:
        """The session for a call with ``streams`` streams (the dynamic one is opened on its first use)."""
        if streams == 1:
            return self.single[graph]
        if graph not in self.dynamic:
            self.dynamic[graph] = self._open_session(graph, fixed=False)
        return self.dynamic[graph]

    def open_all(self) -> None:
        """Open every dynamic session now (e.g. before a multi-stream run, so no round waits for one)."""
        for name in self.bundle.graphs:
            self.for_batch(name, 2)

    def close(self) -> None:
        self.single, self.dynamic = {}, {}
