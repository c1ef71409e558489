"""Loss: signs, agreement with the numpy metrics, weights, safety on degenerate maps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from esan.train import metrics as M
from esan.train.loss import LossWeights, cc_per_frame, nss_per_frame, saliency_loss, sim_per_frame

torch.set_num_threads(1)


def _batch(seed=0, shape=(2, 3, 1, 6, 10)):
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(shape, generator=g, dtype=torch.float64)
    gt = torch.rand(shape, generator=g, dtype=torch.float64) ** 3
    fix = (torch.rand(shape, generator=g) > 0.9).double()
    fix[..., 0, 0] = 1
    return pred, gt, fix


def test_terms_match_numpy_metrics():
    pred, gt, fix = _batch()
    nss, valid = nss_per_frame(pred, fix)
    cc = cc_per_frame(pred, gt)
    for b in range(2):
        for n in range(3):
            p, g, f = (t[b, n, 0].numpy() for t in (pred, gt, fix))
            assert nss[b, n].item() == pytest.approx(M.nss(p, f), rel=1e-4)
            assert cc[b, n].item() == pytest.approx(M.cc(p, g), rel=1e-4)
    assert bool(valid.all())
    # SIM/KL use sum normalisation only (no min-max): compare on a map with min 0
    p = pred[0, 0, 0].clone()
    p[0, 0] = 0
    g = gt[0, 0, 0].clone()
    g[0, 0] = 0
    q, h = p / p.sum(), g / g.sum()
    assert sim_per_frame(p, g).item() == pytest.approx(torch.minimum(q, h).sum().item(), rel=1e-5)
    assert sim_per_frame(p, g).item() == pytest.approx(M.sim(p.numpy(), g.numpy()), rel=1e-5)


def test_signs_and_perfect_prediction():
    pred, gt, fix = _batch()
    total, terms = saliency_loss(pred, gt, fix)
    _, perfect = saliency_loss(gt, gt, fix)
    assert perfect["cc"].item() == pytest.approx(-1.0, abs=1e-5)
    assert perfect["sim"].item() == pytest.approx(-1.0, abs=1e-5)
    assert perfect["kl"].item() == pytest.approx(0.0, abs=1e-5)
    assert terms["cc"] > perfect["cc"] and terms["kl"] > perfect["kl"] and terms["sim"] > perfect["sim"]
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-6)


def test_weights():
    pred, gt, fix = _batch()
    _, terms = saliency_loss(pred, gt, fix)
    total, _ = saliency_loss(pred, gt, fix, LossWeights(nss=0.5, sim=0.0, cc=2.0, kl=1.0))
    expect = 0.5 * terms["nss"] + 2.0 * terms["cc"] + terms["kl"]
    assert total.item() == pytest.approx(expect.item(), rel=1e-6)


@pytest.mark.parametrize("case", ["zeros", "constant", "no_fix", "gt_zero"])
def test_degenerate_maps_finite_with_finite_gradients(case):
    pred, gt, fix = (t.float() for t in _batch())
    if case == "zeros":
        pred = torch.zeros_like(pred)
    elif case == "constant":
        pred = torch.full_like(pred, 0.5)
    elif case == "no_fix":
        fix = torch.zeros_like(fix)
    elif case == "gt_zero":
        gt = torch.zeros_like(gt)
    pred = pred.requires_grad_(True)
    total, terms = saliency_loss(pred, gt, fix)
    total.backward()
    assert math.isfinite(total.item())
    assert all(math.isfinite(v.item()) for v in terms.values())
    assert torch.isfinite(pred.grad).all()
    if case == "no_fix":
        assert terms["nss"].item() == 0.0


def test_frames_without_fixations_left_out_of_nss():
    pred, gt, fix = _batch()
    fix2 = fix.clone()
    fix2[1, 2] = 0
    nss, valid = nss_per_frame(pred, fix2)
    _, terms = saliency_loss(pred, gt, fix2)
    assert not valid[1, 2]
    assert terms["nss"].item() == pytest.approx(-nss[valid].mean().item(), rel=1e-6)


def test_gradient_descent_improves_metrics():
    torch.manual_seed(0)
    _, gt, fix = _batch(shape=(1, 2, 1, 8, 12))
    gt, fix = gt.float(), fix.float()
    logits = torch.zeros_like(gt, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    first = None
    for _ in range(60):
        loss, _ = saliency_loss(torch.sigmoid(logits), gt, fix)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = loss.item() if first is None else first
    assert loss.item() < first - 1.0
    p = torch.sigmoid(logits)[0, 0, 0].detach().numpy()
    assert M.cc(p, gt[0, 0, 0].numpy()) > 0.8
    assert np.isfinite(p).all()


def test_shape_mismatch():
    pred, gt, fix = _batch()
    with pytest.raises(ValueError, match="shape mismatch"):
        saliency_loss(pred, gt[:, :2], fix)
