"""Saliency metrics matching the DHF1K benchmark's MATLAB code (numpy only, no torch).

Every metric takes 2-D arrays. The prediction is first resized to the ground-truth size with
``cv2.resize(..., INTER_LINEAR)`` (bilinear; MATLAB's ``imresize`` default is bicubic with
antialiasing, so scores of maps that need resizing differ slightly from the MATLAB numbers).

Edge cases follow the MATLAB code, which yields NaN in these cases:

* no fixations (``nss``, ``auc_judd``, ``auc_shuffled``) -> NaN;
* constant prediction or constant ground truth in ``nss``/``cc`` (std = 0, 0/0) -> NaN;
* constant prediction in ``auc_judd`` with ``jitter=False`` or in ``auc_shuffled`` (min-max
  gives 0/0) -> NaN (with the default jitter the map is no longer constant);
* ``sim``: a map that is all zero stays zero; a constant *non-zero* map becomes NaN after
  min-max, and MATLAB's ``min`` ignores NaN, so the pixel minimum is the other map: SIM = 1 when
  the other map is non-zero (we reproduce this with ``np.fmin``);
* ``kld``: an all-zero map is not normalised (stays zero), so an all-zero prediction scores
  ``sum(G*log(eps + G/eps))``, a large finite number;
* ``auc_shuffled`` with an empty other map -> NaN.

:class:`MetricAverager` averages per-frame scores skipping NaN and counts the skipped frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

EPS = 2.2204e-16  # MATLAB eps as written in the benchmark code
METRICS = ("auc_j", "sim", "s_auc", "cc", "nss", "kld")  # paper table order


def resize_to(pred: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize ``pred`` to ``shape`` (h, w) bilinearly (cv2 INTER_LINEAR) as float64."""
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {pred.shape}")
    if pred.shape != tuple(shape):
        pred = cv2.resize(pred, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)
    return pred


def _zscore(x: np.ndarray) -> np.ndarray:
    if x.size < 2 or x.max() == x.min():  # std is 0 (MATLAB: 0/0 -> NaN); avoid rounding residue
        return np.full(x.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x - x.mean()) / x.std(ddof=1)


def _minmax(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x - x.min()) / (x.max() - x.min())


def nss(pred: np.ndarray, fixation_map: np.ndarray) -> float:
    """Normalised scanpath saliency: mean of the z-scored map (sample std) at fixated pixels."""
    fix = np.asarray(fixation_map) > 0
    if not fix.any():
        return math.nan
    z = _zscore(resize_to(pred, fix.shape))
    return float(z[fix].mean())


def cc(pred: np.ndarray, gt_map: np.ndarray) -> float:
    """Pearson correlation of the z-scored prediction and ground-truth map."""
    gt = np.asarray(gt_map, dtype=np.float64)
    a = _zscore(resize_to(pred, gt.shape))
    b = _zscore(gt)
    a = a - a.mean()
    b = b - b.mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        return float((a * b).sum() / math.sqrt(float((a * a).sum() * (b * b).sum())))


