"""Run-directory state of ``esan-train fit``: checkpoints and resumable training state.

``RUN_DIR/last.pt`` is an ordinary esan-rt checkpoint (eval/predict/export read it);
``RUN_DIR/train_state.pt`` holds what resuming needs (optimiser, scheduler, grad scaler, step,
RNG states). Both are written atomically and read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from esan.runtime.core.fsutil import atomic_path
from esan.train import checkpoint
from esan.train.backbone import load_backbone  # noqa: F401  (re-exported: fit_state.load_backbone)
from esan.train.errors import UserError
from esan.train.model import ESAN

LAST = "last.pt"
BEST = "best.pt"
STATE = "train_state.pt"


def save_run(run_dir: Path, model: ESAN, optimizer, scheduler, scaler, step: int, meta: dict[str, Any]) -> None:
    """Write ``train_state.pt`` then ``last.pt`` (both atomic; ``step`` ties them together)."""
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_path(run_dir / STATE) as tmp:
        torch.save(state, tmp)
    checkpoint.save(run_dir / LAST, model, step=step, **meta)


def load_run(run_dir: Path) -> tuple[ESAN, dict[str, Any], dict[str, Any]]:
    """Model, checkpoint meta and training state of a run to resume (clear errors if unusable)."""
    last, state_path = run_dir / LAST, run_dir / STATE
    if not last.is_file() or not state_path.is_file():
        raise UserError(f"--resume: {run_dir} has no {LAST} and {STATE}; start without --resume")
    model = checkpoint.load(last)
    meta = checkpoint.load_meta(last)
    state = checkpoint.read_file(state_path)
    if not isinstance(state, dict) or "optimizer" not in state:
        raise UserError(f"{state_path} is not an esan-train training state")
    if state.get("step") != meta.get("step"):
        raise UserError(f"{last} (step {meta.get('step')}) and {state_path} (step {state.get('step')}) disagree; "
                        "the run was interrupted while saving: delete the newer one or start a new run")
    return model, meta, state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_rng"])
    cuda = state.get("cuda_rng") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def warn(msg: str) -> None:
    print(f"esan-train: warning: {msg}", file=sys.stderr)
