"""End-to-end fidelity of a quantized bundle: its streamed maps against the float bundle's, per frame.

Both bundles stream the same frames through the real ``StreamProcessor`` on ONNX Runtime CPU; per frame
the int8 map is scored against the fp32 map as ground truth with the training metrics (CC; KL divergence
of the sum-normalised fp32 map from the int8 one), plus the max abs difference. Frames must be held out
from calibration (``calib_frames.load_calibration_frames`` reports which it used).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np


def stream_maps(bundle_dir: str | os.PathLike, frames: Iterable[np.ndarray], threads: int = 1,
                lookahead: int | None = None) -> np.ndarray:  # fmt: skip
    """All maps of one stream over ``frames`` (``float32 [N, H/2, W/2]``), cached schedule on ORT CPU."""
    from esan.runtime.backends.ort_backend import OrtBackend
    from esan.runtime.core.processor import StreamProcessor

    backend = OrtBackend(bundle_dir, threads=threads)
    try:
        proc = StreamProcessor(backend, backend.bundle.lookahead if lookahead is None else lookahead)
        out = [r for f in frames for r in proc.push(f)] + proc.finish()
    finally:
        backend.close()
    return np.stack([r.saliency for r in sorted(out, key=lambda r: r.index)])


def map_fidelity(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """Per-frame CC and KLD of ``got`` against ``ref`` (maps ``[N, h, w]``): means, worst, and max abs."""
    from esan.train.metrics import cc, kld

    ccs = np.array([cc(g, r) for r, g in zip(ref, got, strict=True)])
    klds = np.array([kld(g, r) for r, g in zip(ref, got, strict=True)])
    return {
        "frames": len(ref), "cc_mean": float(ccs.mean()), "cc_min": float(ccs.min()),
        "kld_mean": float(klds.mean()), "kld_max": float(klds.max()),
        "max_abs": float(np.abs(np.asarray(ref, np.float64) - got).max()),
    }  # fmt: skip


def compare_bundles(fp32_dir: str | os.PathLike, int8_dir: str | os.PathLike, clips: Sequence[Sequence[np.ndarray]],
                    threads: int = 1) -> dict:  # fmt: skip
    """Fidelity over several clips (each one stream); the per-clip tables and the mean over all frames."""
    per_clip, refs, gots = [], [], []
    for clip in clips:
        ref, got = stream_maps(fp32_dir, clip, threads), stream_maps(int8_dir, clip, threads)
        per_clip.append(map_fidelity(ref, got))
        refs.append(ref)
        gots.append(got)
    return {"clips": per_clip, "all": map_fidelity(np.concatenate(refs), np.concatenate(gots))}