def _sim_normalise(x: np.ndarray) -> np.ndarray:
    if not x.any():
        return x
    x = _minmax(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return x / x.sum()


def sim(pred: np.ndarray, gt_map: np.ndarray) -> float:
    """Similarity (histogram intersection) of min-max then sum-normalised maps."""
    gt = np.asarray(gt_map, dtype=np.float64)
    a = _sim_normalise(resize_to(pred, gt.shape))
    b = _sim_normalise(gt)
    return float(np.nansum(np.fmin(a, b)))


def kld(pred: np.ndarray, gt_map: np.ndarray) -> float:
    """KL divergence of the sum-normalised gt from the sum-normalised prediction (no min-max)."""
    g = np.asarray(gt_map, dtype=np.float64)
    p = resize_to(pred, g.shape)
    if p.any():
        p = p / p.sum()
    if g.any():
        g = g / g.sum()
    return float(np.sum(g * np.log(EPS + g / (p + EPS))))


def auc_judd(
    pred: np.ndarray,
    fixation_map: np.ndarray,
    jitter: bool = True,
    rng: np.random.Generator | None = None,
) -> float:
    """AUC-Judd: ROC over thresholds at the fixated values; jitter < 1e-7 breaks ties."""
    fix = np.asarray(fixation_map) > 0
    if not fix.any():
        return math.nan
    s = resize_to(pred, fix.shape)
    if jitter:
        rng = rng if rng is not None else np.random.default_rng()
        s = s + rng.random(s.shape) / 1e7
    s = _minmax(s)
    if np.isnan(s).all():
        return math.nan
    S = s.ravel()
    sth = S[fix.ravel()]
    n_fix, n_pix = sth.size, S.size
    thresholds = np.sort(sth)[::-1]
    s_sorted = np.sort(S)
    # number of pixels >= thr for each threshold (sorted search == sum(S >= thr))
    above = n_pix - np.searchsorted(s_sorted, thresholds, side="left")
    i = np.arange(1, n_fix + 1)
    tp = np.concatenate([[0.0], i / n_fix, [1.0]])
    with np.errstate(divide="ignore", invalid="ignore"):
        fp = np.concatenate([[0.0], (above - i) / (n_pix - n_fix), [1.0]])
    return float(np.trapezoid(tp, fp) if hasattr(np, "trapezoid") else np.trapz(tp, fp))


def matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """MATLAB's ``a:d:b`` for d > 0 (first half ``a + k*d``, second half counted back from the end).

    Reproduces MATLAB's element values so thresholds landing on the grid compare like MATLAB's.
    """
    if d <= 0 or b < a:
        return np.zeros(0)
    tol = 2.0 * np.finfo(float).eps * max(abs(a), abs(b))
    n = int(round((b - a) / d))
    if a + n * d - b > tol:
        n -= 1
    c = a + n * d
    if c - b > -tol:
        c = b
    v = np.empty(n + 1)
    k = np.arange(n // 2 + 1)
    v[k] = a + k * d
    k = np.arange((n - 1) // 2 + 1)
    v[n - k] = c - k * d
    return v


def auc_shuffled(
    pred: np.ndarray,
    fixations: np.ndarray,
    other_map: np.ndarray,
    n_splits: int = 100,
    step: float = 0.1,
    rng: np.random.Generator | None = None,
) -> float:
    """Shuffled AUC: negatives drawn from ``other_map``'s fixations, fixed thresholds 0:step:max.

    As in the MATLAB code, ``max`` is the largest normalised value among this split's positives
    and negatives, and the threshold list is inclusive of it when it falls on the grid.
    """
    fix = np.asarray(fixations) > 0
    if not fix.any():
        return math.nan
    s = _minmax(resize_to(pred, fix.shape))
    if np.isnan(s).all():
        return math.nan
    oth = np.asarray(other_map)
    if oth.shape != fix.shape:
        raise ValueError(f"other map shape {oth.shape} != fixation map shape {fix.shape}")
    S = s.ravel()
    sth = S[fix.ravel()]
    n_fix = sth.size
    ind = np.flatnonzero(oth.ravel() > 0)
    n_oth = min(n_fix, ind.size)
    if n_oth == 0:
        return math.nan
    rng = rng if rng is not None else np.random.default_rng()
    trapz = np.trapezoid if hasattr(np, "trapezoid") else np.trapz
    aucs = np.empty(n_splits)
    for k in range(n_splits):
        curfix = S[rng.permutation(ind)[:n_oth]]
        top = float(max(sth.max(), curfix.max()))
        thresholds = matlab_colon(0.0, step, top)[::-1]
        tp = (sth[None, :] >= thresholds[:, None]).sum(1) / n_fix
        fp = (curfix[None, :] >= thresholds[:, None]).sum(1) / n_oth
        tp = np.concatenate([[0.0], tp, [1.0]])
        fp = np.concatenate([[0.0], fp, [1.0]])
        aucs[k] = trapz(tp, fp)
    return float(aucs.mean())


def fixation_points(fixation_map: np.ndarray) -> np.ndarray:
    """(y, x) coordinates of the fixated pixels, shape [K, 2]."""
    return np.argwhere(np.asarray(fixation_map) > 0)


def other_map_for(
    pool: Sequence[np.ndarray | Callable[[], np.ndarray]],
    shape: tuple[int, int],
    exclude: int | None = None,
    n_frames: int = 10,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Union of the fixations of ``n_frames`` random frames of ``pool`` (other than ``exclude``).

    ``pool`` holds binary fixation maps or zero-argument callables returning them (for lazy
    loading). Each fixation (y, x) of a map of size (h0, w0) lands on pixel
    ``(floor(y*h/h0), floor(x*w/w0))`` of the (h, w) result, so no fixation is lost or blurred.
    Frames are drawn without replacement (all of them if the pool is smaller).
    """
    rng = rng if rng is not None else np.random.default_rng()
    candidates = [i for i in range(len(pool)) if i != exclude]
    out = np.zeros(shape, dtype=np.uint8)
    if not candidates:
        return out
    chosen = rng.choice(len(candidates), size=min(n_frames, len(candidates)), replace=False)
    h, w = int(shape[0]), int(shape[1])
    for c in chosen:
        item = pool[candidates[int(c)]]
        fmap = np.asarray(item() if callable(item) else item)
        pts = fixation_points(fmap)
        if pts.size == 0:
            continue
        h0, w0 = fmap.shape[:2]
        ys = np.minimum(pts[:, 0] * h // h0, h - 1)
        xs = np.minimum(pts[:, 1] * w // w0, w - 1)
        out[ys, xs] = 1
    return out


def all_metrics(
    pred: np.ndarray,
    gt_map: np.ndarray,
    fixation_map: np.ndarray,
    other_map: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    n_splits: int = 100,
) -> dict[str, float]:
    """The six paper metrics for one frame (``s_auc`` is NaN without an other map)."""
    rng = rng if rng is not None else np.random.default_rng()
    return {
        "auc_j": auc_judd(pred, fixation_map, rng=rng),
        "sim": sim(pred, gt_map),
        "s_auc": (
            auc_shuffled(pred, fixation_map, other_map, n_splits=n_splits, rng=rng)
            if other_map is not None
            else math.nan
        ),
        "cc": cc(pred, gt_map),
        "nss": nss(pred, fixation_map),
        "kld": kld(pred, gt_map),
    }


class MetricAverager:
    """Average per-frame scores over frames, skipping NaN and counting the skipped frames."""

    def __init__(self, names: Sequence[str] = METRICS) -> None:
        self.names = tuple(names)
        self._sum = dict.fromkeys(self.names, 0.0)
        self._n = dict.fromkeys(self.names, 0)
        self._skipped = dict.fromkeys(self.names, 0)

    def add(self, scores: dict[str, float]) -> None:
        """Add one frame's scores (missing names count as skipped)."""
        for name in self.names:
            v = scores.get(name, math.nan)
            if v is None or not math.isfinite(float(v)):
                self._skipped[name] += 1
            else:
                self._sum[name] += float(v)
                self._n[name] += 1

    def mean(self, name: str) -> float:
        """Mean of ``name`` over the scored frames (NaN if none)."""
        return self._sum[name] / self._n[name] if self._n[name] else math.nan

    def summary(self) -> dict[str, dict[str, float | int]]:
        """``{metric: {"mean", "frames", "skipped"}}``."""
        return {
            n: {"mean": self.mean(n), "frames": self._n[n], "skipped": self._skipped[n]}
            for n in self.names
        }
