"""Import the authors' released ESAN-VSP weights (``ESAN-epoch_18.pth``, a plain state dict).

Their key names are ours (docs/design.md section 1). Their forward pass runs the *forward* cell in both
directions, so the backward cell's stored weights are dead: we copy the forward cell into
``lstm_back`` to reproduce their model, and say so. ``esan.train.checkpoint.load`` recognises such a
file by its keys (``is_official``) and converts it in memory with ``load_official``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch

from esan.train.config import ESANConfig
from esan.train.errors import UserError
from esan.train.model import ESAN

FORWARD_CELL = "lstm_forw.cell_list.0.conv."
BACKWARD_CELL = "lstm_back.cell_list.0.conv."
SIGNATURE = ("base.0.weight", "sc_fusion.weight", FORWARD_CELL + "weight")  # keys that identify their file
VGG_STAGE_CONVS = (0, 5, 10, 17, 24)  # first conv of each VGG16 stage (torchvision indices)


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


def is_official(obj: Any) -> bool:
    """True for the authors' state dict (plain, ``{'state_dict': ...}`` or ``module.``-prefixed),
    never for an esan-rt checkpoint."""
    if not isinstance(obj, dict) or "format" in obj:
        return False
    if isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    keys = {str(k).removeprefix("module.") for k in obj}
    return all(k in keys for k in SIGNATURE)


def official_config(src: dict[str, torch.Tensor]) -> ESANConfig:
    """The config the authors' tensors were made for, read from their shapes (paper values where a
    key is missing; the input size is the paper's, which their weights were trained at)."""
    paper = ESANConfig.paper()
    try:
        widths = tuple(int(src[f"base.{i}.weight"].shape[0]) for i in VGG_STAGE_CONVS)
        nf = int(src["sc_fusion.weight"].shape[0])
        window = int(src["sc_fusion.weight"].shape[1]) // nf
        groups = int(src["pcd_align.L3_dcnpack.conv_offset_mask.weight"].shape[0]) // 27
        hidden = int(src[FORWARD_CELL + "weight"].shape[0]) // 4
        return ESANConfig(vgg_widths=widths, nf=nf, deform_groups=groups, hidden=hidden, radius=(window - 1) // 2)
    except (KeyError, IndexError, ZeroDivisionError, UserError):
        return paper


def convert_state_dict(
    src: dict[str, torch.Tensor], cfg: ESANConfig | None = None
) -> tuple[ESAN, ConversionReport]:
    """Build an ESAN from the authors' state dict; the report lists every key that did not map.

    ``cfg`` defaults to the one their tensor shapes describe (the paper's for their released file).
    """
    src = _unwrap(src)
    cfg = cfg or official_config(src)
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


def require_complete(report: ConversionReport, source: str | os.PathLike) -> None:
    if report.missing:
        raise UserError(
            f"{source}: {len(report.missing)} of the model's tensors are missing (e.g. {report.missing[0]}); "
            "is this the authors' ESAN-VSP checkpoint?"
        )


def load_official(obj: Any, source: str | os.PathLike) -> ESAN:
    """An eval-mode ESAN from the authors' state dict ``obj`` (read from ``source``), converted in memory
    exactly as ``esan-train convert-official`` does; says so in one line on stderr."""
    model, report = convert_state_dict(obj)
    require_complete(report, source)
    extra = f", {len(report.unexpected)} unexpected key(s) ignored" if report.unexpected else ""
    print(f"esan: {source} holds the authors' ESAN-VSP weights: converted in memory as `esan-train "
          f"convert-official` does ({report.loaded} tensors{extra}; lstm_back uses the forward cell)", file=sys.stderr)
    return model
