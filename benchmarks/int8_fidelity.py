"""End-to-end fidelity of a quantized bundle: its streamed maps against the float bundle's, per frame.

Both bundles stream the same frames through the real ``StreamProcessor`` on ONNX Runtime CPU (the public
runtime API); per frame the int8 map is scored against the fp32 map as ground truth with
``esan.export.compare_e2e.map_metrics`` (the training metrics' CC and KL divergence, max abs, relative L2),
the same scoring as ``esan-rt compare``'s end-to-end row. Frames must be held out
from calibration (``calib_frames.load_calibration_frames`` reports which it used).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from esan.export.compare_e2e import map_metrics
from esan.export.compare_e2e import stream_maps as processor_maps


def stream_maps(bundle_dir: str | os.PathLike, frames: Iterable[np.ndarray], threads: int = 1,
                lookahead: int | None = None) -> np.ndarray:  # fmt: skip
    """All maps of one stream over ``frames`` (``float32 [N, H/2, W/2]``), cached schedule on ORT CPU."""
    import esan.runtime

    proc = esan.runtime.open(bundle=bundle_dir, backend="ort", device="cpu", threads=threads, lookahead=lookahead,
                             single=True, log=lambda _m: None)  # fmt: skip
    return processor_maps(proc, list(frames))


def compare_bundles(fp32_dir: str | os.PathLike, int8_dir: str | os.PathLike, clips: Sequence[Sequence[np.ndarray]],
                    threads: int = 1) -> dict:  # fmt: skip
    """Fidelity over several clips (each one stream); the per-clip tables and the mean over all frames."""
    per_clip, refs, gots = [], [], []
    for clip in clips:
        ref, got = stream_maps(fp32_dir, clip, threads), stream_maps(int8_dir, clip, threads)
        per_clip.append(map_metrics(ref, got))
        refs.append(ref)
        gots.append(got)
    return {"clips": per_clip, "all": map_metrics(np.concatenate(refs), np.concatenate(gots))}
