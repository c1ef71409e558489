"""``--backend auto`` / ``--device auto``: the fastest backend this machine can really run, and why.

Order: TensorRT when it is installed and a GPU is usable (and, for a ``--bundle``, the bundle has
engines this TensorRT and GPU can load); else ONNX Runtime with CUDA when ``onnxruntime-gpu`` offers
the CUDA execution provider and the CUDA driver has a usable device; else ONNX Runtime on the CPU.
``choose_backend`` returns the choice with a one-line reason that names what was missing (a CUDA
error by its name: an old driver is not "no GPU"). Probes are imported lazily: nothing here loads
TensorRT, torch or CUDA until a choice needs them.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from esan.runtime.backends import AUTO, KINDS, check_device, cuda_probe
from esan.runtime.core.errors import UserError

BACKEND_CHOICES = (AUTO, *KINDS)


def check_backend(backend: str) -> None:
    """Refuse a backend name that is neither ``auto`` nor one of ``KINDS``."""
    if backend.lower() not in BACKEND_CHOICES:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKEND_CHOICES)}")


class BackendChoice(NamedTuple):
    """What to open, and why (unpacks as ``backend, device, reason``)."""

    backend: str
    device: str
    reason: str

    def line(self) -> str:
        """One line for the console: ``backend trt on cuda: TensorRT 10.13 and NVIDIA H100 (sm 9.0)``."""
        return f"backend {self.backend} on {self.device}: {self.reason}"

    def record(self, requested_backend: str, requested_device: str) -> dict[str, str]:
        """The report's ``backend_choice`` entry."""
        return {"requested_backend": requested_backend, "requested_device": requested_device, **self._asdict()}


def tensorrt_status(bundle: Any = None) -> tuple[bool, str]:
    """``(usable, why)`` for the TensorRT backend on this machine (and ``bundle``, when given)."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: the wheel is there but its libraries do not load
        why = "not installed" if isinstance(exc, ImportError) else f"cannot be loaded ({exc})"
        return False, f"TensorRT {why}"
    gpu = cuda_probe.probe_runtime()  # what the TensorRT backend drives
    if not gpu.ok:
        return False, f"TensorRT {trt.__version__} is installed but {gpu.message}"
    found = f"TensorRT {trt.__version__} and {gpu.message}"
    if bundle is not None:
        from esan.runtime.core.bundle import check_compatible

        if bundle.engines is None:
            return False, (f"{found}, but bundle {bundle.root} has no TensorRT engines "
                           "(`esan-rt export CKPT --engines` builds them)")
        try:
            check_compatible(bundle, "trt", None, tensorrt_version=str(trt.__version__),
                             compute_capability=gpu.compute_capability)  # fmt: skip
        except UserError as exc:
            return False, f"{found}, but {exc}"
    return True, found


def ort_cuda_status() -> tuple[bool, str]:
    """``(usable, why)`` for ONNX Runtime's CUDA execution provider: offered, and the driver has a device."""
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return False, "ONNX Runtime has no CUDA provider (onnxruntime-gpu is not installed)"
    gpu = cuda_probe.probe_driver()
    if not gpu.ok:
        return False, f"onnxruntime-gpu is installed but {gpu.message}"
    return True, f"onnxruntime-gpu and {gpu.message}"


def _torch_device() -> BackendChoice:
    try:
        import torch
    except ImportError:
        return BackendChoice("torch", "cpu", "torch is not installed (the torch backend says what to do)")
    if torch.cuda.is_available():
        return BackendChoice("torch", "cuda", f"torch sees {torch.cuda.get_device_name(0)}")
    return BackendChoice("torch", "cpu", f"torch {torch.__version__} sees no CUDA GPU")


def _load(bundle: Any) -> Any:
    """A ``Bundle`` for a path (None when it cannot be read: opening it later says why)."""
    if bundle is None or not isinstance(bundle, (str, os.PathLike)):
        return bundle
    from esan.runtime.core.bundle import load_bundle

    try:
        return load_bundle(bundle, verify_hashes=False)
    except UserError:
        return None


def choose_backend(backend: str = AUTO, device: str = AUTO, *, bundle: Any = None) -> BackendChoice:
    """Resolve ``auto`` in ``backend`` and ``device``; explicit values are kept.

    ``bundle`` (a directory or ``Bundle``; optional): with ``--bundle``, TensorRT is chosen only when
    the bundle has engines for this TensorRT and GPU. ``auto`` never picks torch (it runs checkpoints,
    slower than the exported graphs); ``--backend torch --device auto`` takes CUDA when torch sees it.
    """
    backend, device = backend.lower(), device.lower()
    check_backend(backend)
    check_device(device)
    if backend != AUTO and device != AUTO:
        return BackendChoice(backend, device, "as requested")
    if backend == "trt":
        return BackendChoice("trt", "cuda", "as requested (TensorRT runs on the GPU)")
    if backend == "torch":
        return _torch_device()
    if backend == "ort":
        ok, why = ort_cuda_status()
        return BackendChoice("ort", "cuda" if ok else "cpu", why)
    if device in ("cpu", "tensorrt"):  # auto backend, explicit device only ONNX Runtime offers
        return BackendChoice("ort", device, f"device {device} requested")
    trt_ok, trt_why = tensorrt_status(_load(bundle))
    if trt_ok:
        return BackendChoice("trt", "cuda", trt_why)
    ort_ok, ort_why = ort_cuda_status()
    if ort_ok or device != AUTO:  # an explicit cuda goes to ONNX Runtime, which says what is missing if it is
        return BackendChoice("ort", device if device != AUTO else "cuda", f"{trt_why}; {ort_why}")
    return BackendChoice("ort", "cpu", f"{trt_why}; {ort_why}")
