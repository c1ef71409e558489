"""ESAN checkpoints: one ``.pt`` file with config, weights and metadata, written atomically.

Files are read with ``torch.load(weights_only=True)``: no pickled code is ever executed. ``load``
also takes the authors' released ``.pth`` (recognised by its keys, converted in memory by
``esan.train.convert``), so every command that takes a checkpoint takes their file too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from esan.runtime.core.fsutil import atomic_path
from esan.runtime.core.version import package_version, utc_now
from esan.train import convert
from esan.train.config import ESANConfig
from esan.train.errors import UserError
from esan.train.model import ESAN

FORMAT = "esan-rt-checkpoint"
FORMAT_VERSION = 1
# torch before 2.10 can be made to run code despite weights_only=True (CVE-2025-32434, fixed in 2.6;
# GHSA-63cw-57p8-fm3p, up to 2.9.1): checkpoints from outside are never read with such a torch
SAFE_TORCH = (2, 10)


def check_torch(version: str | None = None) -> None:
    """Refuse (one line) a torch whose ``weights_only=True`` loader can be bypassed."""
    version = str(torch.__version__ if version is None else version)
    try:
        found = tuple(int(x) for x in version.split("+")[0].split(".")[:2])
    except ValueError:
        return  # a source build with an unusual version: trust it
    if found < SAFE_TORCH:
        raise UserError(f"torch {version} can run code hidden in a checkpoint despite weights_only=True "
                        f"(CVE-2025-32434, GHSA-63cw-57p8-fm3p); upgrade it: pip install 'torch>=2.10'")


def save(path: str | os.PathLike, model: ESAN, **meta: Any) -> Path:
    """Write ``model`` (config + state dict) and ``meta`` to ``path`` atomically."""
    meta = {"package_version": package_version(), "created_at": utc_now("microseconds"), **meta}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_file(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` with one clear error for missing or unreadable files."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint {p} does not exist; check the path (train one with `esan-train fit`)")
    check_torch()
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / foreign files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{p} is not a readable checkpoint (truncated or corrupt?): {reason[:200]}") from exc


def load_payload(path: str | os.PathLike) -> dict[str, Any]:
    """The raw checkpoint dict, validated to be ours."""
    return _validated(read_file(path), path)


def _validated(payload: Any, path: str | os.PathLike) -> dict[str, Any]:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, dict) and any(str(k).startswith(("base.", "pcd_align.")) for k in payload):
            hint = f"; if it holds the authors' ESAN weights, run `esan-train convert-official {path} OUT.pt`"
        raise UserError(f"{path} is not an esan-rt checkpoint{hint}")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer esan-rt (format {payload['format_version']}); upgrade")
    return payload


def build_model(cfg: ESANConfig, state_dict: dict[str, torch.Tensor], source: str) -> ESAN:
    """An eval-mode ESAN with ``state_dict`` loaded strictly; mismatches become one clear error."""
    model = ESAN(cfg)
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise UserError(f"{source}: weights do not fit the stored config: {', '.join(parts)}")
    model.load_state_dict(state_dict)
    return model.eval()


def load(path: str | os.PathLike) -> ESAN:
    """Load a checkpoint written by ``save``, or the authors' ``.pth`` (converted in memory, said in one
    line on stderr); the model comes back in eval mode on the CPU."""
    obj = read_file(path)
    if convert.is_official(obj):
        return convert.load_official(obj, path)
    payload = _validated(obj, path)
    try:
        cfg = ESANConfig.from_dict(payload["config"])
    except (TypeError, KeyError) as exc:
        raise UserError(f"{path}: the stored config is invalid ({exc})") from exc
    return build_model(cfg, payload["state_dict"], str(path))


def load_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's metadata (for the authors' ``.pth``: where it came from)."""
    from esan.train import convert

    obj = read_file(path)
    if convert.is_official(obj):
        return {"source": str(path), "converted_from": "ESAN-VSP official"}
    return dict(_validated(obj, path).get("meta", {}))


def convert_official(src_path: str | os.PathLike, dst_path: str | os.PathLike) -> convert.ConversionReport:
    """Read the authors' ``.pth``, write an esan-rt checkpoint, return what mapped and what did not."""
    model, report = convert.convert_state_dict(read_file(src_path))
    convert.require_complete(report, src_path)
    save(dst_path, model, source=str(src_path), converted_from="ESAN-VSP official", notes=report.notes)
    return report
