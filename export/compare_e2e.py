"""``esan-rt compare``'s end-to-end row: a bundle's streamed maps against the checkpoint's fp32 PyTorch stream.

Both run through the public runtime API (``esan.runtime.open``) as a user runs them: the bundle on ONNX
Runtime's CPU provider, the checkpoint on the torch backend in fp32, one stream each over the same frames
of the generated sample clip (letterboxed by the runtime). Per frame: CC of the bundle's map with the
reference map and KL divergence of the reference from it (the training metrics); over the clip: the max
abs difference and the relative L2 error. The judgement follows the bundle's precision: fp32 max abs <=
1e-4; fp16 CC >= 0.999 and relative L2 <= 1 %; int8 mean CC >= 0.99 and mean KLD <= 0.02 (docs/design.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FP32_MAX_ABS = 1e-4
FP16_MIN_CC, FP16_MAX_REL_L2 = 0.999, 0.01
INT8_MIN_CC, INT8_MAX_KLD = 0.99, 0.02


def stream_maps(processor, frames: list[np.ndarray]) -> np.ndarray:
    """Every map of one stream over ``frames`` (``float32 [N, h, w]``, in frame order); closes ``processor``."""
    with processor:
        out = [r for f in frames for r in processor.push(f)] + processor.finish()
    return np.stack([r.saliency for r in sorted(out, key=lambda r: r.index)])


def map_metrics(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """``got`` maps against ``ref`` maps (``[N, h, w]``): per-frame CC and KLD (mean, worst), max abs, relative L2."""
    from esan.train.metrics import cc, kld

    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    ccs = np.array([cc(g, r) for r, g in zip(ref, got, strict=True)])
    klds = np.array([kld(g, r) for r, g in zip(ref, got, strict=True)])
    return {
        "frames": len(ref), "cc_mean": float(ccs.mean()), "cc_min": float(ccs.min()),
        "kld_mean": float(klds.mean()), "kld_max": float(klds.max()), "max_abs": float(np.abs(ref - got).max()),
        "rel_l2": float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12)),
    }  # fmt: skip


def judge(precision: str, m: dict[str, float]) -> bool:
    """Whether end-to-end metrics ``m`` meet the bundle precision's tolerance (module docstring)."""
    if precision == "fp32":
        return m["max_abs"] <= FP32_MAX_ABS
    if precision == "fp16":
        return m["cc_mean"] >= FP16_MIN_CC and m["rel_l2"] <= FP16_MAX_REL_L2
    return m["cc_mean"] >= INT8_MIN_CC and m["kld_mean"] <= INT8_MAX_KLD


def end_to_end(bundle_dir: str | Path, ckpt: str | Path, frames: int, threads: int | None = None) -> dict:
    """Stream ``frames`` sample-clip frames through both; the metrics, the tolerance verdict and the precision."""
    import esan.runtime
    from esan.runtime.core.bundle import load_bundle
    from esan.runtime.core.sample_clip import sample_frames
    bundle = load_bundle(bundle_dir)
    h, w = bundle.config["input_size"]
    clip = list(sample_frames(frames, hw=(h + h // 4, w)))  # another aspect than the model's: letterboxed
    got = stream_maps(esan.runtime.open(bundle=bundle.root, backend="ort", device="cpu", threads=threads, single=True,
                                        log=lambda _m: None), clip)  # fmt: skip
    ref = stream_maps(esan.runtime.open(ckpt, backend="torch", device="cpu", lookahead=bundle.lookahead,
                                        precision="fp32", threads=threads, single=True, log=lambda _m: None), clip)
    m = map_metrics(ref, got)
    return {**m, "precision": bundle.precision, "ok": judge(bundle.precision, m)}
