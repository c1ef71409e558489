"""Inference backends behind one interface (``esan.runtime.core.backend_api.Backend``) and the factory ``open_backend``.

| kind | module | needs | arrays |
|---|---|---|---|
| ``torch`` | ``torch_backend`` | a checkpoint, ``pip install 'esan-rt[train]'`` | torch tensors (CPU/CUDA) |
| ``ort`` | ``ort_backend`` | an ONNX bundle, ``onnxruntime`` (``onnxruntime-gpu`` for CUDA/TensorRT EP) | numpy |
| ``trt`` | ``trt_backend`` | a bundle with engines, ``pip install 'esan-rt[trt]'`` | device buffers |

Backend modules are imported lazily, so importing this package needs neither torch nor TensorRT.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from esan.runtime.core.backend_api import Backend, BackendConfig
from esan.runtime.core.errors import UserError

if TYPE_CHECKING:
    from esan.runtime.core.bundle import Bundle

__all__ = ["KINDS", "Backend", "BackendConfig", "open_backend"]

KINDS = ("ort", "trt", "torch")  # the backend kinds, defined here only
AUTO = "auto"
DEVICE_PATTERN = r"cpu|cuda(:\d+)?|tensorrt"
_ALIASES = {"onnxruntime": "ort", "ort-cpu": "ort", "tensorrt": "trt", "pytorch": "torch"}
_TORCH_HINT = "pip install 'esan-rt[train]' (or pip install torch torchvision)"


def check_device(device: str, *, auto: bool = True) -> None:
    """Refuse a device name no backend knows (``auto`` only where ``auto`` is allowed)."""
    if not (auto and device.lower() == AUTO) and not re.fullmatch(DEVICE_PATTERN, device.lower()):
        extra = "auto, " if auto else ""
        raise UserError(f"unknown device {device!r}; use {extra}cpu, cuda (or cuda:N) or tensorrt "
                        "(ONNX Runtime's TensorRT execution provider)")


def open_backend(
    kind: str,
    *,
    bundle_dir: str | os.PathLike | Bundle | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
    lookahead: int | None = None,
    precision: str | None = "fp32",
    plugin_lib: str | os.PathLike | None = None,
    threads: int | None = None,
) -> Backend:
    """Open a backend; every failure the user can fix is one ``UserError`` line saying how.

    ``torch`` runs ``checkpoint`` (``device`` cpu/cuda, ``precision`` fp32/fp16). ``ort`` and ``trt``
    run the bundle in ``bundle_dir``, whose precision is fixed at export time: ``precision`` must
    match it (``None`` accepts the bundle's). ``lookahead`` is validated against the bundle; an L
    other than the bundle's is exact too (``cell_bwd`` steps instead of the unrolled ``bwd_window``).
    ``device`` for ``ort``: cpu, cuda or tensorrt (ONNX Runtime's TensorRT EP); ``trt`` always runs
    on the GPU. ``threads``: CPU intra-op threads (None: the library's default).
    """
    k = _ALIASES.get(kind.lower(), kind.lower())
    check_device(device, auto=False)
    if k not in KINDS:
        raise UserError(f"unknown backend {kind!r}; choose one of {', '.join(KINDS)}")
    if k == "torch":
        if checkpoint is None:
            raise UserError("the torch backend needs a checkpoint (--checkpoint PATH)")
        try:
            from esan.runtime.backends.torch_backend import TorchBackend
        except ImportError as exc:
            raise UserError(f"the torch backend needs PyTorch ({exc.name or exc} is missing): {_TORCH_HINT}") from exc
        return TorchBackend(checkpoint, device=device, precision=precision or "fp32", threads=threads)

    if bundle_dir is None:
        hint = "export one with `esan-rt export CKPT --out DIR --lookahead L`"
        raise UserError(f"the {k} backend needs a bundle directory (--bundle DIR); {hint}")
    from esan.runtime.core.bundle import Bundle, load_bundle, rebuild_command

    bundle = bundle_dir if isinstance(bundle_dir, Bundle) else load_bundle(bundle_dir)
    if precision and precision != bundle.precision:
        raise UserError(
            f"bundle {bundle.root} is {bundle.precision}, {precision} was requested: pass --precision "
            f"{bundle.precision} or re-export with {rebuild_command(bundle, bundle.lookahead, precision=precision)}"
        )
    if k == "ort":
        try:
            from esan.runtime.backends.ort_backend import OrtBackend
        except ImportError as exc:
            raise UserError(f"the ort backend needs ONNX Runtime: pip install onnxruntime ({exc})") from exc
        return OrtBackend(bundle, device=device, threads=threads, plugin_lib=plugin_lib, lookahead=lookahead)
    from esan.runtime.backends.trt_backend import TrtBackend

    if device not in ("cuda", "cpu"):
        raise UserError(f"the trt backend runs on the GPU (device 'cuda'), got {device!r}")
    return TrtBackend(bundle, device="cuda", plugin_lib=plugin_lib, lookahead=lookahead)
