"""``evaluate_videos`` scores equal the metrics computed directly on the same maps, frame by frame.

A predictor whose maps are known (the ground truth itself, at full and at half size, and a real model's maps)
is scored by the evaluation and, independently, by calling the metric functions on each (map, target) pair of
the same frame: a frame misalignment, a dropped frame or a resize bug in the evaluation makes them differ.
Plus the metric edge cases the DHF1K MATLAB code defines (non-2-D map, every pixel fixated, constant target).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from esan.train import metrics as M
from esan.train.data import read_fixations, read_map, scan_split
from esan.train.evaluate import evaluate_videos
from esan.train.synth import SynthSpec, write_dataset

DIRECT = ("auc_j", "sim", "cc", "nss", "kld")  # s-AUC draws random negatives: checked separately below


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("evs") / "data",
                         SynthSpec(videos=1, test_videos=2, frames=6, size=(40, 56), seed=3))  # fmt: skip
    return scan_split(root, "synth", "testing")


def direct_means(videos, maps_of, n=None, seed=0) -> dict[str, float]:
    """Means of the per-frame metrics; AUC-J's tie-breaking jitter drawn as the evaluation draws it (one
    generator seeded with ``seed``, one draw per frame, in frame order: ties in the targets make it matter)."""
    rng = np.random.default_rng(seed)
    scores = {k: [] for k in DIRECT}
    for v in videos:
        preds = maps_of(v, len(v) if n is None else n)
        for t, pred in enumerate(preds):
            gt, fix = read_map(v.maps[t]), read_fixations(v.fixations[t])
            one = {"auc_j": M.auc_judd(pred, fix, rng=rng), "sim": M.sim(pred, gt), "cc": M.cc(pred, gt),
                   "nss": M.nss(pred, fix), "kld": M.kld(pred, gt)}  # fmt: skip
            for k in DIRECT:
                if not math.isnan(one[k]):
                    scores[k].append(one[k])
    return {k: float(np.mean(s)) for k, s in scores.items()}


def oracle(v, n):
    return [read_map(p).astype(np.float64) for p in v.maps[:n]]


def oracle_half(v, n):  # at half size: the evaluation must resize it back to the target's size
    return [cv2.resize(m, (m.shape[1] // 2, m.shape[0] // 2), interpolation=cv2.INTER_AREA) for m in oracle(v, n)]


def test_frames_are_distinct(videos):
    """The test is only meaningful if a neighbouring frame's target scores differently."""
    maps = oracle(videos[0], len(videos[0]))
    assert M.cc(maps[0], maps[1]) < 0.99 and len(videos) == 2


@pytest.mark.parametrize("maps_of", [oracle, oracle_half], ids=["oracle", "oracle_half"])
@pytest.mark.parametrize("n", [None, 4])
def test_evaluation_equals_direct_metrics(videos, maps_of, n):
    res = evaluate_videos(videos, maps_of, max_frames=n, blur_sigma=0, shuffled=False)
    want = direct_means(videos, maps_of, n)
    frames = sum(len(v) if n is None else min(n, len(v)) for v in videos)
    assert res["frames"] == frames and res["blurred"] is None
    for k in DIRECT:
        assert res["raw"][k]["mean"] == pytest.approx(want[k], abs=1e-9), k
    if maps_of is oracle:  # the target scored against itself
        assert res["raw"]["cc"]["mean"] == pytest.approx(1.0, abs=1e-9)
        assert res["raw"]["sim"]["mean"] == pytest.approx(1.0, abs=1e-9)
        assert abs(res["raw"]["kld"]["mean"]) < 1e-9


def test_a_misaligned_predictor_scores_lower(videos):
    """The evaluation does not realign a predictor that is one frame late: CC drops below the oracle's 1."""

    def late(v, n):
        maps = oracle(v, n)
        return [maps[0], *maps[:-1]]

    res = evaluate_videos(videos, late, blur_sigma=0, shuffled=False)
    assert res["raw"]["cc"]["mean"] < 0.99
    assert res["raw"]["cc"]["mean"] == pytest.approx(direct_means(videos, late)["cc"], abs=1e-9)


def test_blurred_scores_are_of_the_postprocessed_maps(videos):
    from esan.train.evaluate import postprocess

    res = evaluate_videos(videos, oracle, blur_sigma=3.0, shuffled=False)
    want = direct_means(videos, lambda v, n: [postprocess(m, 3.0) for m in oracle(v, n)])
    for k in DIRECT:
        if k != "auc_j":  # the raw and blurred maps of a frame share the generator: AUC-J's draws interleave
            assert res["blurred"][k]["mean"] == pytest.approx(want[k], abs=1e-9), k


def test_shuffled_auc_of_the_oracle_beats_chance(videos):
    res = evaluate_videos(videos, oracle, blur_sigma=0, shuffled=True, n_splits=5, seed=1)
    assert res["raw"]["s_auc"]["frames"] == res["frames"] and 0.5 < res["raw"]["s_auc"]["mean"] <= 1.0


# -- edge cases (DHF1K MATLAB behaviour, see train/metrics.py) ------------------------------------------------
@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((2, 3, 4)), np.zeros((2, 3, 1))])
def test_non_2d_prediction_is_refused(bad):
    gt, fix = np.ones((3, 5)), np.eye(3, 5)
    for fn in (M.nss, M.cc, M.sim, M.kld, M.auc_judd):
        with pytest.raises(ValueError, match="expected a 2-D map"):
            fn(bad, fix if fn in (M.nss, M.auc_judd) else gt)


def test_every_pixel_fixated():
    pred = np.random.default_rng(0).random((6, 9))
    fix = np.ones((6, 9))
    assert M.nss(pred, fix) == pytest.approx(0.0, abs=1e-12)  # mean of a z-scored map over all its pixels
    assert math.isnan(M.auc_judd(pred, fix))  # MATLAB: fp = 0/0 (no non-fixated pixel)
    assert M.auc_shuffled(pred, fix, np.ones((6, 9)), n_splits=3, rng=np.random.default_rng(0)) == pytest.approx(
        0.5, abs=0.06
    )  # positives and negatives are the same pixels: chance, up to the threshold grid


def test_constant_ground_truth():
    pred = np.random.default_rng(1).random((6, 9))
    const = np.full((6, 9), 0.3)
    assert math.isnan(M.cc(pred, const))  # z-score of a constant: 0/0
    assert M.sim(pred, const) == pytest.approx(1.0)  # MATLAB min ignores the NaN of the constant map
    p = pred / pred.sum()
    g = const / const.sum()
    assert M.kld(pred, const) == pytest.approx(float(np.sum(g * np.log(M.EPS + g / (p + M.EPS)))))
    assert M.sim(pred, np.zeros((6, 9))) == 0.0 and M.kld(np.zeros((6, 9)), const) > 30  # all-zero maps stay zero


def test_two_pixel_maps_have_a_sample_std():
    """The smallest map with a defined z-score: two pixels (sample std, N - 1)."""
    assert M.nss(np.array([[0.0, 1.0]]), np.array([[0, 1]])) == pytest.approx(1 / math.sqrt(2))
    assert M.cc(np.array([[0.0, 1.0]]), np.array([[2.0, 5.0]])) == pytest.approx(1.0)
    assert math.isnan(M.nss(np.array([[3.0]]), np.array([[1]])))  # one pixel: no std
