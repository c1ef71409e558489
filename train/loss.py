"""Training loss of the paper: ``L = L_NSS + L_SIM + L_CC + L_KL`` (weights configurable).

Every term is signed so that minimising it improves its metric: ``-NSS``, ``-SIM``, ``-CC``, ``+KL``.
Inputs are ``[B, N, 1, h, w]`` (or any ``[..., h, w]``); each frame is scored on its own and the
terms are averaged over frames. Computed in float32 (also under autocast) with small epsilons so
all-zero and constant maps give finite values and gradients (a constant map scores CC = NSS = 0;
frames without fixations are left out of the NSS term).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

EPS = 1e-7


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term (the paper uses 1 for all four)."""

    nss: float = 1.0
    sim: float = 1.0
    cc: float = 1.0
    kl: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _flat(x: Tensor) -> Tensor:
    return x.float().flatten(-2)  # [..., h*w]


def nss_per_frame(pred: Tensor, fix: Tensor) -> tuple[Tensor, Tensor]:
    """NSS of each frame (sample std) and a mask of frames that have fixations."""
    p, f = _flat(pred), (_flat(fix) > 0).float()
    mean = p.mean(-1, keepdim=True)
    n = p.shape[-1]
    std = torch.sqrt(((p - mean) ** 2).sum(-1, keepdim=True) / max(n - 1, 1) + EPS)
    z = (p - mean) / std
    count = f.sum(-1)
    valid = count > 0
    return (z * f).sum(-1) / count.clamp_min(1.0), valid


def cc_per_frame(pred: Tensor, gt: Tensor) -> Tensor:
    """Pearson correlation of each frame (0 when either map is constant)."""
    p, g = _flat(pred), _flat(gt)
    p = p - p.mean(-1, keepdim=True)
    g = g - g.mean(-1, keepdim=True)
    num = (p * g).sum(-1)
    den = torch.sqrt((p * p).sum(-1) * (g * g).sum(-1) + EPS)
    return num / den


def _sum_normalise(x: Tensor) -> Tensor:
    return x / (x.sum(-1, keepdim=True) + EPS)


def sim_per_frame(pred: Tensor, gt: Tensor) -> Tensor:
    """Histogram intersection of the sum-normalised maps."""
    return torch.minimum(_sum_normalise(_flat(pred)), _sum_normalise(_flat(gt))).sum(-1)


def kl_per_frame(pred: Tensor, gt: Tensor) -> Tensor:
    """``sum G log(eps + G / (P + eps))`` of the sum-normalised maps."""
    p = _sum_normalise(_flat(pred).clamp_min(0.0))
    g = _sum_normalise(_flat(gt).clamp_min(0.0))
    return (g * torch.log(EPS + g / (p + EPS))).sum(-1)


def saliency_loss(
    pred: Tensor, gt_map: Tensor, fixations: Tensor, weights: LossWeights | None = None,
    nss_frames: Tensor | float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The weighted loss and its terms (detached scalars, signed as in the loss).

    ``nss_frames``: the number (> 0) of frames with fixations the NSS term is averaged over (default:
    this batch's, at least 1). Data-parallel training passes the count over all processes divided by
    their number, so the averaged gradients equal those of one process holding the whole batch.
    """
    w = weights or LossWeights()
    if pred.shape != gt_map.shape or pred.shape != fixations.shape:
        raise ValueError(f"shape mismatch: pred {tuple(pred.shape)}, map {tuple(gt_map.shape)}, "
                         f"fixations {tuple(fixations.shape)}")
    with torch.autocast(device_type=pred.device.type, enabled=False):
        nss, valid = nss_per_frame(pred, fixations)
        v = valid.float()
        count = v.sum().clamp_min(1.0) if nss_frames is None else torch.as_tensor(nss_frames).to(v)
        l_nss = -(nss * v).sum() / count
        l_cc = -cc_per_frame(pred, gt_map).mean()
        l_sim = -sim_per_frame(pred, gt_map).mean()
        l_kl = kl_per_frame(pred, gt_map).mean()
        total = w.nss * l_nss + w.sim * l_sim + w.cc * l_cc + w.kl * l_kl
    terms = {"nss": l_nss.detach(), "sim": l_sim.detach(), "cc": l_cc.detach(), "kl": l_kl.detach()}
    return total, terms
