"""The naive schedule on a bundle's own graphs (e.g. an int8 bundle), to check streaming semantics.

``naive_onnx`` exports separate plain-conv graphs; quantized graphs cannot be re-exported that way (their
numbers come from calibration), so this engine recomputes everything with the bundle's graphs instead:
every aligned frame re-encodes its ``2T+1`` window frames with ``encoder`` (nothing cached but raw
frames), runs ``aligner`` on them, the forward cell steps ``cell_fwd``, and each output recomputes its
backward window from zero (``bwd_window`` for a full window, ``L+1`` ``cell_bwd`` steps otherwise, as the
runtime does). Same graphs, different schedule: the maps must equal the cached schedule's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from esan.bench.naive_torch import NaiveBackend

_WINDOW = (("win_f1", 0), ("win_f2", 1), ("win_f3", 2), ("win_p1", 3), ("win_p2", 4), ("win_p3", 5))
_REF = (("ref_p1", 6), ("ref_p2", 7), ("ref_p3", 8), ("ref_pc", 9))


class BundleNaiveEngine:
    """The naive stages on a bundle's ONNX Runtime sessions (CPU, batch 1)."""

    def __init__(self, bundle_dir: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        from esan.runtime.backends.ort_backend import session_options
        from esan.runtime.core.bundle import load_bundle

        self.bundle = load_bundle(bundle_dir)
        so = session_options(threads)
        self.sessions = {n: ort.InferenceSession(str(self.bundle.graph_path(n)), so, providers=["CPUExecutionProvider"])
                         for n in self.bundle.graphs}  # fmt: skip
        self.radius = self.bundle.radius
        shape = self.bundle.manifest["graphs"]["cell_fwd"]["inputs"][1]["shape"]
        self._zero = np.zeros((1, *shape[1:]), np.float32)

    def _run(self, name: str, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.sessions[name].run(None, feed)

    def encode(self, frame: np.ndarray, valid: np.ndarray) -> list[np.ndarray]:
        return self._run("encoder", {"frame": frame, "valid": valid})

    def align(self, window: Sequence[Sequence[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        feed = {n: np.concatenate([e[i] for e in window]) for n, i in _WINDOW}
        feed.update({n: window[self.radius][i] for n, i in _REF})
        xf, xb = self._run("aligner", feed)
        return xf, xb

    def step(self, direction: str, x: Any, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h_out, c_out = self._run(f"cell_{direction}", {"x": x[0 if direction == "fwd" else 1], "h": h, "c": c})
        return h_out, c_out

    def backward_window(self, xs: Sequence[Any]) -> np.ndarray | None:
        if len(xs) != self.bundle.lookahead + 1:
            return None
        return self._run("bwd_window", {"xs": np.concatenate([x[1] for x in xs])})[0]

    def zero_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self._zero.copy(), self._zero.copy()

    def decode(self, hf: np.ndarray, hb: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self._run("decoder", {"hf": hf, "hb": hb})[0][0, 0], dtype=np.float32)

    def close(self) -> None:
        self.sessions = {}


class BundleNaiveBackend(NaiveBackend):
    """``NaiveBackend`` whose backward window is the engine's recompute-from-zero (``bwd_window`` graph)."""

    def backward_window_batch(self, xss: Sequence[Sequence[Any]]) -> list[Any] | None:
        hbs = [self.engine.backward_window(xs) for xs in xss]
        return None if any(hb is None for hb in hbs) else hbs


def naive_backend(bundle_dir: str | os.PathLike, threads: int | None = None) -> BundleNaiveBackend:
    """A ``Backend`` running the naive schedule on the bundle's graphs (``StreamProcessor(backend, L)``)."""
    from types import SimpleNamespace

    engine = BundleNaiveEngine(bundle_dir, threads)
    b = engine.bundle
    cfg = SimpleNamespace(**b.config)
    cfg.level_size = lambda i: tuple(b.manifest["graphs"]["cell_fwd"]["inputs"][1]["shape"][2:4])
    cfg.output_size = b.output_size
    cfg.input_size = b.input_size
    return BundleNaiveBackend(engine, cfg, precision=b.precision)
