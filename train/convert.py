"""Import the authors' released ESAN-VSP weights (``ESAN-epoch_18.pth``, a plain state dict).

Their key names are ours (DESIGN.md section 1). Their forward pass runs the *forward* cell in both
directions, so the backward cell's stored weights are dead: we copy the forward cell into
``lstm_back`` to reproduce their model, and say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from esan.train import checkpoint
from esan.train.config import ESANConfig
from esan.train.errors import UserError
from esan.train.model import ESAN

FORWARD_CELL = "lstm_forw.cell_list.0.conv."
BACKWARD_CELL = "lstm_back.cell_list.0.conv."


@dataclass
class ConversionReport:
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"loaded {self.loaded} tensors"]
        out += [f"missing: {k}" for k in self.missing]
        out += [f"unexpected (ignored): {k}" for k in self.unexpected]
        return out + [f"note: {n}" for n in self.notes]


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    """Accept a plain state dict, ``{'state_dict': ...}`` and DataParallel ``module.`` prefixes."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError("the file is not a state dict of tensors; is it the authors' ESAN-epoch_18.pth?")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def convert_state_dict(
    src: dict[str, torch.Tensor], cfg: ESANConfig | None = None
) -> tuple[ESAN, ConversionReport]:
    """Build an ESAN from the authors' state dict; the report lists every key that did not map."""
    cfg = cfg or ESANConfig.paper()
    src = _unwrap(src)
    model = ESAN(cfg)
    own = model.state_dict()
    report = ConversionReport()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in src.items():
        if key.startswith(BACKWARD_CELL):
            continue  # dead weights in their model; replaced by the forward cell below
        if key in own and own[key].shape == value.shape:
            mapped[key] = value
        else:
            report.unexpected.append(key if key not in own else f"{key} (shape {tuple(value.shape)})")
    for key in list(own):
        if key.startswith(BACKWARD_CELL):
            fwd = FORWARD_CELL + key.removeprefix(BACKWARD_CELL)
            if fwd in mapped:
                mapped[key] = mapped[fwd]
    report.missing = sorted(set(own) - set(mapped))
    report.loaded = len(mapped)
    if any(k.startswith(FORWARD_CELL) for k in mapped):
        report.notes.append(
            "lstm_back uses the forward cell's weights: the authors' forward pass runs the forward cell "
            "in both directions (their lstm_back weights are never used)"
        )
    own.update(mapped)
    model.load_state_dict(own)
    return model.eval(), report


def convert_official(src_path: str | os.PathLike, dst_path: str | os.PathLike) -> ConversionReport:
    """Read the authors' ``.pth``, write an esan-rt checkpoint, return what mapped and what did not."""
    model, report = convert_state_dict(checkpoint.read_file(src_path))
    if report.missing:
        raise UserError(
            f"{src_path}: {len(report.missing)} of the model's tensors are missing (e.g. {report.missing[0]}); "
            "is this the authors' ESAN-VSP checkpoint?"
        )
    checkpoint.save(dst_path, model, source=str(src_path), converted_from="ESAN-VSP official", notes=report.notes)
    return report
