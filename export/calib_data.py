"""Calibration inputs for every bundle graph, from the float graphs run over real frames.

The fp32 graphs of the bundle being quantized run the streaming schedule over each run of consecutive
frames (batch 1): encoder per frame, aligner per frame on its clamped window, the forward cell through
the run, the backward cell from zero over each lookahead window, the unrolled ``bwd_window`` where a full
window exists, the decoder on ``(Hf, Hb)``. Every graph's inputs are saved as ``.npz`` files (one per call,
at most ``per_graph`` per graph, evenly subsampled), so the later graphs see real aligned features and
real ConvLSTM states, never noise. ``NpzReader`` feeds them to ONNX Runtime's calibrator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from esan.export.graphs import GRAPH_NAMES, WINDOW_INPUTS
from esan.export.parity import ort_session, run_ort
from esan.runtime.core.letterbox import letterbox, valid_mask
from esan.train.model import REFERENCE_NAMES

_WINDOW_KEYS = ("f1", "f2", "f3", "nbr_p1", "nbr_p2", "nbr_p3")


def letterboxed(frame: np.ndarray, size_hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """The encoder's inputs for one RGB frame."""
    canvas, box = letterbox(frame, size_hw)
    return {"frame": canvas[None], "valid": valid_mask(box, size_hw)[None]}


class FloatChain:
    """The fp32 graphs of a bundle directory, run as the streaming schedule over runs of frames."""

    def __init__(self, graph_dir: Path, cfg: dict, lookahead: int, threads: int = 0) -> None:
        self.sessions = {g: ort_session(Path(graph_dir) / f"{g}.onnx", threads) for g in GRAPH_NAMES}
        self.size = tuple(cfg["input_size"])
        self.radius, self.lookahead = int(cfg["radius"]), lookahead

    def run(self, frames: Sequence[np.ndarray], record: Callable[[str, dict], None]) -> None:
        """Run the schedule over consecutive ``frames``; ``record(graph, inputs)`` sees every graph call."""
        n, T, L = len(frames), self.radius, self.lookahead
        enc = []
        for f in frames:
            feed = letterboxed(f, self.size)
            record("encoder", feed)
            enc.append(run_ort(self.sessions["encoder"], feed))
        xf, xb = [], []
        for t in range(n):
            win = [enc[min(max(j, 0), n - 1)] for j in range(t - T, t + T + 1)]
            feed = {wn: np.concatenate([e[k] for e in win]) for wn, k in zip(WINDOW_INPUTS, _WINDOW_KEYS, strict=True)}
            feed.update({k: enc[t][k] for k in REFERENCE_NAMES})
            record("aligner", feed)
            out = run_ort(self.sessions["aligner"], feed)
            xf.append(out["xf"])
            xb.append(out["xb"])
        zero = np.zeros((1, *_state_shape(self.sessions["cell_fwd"])), np.float32)
        h, c, hf = zero, zero, []
        for t in range(n):
            feed = {"x": xf[t], "h": h, "c": c}
            record("cell_fwd", feed)
            out = run_ort(self.sessions["cell_fwd"], feed)
            h, c = out["h_out"], out["c_out"]
            hf.append(h)
        for t in range(n):
            h, c = zero, zero
            for j in range(min(t + L, n - 1), t - 1, -1):
                feed = {"x": xb[j], "h": h, "c": c}
                record("cell_bwd", feed)
                out = run_ort(self.sessions["cell_bwd"], feed)
                h, c = out["h_out"], out["c_out"]
            if t + L <= n - 1:
                record("bwd_window", {"xs": np.concatenate(xb[t : t + L + 1])})
            record("decoder", {"hf": hf[t], "hb": h})


def _state_shape(cell) -> tuple[int, ...]:
    shape = cell.get_inputs()[1].shape  # h: [batch, hidden, h1, w1]
    return tuple(int(d) for d in shape[1:])


def collect(chain: FloatChain, runs: Sequence[Sequence[np.ndarray]], out_dir: Path, per_graph: int,
            progress: Callable[[int], None] | None = None) -> dict[str, list[Path]]:  # fmt: skip
    """Run ``chain`` over ``runs``; save at most ``per_graph`` input sets per graph under ``out_dir``."""
    counts = dict.fromkeys(GRAPH_NAMES, 0)
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = {}
    for g in GRAPH_NAMES:  # an even subsample of at most per_graph of each graph's calls
        n = _expected_calls(g, runs, chain.lookahead)
        keep[g] = set(np.linspace(0, max(n - 1, 0), min(per_graph, n)).round().astype(int).tolist()) if n else set()
    paths: dict[str, list[Path]] = {g: [] for g in GRAPH_NAMES}

    def record(graph: str, feed: dict) -> None:
        i = counts[graph]
        counts[graph] += 1
        if i in keep[graph]:
            path = out_dir / f"{graph}-{i:06d}.npz"
            np.savez(path, **feed)
            paths[graph].append(path)

    for r in runs:
        chain.run(r, record)
        if progress is not None:
            progress(len(r))
    return paths


def _expected_calls(graph: str, runs: Sequence[Sequence[np.ndarray]], lookahead: int) -> int:
    n = [len(r) for r in runs]
    if graph in ("encoder", "aligner", "cell_fwd", "decoder"):
        return sum(n)
    if graph == "bwd_window":
        return sum(max(k - lookahead, 0) for k in n)
    return sum(min(t + lookahead, k - 1) - t + 1 for k in n for t in range(k))  # cell_bwd


class NpzReader(CalibrationDataReader):
    """ONNX Runtime calibration reader over saved input sets (``collect``), loaded one at a time."""

    def __init__(self, paths: Sequence[Path], names: Sequence[str] | None = None) -> None:
        self.paths, self.names = list(paths), names
        self._it = iter(self.paths)

    def get_next(self) -> dict[str, np.ndarray] | None:
        path = next(self._it, None)
        if path is None:
            return None
        with np.load(path) as z:
            return {k: z[k] for k in (self.names or z.files)}

    def rewind(self) -> None:
        self._it = iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)


def load_inputs(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}

