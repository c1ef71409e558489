"""The naive schedule as ONNX graphs (exported with ``esan.export``'s machinery) and its ORT engine.

``export_naive_graphs`` writes ``naive_encoder``, ``naive_aligner``, ``naive_cell_fwd``,
``naive_cell_bwd`` and ``decoder`` (modules of ``esan.bench.naive_torch``) plus ``naive.json``
into a directory; ``OrtNaiveEngine`` runs them behind ``naive_torch.NaiveBackend``. Benchmark use only: the
graphs are not part of the runtime bundle contract.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from esan.bench.naive_torch import NAIVE_GRAPHS
from esan.runtime.core.errors import UserError
from esan.runtime.core.fsutil import atomic_write_text

NAIVE_MANIFEST = "naive.json"
NAIVE_FORMAT = "esan-rt-naive-graphs"

_IO = {
    "naive_encoder": (("frame", "valid"), ("f1", "f2", "f3")),
    "naive_aligner": (("win_f1", "win_f2", "win_f3"), ("a",)),
    "naive_cell_fwd": (("x", "h", "c"), ("h_out", "c_out")),
    "naive_cell_bwd": (("x", "h", "c"), ("h_out", "c_out")),
    "decoder": (("hf", "hb"), ("map",)),
}


def _examples(cfg: Any, np_dt: np.dtype) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    h, w = cfg.input_size
    k, nf, hid = cfg.window, cfg.nf, cfg.hidden
    lv = [cfg.level_size(i) for i in (1, 2, 3)]

    def rnd(*shape: int, dtype: Any = np_dt) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    frame = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    state = {"x": rnd(1, nf, *lv[0]), "h": rnd(1, hid, *lv[0]), "c": rnd(1, hid, *lv[0], dtype=np.float32)}
    return {
        "naive_encoder": {"frame": frame, "valid": np.ones((1, h, w, 1), np.uint8)},
        "naive_aligner": {f"win_f{i + 1}": rnd(k, nf, *lv[i]) for i in range(3)},
        "naive_cell_fwd": state,
        "naive_cell_bwd": state,
        "decoder": {"hf": rnd(1, hid, *lv[0]), "hb": rnd(1, hid, *lv[0])},
    }


def export_naive_graphs(
    model: Any, out: str | os.PathLike, precision: str = "fp32", dcn: str = "standard", opset: int = 19,
    source_sha256: str | None = None, progress: Callable[[str], None] = print,
) -> Path:  # fmt: skip
    """Export the naive graphs of ``model`` (fp32, eval) to ``out``; returns the directory."""
    import torch

    from esan.bench.naive_torch import build_naive_modules
    from esan.export.graphs import GraphDef
    from esan.export.onnx_export import export_graph

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np_dt = np.dtype("float16" if precision == "fp16" else "float32")
    mods = build_naive_modules(model, precision)
    examples = _examples(model.cfg, np_dt)
    files = {}
    for name in NAIVE_GRAPHS:
        t0 = time.perf_counter()
        ins, outs = _IO[name]
        dtypes = tuple(torch.from_numpy(examples[name][n]).dtype for n in ins)
        graph = GraphDef(name, mods[name], ins, outs, dtypes)
        export_graph(graph, examples[name], out / f"{name}.onnx", dcn, opset, dynamic=False)  # batch 1: one stream
        files[name] = f"{name}.onnx"
        progress(f"naive graph {name}: exported ({time.perf_counter() - t0:.1f} s)")
    manifest = {
        "format": NAIVE_FORMAT, "config": model.cfg.to_dict(), "precision": precision, "dcn": dcn,
        "opset": opset, "graphs": files, "source_sha256": source_sha256,
    }  # fmt: skip
    atomic_write_text(out / NAIVE_MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return out


def read_naive_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ``naive.json`` of a directory, or ``None`` when there is none (or it is unreadable)."""
    p = Path(path) / NAIVE_MANIFEST
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == NAIVE_FORMAT else None


def ort_providers(device: str) -> list[Any]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        return [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    if device == "tensorrt":
        return [("TensorrtExecutionProvider", {"device_id": 0}), "CUDAExecutionProvider", "CPUExecutionProvider"]
    raise UserError(f"the naive ORT engine runs on cpu, cuda or tensorrt, got {device!r}")


class OrtNaiveEngine:
    """Runs the naive graphs with ONNX Runtime (same session options as ``OrtBackend``)."""

    def __init__(self, directory: str | os.PathLike, device: str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        from esan.runtime.backends.ort_backend import session_options

        manifest = read_naive_manifest(directory)
        if manifest is None:
            raise UserError(f"{directory} holds no naive graphs ({NAIVE_MANIFEST}); the benchmark exports them")
        so = session_options(threads)
        prov = ort_providers(device)
        self.sessions = {
            n: ort.InferenceSession(str(Path(directory) / f), so, providers=prov) for n, f in manifest["graphs"].items()
        }
        self.dtypes = {
            n: {i.name: _np_dtype(i.type) for i in s.get_inputs()} for n, s in self.sessions.items()
        }
        h = self.sessions["naive_cell_fwd"].get_inputs()[1]
        self._zero = (np.zeros(h.shape, self.dtypes["naive_cell_fwd"]["h"]), np.zeros(h.shape, np.float32))

    def _run(self, name: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        types = self.dtypes[name]
        return self.sessions[name].run(None, {k: v.astype(types[k], copy=False) for k, v in feeds.items()})

    def encode(self, frame: np.ndarray, valid: np.ndarray) -> list[np.ndarray]:
        return self._run("naive_encoder", {"frame": frame, "valid": valid})

    def align(self, window: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
        feeds = {f"win_f{i + 1}": np.concatenate([e[i] for e in window], axis=0) for i in range(3)}
        return self._run("naive_aligner", feeds)[0]

    def step(self, direction: str, x: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h_out, c_out = self._run(f"naive_cell_{direction}", {"x": x, "h": h, "c": c})
        return h_out, c_out

    def zero_state(self) -> tuple[np.ndarray, np.ndarray]:
        return self._zero[0].copy(), self._zero[1].copy()

    def decode(self, hf: np.ndarray, hb: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self._run("decoder", {"hf": hf, "hb": hb})[0][0, 0], dtype=np.float32)

    def close(self) -> None:
        self.sessions = {}


def _np_dtype(onnx_type: str) -> np.dtype:
    return np.dtype({"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}[onnx_type])
