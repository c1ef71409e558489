"""Metrics: hand-computed values, an independent second formulation of each metric, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from esan.train import metrics as M

RNG = np.random.default_rng(0)


def _rand_case(shape=(7, 11), n_fix=9, seed=1):
    rng = np.random.default_rng(seed)
    pred = rng.random(shape)
    gt = rng.random(shape) ** 3
    fix = np.zeros(shape, dtype=np.uint8)
    fix.flat[rng.choice(fix.size, n_fix, replace=False)] = 1
    return pred, gt, fix


# ----------------------------------------------------------------------------- hand-computed


def test_nss_hand():
    pred = np.array([[0, 1, 2], [3, 4, 5]], float)
    fix = np.zeros((2, 3))
    fix[1, 2] = 1
    assert M.nss(pred, fix) == pytest.approx(2.5 / math.sqrt(3.5))


def test_cc_hand():
    p = np.array([[1, 0, 0], [0, 0, 0]], float)
    g = np.array([[1, 1, 0], [0, 0, 0]], float)
    assert M.cc(p, g) == pytest.approx(2 / math.sqrt(10))
    assert M.cc(3 * g + 1, g) == pytest.approx(1.0)
    assert M.cc(-g, g) == pytest.approx(-1.0)


def test_sim_hand():
    p = np.array([[0, 2, 4], [0, 0, 2]], float)
    g = np.array([[1, 1, 0], [0, 0, 2]], float)
    assert M.sim(p, g) == pytest.approx(0.5)
    assert M.sim(g, g) == pytest.approx(1.0)


def test_kld_hand():
    p = np.array([[1, 1, 0], [0, 0, 2]], float)
    g = np.array([[1, 0, 0], [0, 0, 1]], float)
    assert M.kld(p, g) == pytest.approx(0.5 * math.log(2), rel=1e-9)
    assert M.kld(g, g) == pytest.approx(0.0, abs=1e-12)


def test_auc_judd_hand():
    pred = np.array([[0.1, 0.9, 0.5], [0.3, 0.7, 0.2]])
    fix = np.array([[0, 1, 0], [1, 0, 0]])
    # normalised: [0, 1, .5; .25, .75, .125]; thresholds 1, .25 -> ROC (0,0),(0,.5),(.5,1),(1,1)
    assert M.auc_judd(pred, fix, jitter=False) == pytest.approx(0.875)
    # the jitter (< 1e-7) does not change it
    assert M.auc_judd(pred, fix, rng=np.random.default_rng(3)) == pytest.approx(0.875, abs=1e-6)


def test_auc_shuffled_hand():
    pred = np.array([[0.0, 0.22, 0.43, 0.64], [0.86, 1.0, 0.35, 0.05]])
    fix = np.zeros((2, 4))
    fix[1, 1] = fix[0, 3] = 1  # positives 1.0, 0.64
    other = np.zeros((2, 4))
    other[0, 0] = other[1, 0] = 1  # negatives 0.0, 0.86 (all of them drawn every split)
    # thresholds 1.0 .. 0.0 step .1: (tp, fp) = (.5,0) at 1.0, 0.9; (.5,.5) at .8, .7;
    # (1,.5) at .6 ... .1; (1,1) at 0 -> area 0.5*0.5 + 0.5*1 = 0.75
    tps = [0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1, 1, 1, 1]
    fps = [0, 0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1]
    expected = np.trapezoid([0] + tps + [1], [0] + fps + [1])
    assert expected == pytest.approx(0.75)
    assert M.auc_shuffled(pred, fix, other, n_splits=5, rng=np.random.default_rng(0)) == pytest.approx(0.75)


# ------------------------------------------------------------------ independent formulations


def _nss_ref(pred, fix):
    return float(stats.zscore(pred, axis=None, ddof=1)[fix > 0].mean())


def _cc_ref(pred, gt):
    return float(np.corrcoef(pred.ravel(), gt.ravel())[0, 1])


def _sim_ref(pred, gt):
    def norm(x):
        x = (x - x.min()) / np.ptp(x)
        return x / x.sum()

    a, b = norm(pred).ravel(), norm(gt).ravel()
    return float(sum(min(u, v) for u, v in zip(a, b, strict=True)))


def _kld_ref(pred, gt):
    p, g = pred.ravel() / pred.sum(), gt.ravel() / gt.sum()
    e = 2.2204e-16
    return float(sum(gi * math.log(e + gi / (pi + e)) for pi, gi in zip(p, g, strict=True)))


def _roc_area(points):
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        area += (x1 - x0) * (y0 + y1) / 2
    return area


def _auc_judd_ref(pred, fix):
    s = ((pred - pred.min()) / (pred.max() - pred.min())).ravel().tolist()
    f = fix.ravel().tolist()
    pos = [v for v, m in zip(s, f, strict=True) if m]
    neg = [v for v, m in zip(s, f, strict=True) if not m]
    pts = [(0.0, 0.0)]
    for i, thr in enumerate(sorted(pos, reverse=True), start=1):
        n_above = sum(1 for v in s if v >= thr)
        pts.append(((n_above - i) / len(neg), i / len(pos)))
    pts.append((1.0, 1.0))
    return _roc_area(pts)


def _auc_shuffled_ref(pred, fix, other):
    """All other fixations drawn (deterministic when n_other <= n_fix)."""
    s = ((pred - pred.min()) / (pred.max() - pred.min()))
    pos = s[fix > 0].tolist()
    neg = s[other > 0].tolist()
    top = max(pos + neg)
    thr = [k / 10 for k in range(int(top * 10 + 1e-9), -1, -1)]
    pts = [(0.0, 0.0)]
    for t in thr:
        pts.append((sum(v >= t for v in neg) / len(neg), sum(v >= t for v in pos) / len(pos)))
    pts.append((1.0, 1.0))
    return _roc_area(pts)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_against_independent_formulations(seed):
    pred, gt, fix = _rand_case(seed=seed)
    assert M.nss(pred, fix) == pytest.approx(_nss_ref(pred, fix), rel=1e-10)
    assert M.cc(pred, gt) == pytest.approx(_cc_ref(pred, gt), rel=1e-10)
    assert M.sim(pred, gt) == pytest.approx(_sim_ref(pred, gt), rel=1e-10)
    assert M.kld(pred, gt) == pytest.approx(_kld_ref(pred, gt), rel=1e-10)
    assert M.auc_judd(pred, fix, jitter=False) == pytest.approx(_auc_judd_ref(pred, fix), rel=1e-12)
    rng = np.random.default_rng(seed)
    other = np.zeros_like(fix)
    other.flat[rng.choice(fix.size, 5, replace=False)] = 1  # 5 <= 9 fixations: all drawn
    got = M.auc_shuffled(pred, fix, other, n_splits=3, rng=rng)
    assert got == pytest.approx(_auc_shuffled_ref(pred, fix, other), rel=1e-12)


def test_auc_judd_ties_and_jitter():
    pred = np.zeros((4, 6))
    pred[1:3, 2:4] = 1.0
    fix = np.zeros((4, 6))
    fix[1, 2] = fix[0, 0] = 1
    no_jit = M.auc_judd(pred, fix, jitter=False)
    assert no_jit == pytest.approx(_auc_judd_ref(pred, fix))
    jit = M.auc_judd(pred, fix, rng=np.random.default_rng(0))
    assert 0.0 <= jit <= 1.0 and math.isfinite(jit)


def test_auc_shuffled_subsamples_negatives():
    pred, _, fix = _rand_case(shape=(9, 13), n_fix=4, seed=5)
    other = np.zeros_like(fix)
    other.flat[np.random.default_rng(9).choice(fix.size, 30, replace=False)] = 1
    a = M.auc_shuffled(pred, fix, other, rng=np.random.default_rng(1))
    b = M.auc_shuffled(pred, fix, other, rng=np.random.default_rng(1))
    assert a == b and 0.0 <= a <= 1.0
    # perfect prediction of the fixations against disjoint negatives -> high score
    good = fix.astype(float) + 0.01 * pred
    assert M.auc_shuffled(good, fix, other * (fix == 0), rng=np.random.default_rng(1)) > 0.9


def test_matlab_colon():
    assert M.matlab_colon(0, 0.1, 1.0).tolist()[3] == 0.30000000000000004  # as MATLAB
    assert M.matlab_colon(0, 0.1, 1.0)[-1] == 1.0
    assert len(M.matlab_colon(0, 0.1, 0.95)) == 10
    assert M.matlab_colon(0, 0.1, 0.0).tolist() == [0.0]


# ------------------------------------------------------------------------------- resizing


def test_prediction_resized_bilinear():
    small = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    gt = np.random.default_rng(0).random((6, 10))
    import cv2

    big = cv2.resize(small.astype(np.float64), (10, 6), interpolation=cv2.INTER_LINEAR)
    assert M.cc(small, gt) == pytest.approx(_cc_ref(big, gt))
    fix = np.zeros((6, 10))
    fix[0, 0] = fix[5, 9] = 1
    assert M.nss(small, fix) == pytest.approx(_nss_ref(big, fix))


# ----------------------------------------------------------------------------- edge cases


def test_no_fixations_is_nan():
    pred = np.random.default_rng(0).random((3, 5))
    empty = np.zeros((3, 5))
    assert math.isnan(M.nss(pred, empty))
    assert math.isnan(M.auc_judd(pred, empty))
    assert math.isnan(M.auc_shuffled(pred, empty, np.ones((3, 5))))


def test_constant_maps_like_matlab():
    fix = np.zeros((3, 5))
    fix[1, 1] = 1
    gt = np.random.default_rng(0).random((3, 5))
    const = np.full((3, 5), 0.3)
    assert math.isnan(M.nss(const, fix))
    assert math.isnan(M.cc(const, gt))
    assert math.isnan(M.auc_judd(const, fix, jitter=False))
    assert math.isnan(M.auc_shuffled(const, fix, np.ones((3, 5))))
    assert M.sim(const, gt) == pytest.approx(1.0)  # MATLAB min ignores the NaN of 0/0
    assert M.sim(np.zeros((3, 5)), gt) == 0.0  # all-zero stays zero
    assert math.isfinite(M.kld(const, gt))
    assert math.isfinite(M.kld(np.zeros((3, 5)), gt)) and M.kld(np.zeros((3, 5)), gt) > 10
    # with jitter a constant map is no longer constant: chance level
    assert 0.0 <= M.auc_judd(const, fix, rng=np.random.default_rng(0)) <= 1.0


def test_empty_other_map_is_nan():
    pred, _, fix = _rand_case()
    assert math.isnan(M.auc_shuffled(pred, fix, np.zeros_like(fix)))


# ------------------------------------------------------------------ other map, aggregation


def test_other_map_for():
    pool = []
    for k in range(12):
        f = np.zeros((20, 30), np.uint8)
        f[k, 2 * k] = 1
        pool.append(f)
    pool.append(lambda: np.ones((2, 3), np.uint8))  # lazy, different size
    out = M.other_map_for(pool, (10, 15), exclude=0, rng=np.random.default_rng(0))
    assert out.shape == (10, 15) and out.dtype == np.uint8
    chosen = 1 + np.random.default_rng(0).choice(12, size=10, replace=False)  # pool indices, frame 0 excluded
    want = np.zeros((10, 15), np.uint8)
    for k in chosen:  # frame k's fixation (k, 2k) of 20x30 lands on (k*10//20, 2k*15//30); frame 12: all of 2x3
        for y, x in ([(k, 2 * k)] if k < 12 else [(y, x) for y in range(2) for x in range(3)]):
            want[y * 10 // (20 if k < 12 else 2), x * 15 // (30 if k < 12 else 3)] = 1
    assert np.array_equal(out, want)
    full = M.other_map_for(pool[:3], (20, 30), exclude=None, n_frames=10, rng=np.random.default_rng(0))
    assert set(map(tuple, np.argwhere(full))) == {(0, 0), (1, 2), (2, 4)}
    ex = M.other_map_for(pool[:3], (20, 30), exclude=0, rng=np.random.default_rng(0))
    assert set(map(tuple, np.argwhere(ex))) == {(1, 2), (2, 4)}
    lazy = M.other_map_for(pool[-1:], (4, 6), rng=np.random.default_rng(0))
    assert lazy.sum() == 6  # 2x3 points scaled onto 4x6: one pixel each


def test_averager_skips_nan():
    avg = M.MetricAverager(("cc", "nss"))
    avg.add({"cc": 0.5, "nss": 1.0})
    avg.add({"cc": 0.7, "nss": math.nan})
    avg.add({"cc": 0.3})
    s = avg.summary()
    assert s["cc"] == {"mean": pytest.approx(0.5), "frames": 3, "skipped": 0}
    assert s["nss"]["mean"] == 1.0 and s["nss"]["frames"] == 1 and s["nss"]["skipped"] == 2
    assert math.isnan(M.MetricAverager(("cc",)).mean("cc"))


def test_all_metrics_keys():
    pred, gt, fix = _rand_case()
    out = M.all_metrics(pred, gt, fix, other_map=fix, rng=np.random.default_rng(0), n_splits=3)
    assert tuple(out) == M.METRICS and all(math.isfinite(v) for v in out.values())
    assert math.isnan(M.all_metrics(pred, gt, fix)["s_auc"])


def test_metrics_module_has_no_torch():
    import subprocess
    import sys

    code = "import sys, esan.train.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
