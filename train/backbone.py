"""VGG16 backbone weights for ``esan-train fit --backbone-weights imagenet|FILE``.

``imagenet`` is torchvision's ``VGG16_Weights.IMAGENET1K_V1`` (the file the paper starts from): taken
from torch's hub cache (``$TORCH_HOME/hub/checkpoints``) or downloaded there once; without a network
a clear message says where to put the file. ``FILE`` is any torchvision vgg16 state dict. Files are
read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from esan.train import checkpoint
from esan.train.config import ESANConfig
from esan.train.errors import UserError
from esan.train.model import ESAN

IMAGENET = "imagenet"
VGG16_WIDTHS = (64, 128, 256, 512, 512)


def imagenet_weights():
    """torchvision's ``VGG16_Weights.IMAGENET1K_V1`` enum entry (url, file name, metadata)."""
    from torchvision.models import VGG16_Weights

    return VGG16_Weights.IMAGENET1K_V1


def hub_file(url: str) -> Path:
    """Where torch's hub keeps the file of ``url`` (``torch.hub.get_dir()/checkpoints/<name>``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _download(url: str, dst: Path) -> None:
    """Download ``url`` to ``dst`` with torch's hub helper (checks the hash prefix in the file name)."""
    import torch

    match = re.search(r"-([a-f0-9]+)\.", dst.name)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dst), hash_prefix=match.group(1) if match else None, progress=True)


def imagenet_vgg16_file() -> Path:
    """The local path of torchvision's ImageNet VGG16 weights, downloading them once if needed."""
    url = imagenet_weights().url
    dst = hub_file(url)
    if dst.is_file():
        return dst
    print(f"downloading torchvision's VGG16 ImageNet weights ({url}) to {dst}", file=sys.stderr)
    try:
        _download(url, dst)
    except Exception as exc:  # URLError, timeouts, hash mismatch, read-only cache ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot download torchvision's VGG16 ImageNet weights ({reason[:160]}); fetch {url} on a machine "
            f"with internet and pass --backbone-weights /path/to/{dst.name} (or put it at {dst})"
        ) from exc
    return dst


def imagenet_for(cfg: ESANConfig) -> Path:
    """The ImageNet VGG16 file for a model of ``cfg`` (refused, before any download, for other widths)."""
    if tuple(cfg.vgg_widths) != VGG16_WIDTHS:
        raise UserError(f"--backbone-weights imagenet needs VGG16's widths {VGG16_WIDTHS}; this model has "
                        f"{tuple(cfg.vgg_widths)} (the tiny preset): use --preset paper")
    return imagenet_vgg16_file()


def load_backbone(model: ESAN, source: str | Path) -> int:
    """Load ``imagenet`` or a torchvision vgg16 state dict file (``features.<i>.weight|bias``) into
    ``model.base``; returns the number of tensors loaded; a clear ``UserError`` if it does not fit."""
    if str(source) == IMAGENET:
        source = imagenet_for(model.cfg)
    path = Path(source)
    if not path.is_file():
        raise UserError(f"--backbone-weights {path} does not exist; give torchvision's vgg16 file "
                        f"(e.g. vgg16-397923af.pth) or 'imagenet' to download it")
    sd = checkpoint.read_file(path)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise UserError(f"{path} is not a state dict")
    feats = {k[len("features."):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith("features.")}
    if not feats:
        raise UserError(f"{path} has no 'features.<i>.*' tensors; expected torchvision's vgg16 state dict "
                        "(e.g. vgg16-397923af.pth)")
    own = model.base.state_dict()
    missing = sorted(set(own) - set(feats))
    wrong = sorted(k for k in own if k in feats and tuple(feats[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        what = f"missing {missing[0]}" if missing else (
            f"features.{wrong[0]} is {tuple(feats[wrong[0]].shape)}, the backbone needs {tuple(own[wrong[0]].shape)}")
        raise UserError(f"{path} does not fit this model's VGG16 backbone ({what}); the tiny preset has "
                        "reduced widths, so ImageNet weights only fit --preset paper")
    model.base.load_state_dict({k: feats[k] for k in own})
    return len(own)
