"""Is a CUDA GPU usable here, and if not, why: the CUDA error's name, never a bare "no GPU".

Two probes, each importing nothing at module import time:

* ``probe_runtime()`` asks the CUDA *runtime* through cuda-python, which the TensorRT backend drives.
  A driver older than that runtime answers ``cudaErrorInsufficientDriver`` here; it is reported by
  name with what to do, because it is not the same thing as a machine without a GPU.
* ``probe_driver()`` asks the CUDA *driver* (``libcuda``) through ctypes: no Python package needed.
  ONNX Runtime's CUDA execution provider sits on that driver. It also retains and releases the
  device's primary context, so a GPU that exists but cannot be used (exclusive mode, busy, a driver
  and kernel module that disagree) is reported as unusable.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from typing import Any

CUDA_PYTHON_HINT = "pip install 'esan-rt[trt]' (cuda-python for the CUDA major version of the TensorRT wheel)"

# What to do about the CUDA errors that stop a program before its first kernel (runtime and driver names).
_NO_DEVICE = "no CUDA GPU is visible to this process (check `nvidia-smi` and CUDA_VISIBLE_DEVICES)"
_OLD_DRIVER = (
    "the NVIDIA driver is older than the CUDA runtime in use: update the driver, or install the TensorRT and "
    "cuda-python wheels for the CUDA major version the driver supports (`nvidia-smi` shows it)"
)
_UNAVAILABLE = "the GPU exists but cannot be used now (exclusive compute mode, or taken by another process: nvidia-smi)"
_MISMATCH = "the NVIDIA kernel module and the user-space driver differ (reboot after a driver update)"
HINTS = {
    "cudaErrorNoDevice": _NO_DEVICE,
    "CUDA_ERROR_NO_DEVICE": _NO_DEVICE,
    "cudaErrorInsufficientDriver": _OLD_DRIVER,
    "cudaErrorCallRequiresNewerDriver": _OLD_DRIVER,
    "cudaErrorDevicesUnavailable": _UNAVAILABLE,
    "CUDA_ERROR_DEVICE_UNAVAILABLE": _UNAVAILABLE,
    "cudaErrorSystemDriverMismatch": _MISMATCH,
    "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH": _MISMATCH,
}

# cuDeviceGetAttribute codes (cuda.h, CUdevice_attribute)
_CC_MAJOR, _CC_MINOR = 75, 76


@dataclass(frozen=True)
class GpuStatus:
    """Outcome of a probe: ``ok`` with the first device's name and compute capability, or why not."""

    ok: bool
    message: str  # one line: "NVIDIA H100 (sm 9.0)" or what is wrong and what to do
    name: str = ""
    compute_capability: str = ""
    error: str | None = None  # the CUDA error's name (cudaErrorInsufficientDriver, CUDA_ERROR_NO_DEVICE, ...)

    def __str__(self) -> str:
        return self.message


def _found(name: str, major: int, minor: int) -> GpuStatus:
    name = name.rstrip("\x00").strip()
    return GpuStatus(True, f"{name} (sm {major}.{minor})", name, f"{major}.{minor}")


def cuda_failure(error: str, description: str = "") -> GpuStatus:
    """A failed probe that names the CUDA error and says what to do about it."""
    hint = HINTS.get(error) or description or "see the CUDA documentation for this error"
    return GpuStatus(False, f"CUDA error {error}: {hint}", error=error)


# -- runtime API (cuda-python) -----------------------------------------------------------------------
def import_cudart() -> Any:
    """cuda-python's runtime module (``cuda.bindings.runtime`` >= 12.6, else ``cuda.cudart``); ImportError if absent."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6 (removed in 13.0)
    return cudart


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, (bytes, bytearray)) else str(value)


def runtime_error_name(cudart: Any, err: Any) -> str:
    """``cudaErrorInsufficientDriver`` for a ``cudaError_t`` (``cudaGetErrorName``, else the enum's name)."""
    try:
        result = cudart.cudaGetErrorName(err)
        name = result[-1] if isinstance(result, tuple) else result
        if name:
            return _text(name)
    except Exception:  # any failure here falls back to the enum's own name
        pass
    name = getattr(err, "name", None)
    return str(name) if name else f"cudaError {int(err)}"


def runtime_error_string(cudart: Any, err: Any) -> str:
    try:
        result = cudart.cudaGetErrorString(err)
        return _text(result[-1] if isinstance(result, tuple) else result)
    except Exception:
        return ""


def runtime_failure(cudart: Any, err: Any) -> GpuStatus:
    return cuda_failure(runtime_error_name(cudart, err), runtime_error_string(cudart, err))


def probe_runtime(cudart: Any = None) -> GpuStatus:
    """Device 0 through the CUDA runtime (cuda-python); ``cudart`` is for tests."""
    if cudart is None:
        try:
            cudart = import_cudart()
        except ImportError:
            return GpuStatus(False, f"cuda-python is not installed: {CUDA_PYTHON_HINT}")
    success = cudart.cudaError_t.cudaSuccess
    err, count = cudart.cudaGetDeviceCount()
    if err != success:
        return runtime_failure(cudart, err)
    if count < 1:
        return cuda_failure("cudaErrorNoDevice")
    err, prop = cudart.cudaGetDeviceProperties(0)
    if err != success:
        return runtime_failure(cudart, err)
    return _found(_text(prop.name), int(prop.major), int(prop.minor))


# -- driver API (libcuda through ctypes) ----------------------------------------------------------------
def _driver_names() -> tuple[str, ...]:
    if sys.platform.startswith("win"):
        return ("nvcuda.dll",)
    if sys.platform == "darwin":
        return ()
    return ("libcuda.so.1", "libcuda.so")


def load_driver() -> Any | None:
    """The CUDA driver library, or None where there is none (no NVIDIA driver installed)."""
    for name in _driver_names():
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def driver_error_name(lib: Any, code: int) -> str:
    """``CUDA_ERROR_NO_DEVICE`` for a ``CUresult`` (``cuGetErrorName``)."""
    text = ctypes.c_char_p()
    if lib.cuGetErrorName(int(code), ctypes.byref(text)) == 0 and text.value:
        return text.value.decode(errors="replace")
    return f"CUresult {int(code)}"


def probe_driver(lib: Any = None) -> GpuStatus:
    """Device 0 through the CUDA driver: it exists, and its primary context can be created."""
    lib = lib if lib is not None else load_driver()
    if lib is None:
        return GpuStatus(False, "no NVIDIA driver found (libcuda could not be loaded): this machine has no usable "
                                "NVIDIA GPU driver")  # fmt: skip
    count, dev = ctypes.c_int(0), ctypes.c_int(0)
    rc = lib.cuInit(0)
    if rc == 0:
        rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc == 0 and count.value < 1:
        return cuda_failure("CUDA_ERROR_NO_DEVICE")
    if rc == 0:
        rc = lib.cuDeviceGet(ctypes.byref(dev), 0)
    ctx = ctypes.c_void_p()
    if rc == 0:
        rc = lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev)
        if rc == 0:
            lib.cuDevicePrimaryCtxRelease(dev)
    if rc != 0:
        return cuda_failure(driver_error_name(lib, rc))
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetName(name, len(name), dev)
    lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev)
    return _found(name.value.decode(errors="replace") or "NVIDIA GPU", major.value, minor.value)


def probe_gpu() -> GpuStatus:
    """The runtime probe where cuda-python is installed, else the driver probe."""
    try:
        cudart = import_cudart()
    except ImportError:
        return probe_driver()
    return probe_runtime(cudart)
