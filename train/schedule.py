"""Learning-rate schedules (multipliers of the base rate, as a ``LambdaLR``)."""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "step", "cosine")


def lr_factor(kind: str, step: int, total: int) -> float:
    """Multiplier at ``step`` of ``total``: ``constant`` 1; ``step`` x0.1 after 2/3 of the run;
    ``cosine`` from 1 down to 0.01."""
    if kind == "constant":
        return 1.0
    if kind == "step":
        return 1.0 if step < (2 * total) // 3 else 0.1
    if kind == "cosine":
        frac = min(step / max(total, 1), 1.0)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac))
    raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")


def make_scheduler(optimizer: torch.optim.Optimizer, kind: str, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    lr_factor(kind, 0, total)  # validate the name early
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(kind, s, total))
