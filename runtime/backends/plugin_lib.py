"""Find and call the ESAN deformable-convolution libraries (numpy + ctypes; never imports torch).

Libraries come from ``plugins/`` (``esan-rt build-plugin``, or ``cmake -S plugins -B build`` in a checkout):
``esan_dcn_kernels`` (host reference and CUDA launcher, C ABI) and ``esan_dcn_plugin`` (the TensorRT IPluginV3
plugin named in ``plugin_spec``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from esan.runtime.core import plugin_spec

ENV_PLUGIN_DIR = "ESAN_PLUGIN_DIR"
# The repository root in a checkout (``runtime/`` sits under it), the ``esan`` folder in an installed wheel;
# the plugin sources are ``plugins/`` under it in both.
SOURCE_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_SOURCES = SOURCE_ROOT / "plugins"
BUILD_HINT = (
    "build it with `esan-rt build-plugin [--tensorrt-root /path/to/TensorRT]` (into "
    f"{Path('~/.cache/esan-rt/plugins')}), or in a checkout with `cmake -S plugins -B build "
    "[-DTENSORRT_ROOT=/path/to/TensorRT] && cmake --build build -j2` from the repository root; "
    f"or set {ENV_PLUGIN_DIR} to the folder holding the libraries"
)


FLOAT32 = 0
FLOAT16 = 1
STATUS_OK = 0

_PARAM_FIELDS = (
    "batch",
    "inChannels",
    "height",
    "width",
    "outChannels",
    "kernelH",
    "kernelW",
    "strideH",
    "strideW",
    "padH",
    "padW",
    "dilationH",
    "dilationW",
    "groups",
    "deformableGroups",
    "outH",
    "outW",
)


class DcnParams(ctypes.Structure):
    """Mirror of the C ``EsanDcnParams`` struct (modulatedDeformConvKernel.h)."""

    _fields_ = [(name, ctypes.c_int32) for name in _PARAM_FIELDS]


def library_filename(basename: str) -> str:
    """Platform file name of a shared library (``libX.so``, ``libX.dylib`` or ``X.dll``)."""
    if sys.platform.startswith("win"):
        return f"{basename}.dll"
    if sys.platform == "darwin":
        return f"lib{basename}.dylib"
    return f"lib{basename}.so"


def user_plugin_dir() -> Path:
    """Per-user folder ``esan-rt build-plugin`` builds into: ``~/.cache/esan-rt/plugins``."""
    return Path.home() / ".cache" / "esan-rt" / "plugins"


def checkout_build_dirs() -> list[Path]:
    """``build/`` (and ``build/lib``) at the repository root of a source checkout; none in an installed wheel."""
    if not (SOURCE_ROOT / "pyproject.toml").is_file():
        return []
    return [SOURCE_ROOT / "build", SOURCE_ROOT / "build" / "lib"]


def search_dirs() -> list[Path]:
    """Folders searched for the libraries, in order: ``$ESAN_PLUGIN_DIR``, ``build/`` at the root of a source
    checkout (``cmake -S plugins -B build``), then the per-user folder of ``esan-rt build-plugin``."""
    env = os.environ.get(ENV_PLUGIN_DIR)
    return [*([Path(env)] if env else []), *checkout_build_dirs(), user_plugin_dir()]


def find_library(basename: str) -> Path:
    """Path of a built library; FileNotFoundError (with the cmake command) when absent."""
    name = library_filename(basename)
    for folder in search_dirs():
        candidate = folder / name
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(d) for d in search_dirs())
    raise FileNotFoundError(f"{name} not found (searched {searched}); {BUILD_HINT}")


_KERNEL_LIBS: dict[str, ctypes.CDLL] = {}


def load_kernel_library(path: str | os.PathLike[str] | None = None) -> ctypes.CDLL:
    """Load ``esan_dcn_kernels`` (cached) with its C signatures declared."""
    resolved = str(Path(path) if path is not None else find_library(plugin_spec.KERNEL_LIBRARY_BASENAME))
    if resolved in _KERNEL_LIBS:
        return _KERNEL_LIBS[resolved]
    lib = ctypes.CDLL(resolved)
    params_p = ctypes.POINTER(DcnParams)
    f32_p = ctypes.POINTER(ctypes.c_float)
    vp = ctypes.c_void_p
    lib.esan_dcn_check_params.argtypes = [params_p]
    lib.esan_dcn_check_params.restype = ctypes.c_int32
    lib.esan_dcn_status_string.argtypes = [ctypes.c_int32]
    lib.esan_dcn_status_string.restype = ctypes.c_char_p
    lib.esan_dcn_has_cuda.argtypes = []
    lib.esan_dcn_has_cuda.restype = ctypes.c_int32
    lib.esan_dcn_has_cublas.argtypes = []
    lib.esan_dcn_has_cublas.restype = ctypes.c_int32
    lib.esan_dcn_forward_host.argtypes = [params_p, f32_p, f32_p, f32_p, f32_p, f32_p, f32_p]
    lib.esan_dcn_forward_host.restype = ctypes.c_int32
    lib.esan_dcn_workspace_size.argtypes = [params_p, ctypes.c_int32, ctypes.c_int32]
    lib.esan_dcn_workspace_size.restype = ctypes.c_size_t
    # params, dataType, input, offset, mask, weight, bias, output, workspace, workspaceSize, cublasHandle, stream
    lib.esan_dcn_forward_cuda.argtypes = [params_p, ctypes.c_int32] + [vp] * 7 + [ctypes.c_size_t, vp, vp]
    lib.esan_dcn_forward_cuda.restype = ctypes.c_int32
    lib.esan_dcn_cublas_create.argtypes = [ctypes.POINTER(vp)]
    lib.esan_dcn_cublas_create.restype = ctypes.c_int32
    lib.esan_dcn_cublas_destroy.argtypes = [vp]
    lib.esan_dcn_cublas_destroy.restype = ctypes.c_int32
    _KERNEL_LIBS[resolved] = lib
    return lib


_PLUGIN_HANDLES: dict[str, object] = {}  # resolved path -> what load_plugin_library returned
_DLOPENED: dict[str, ctypes.CDLL] = {}  # resolved path -> its dlopen handle, kept for the life of the process
_TRT_LOGGERS: dict[Any, Any] = {}  # tensorrt module -> its process-wide logger
_BUILTIN_PLUGINS: set[Any] = set()  # tensorrt modules whose libnvinfer_plugin creators are registered


def trt_logger(trt: Any) -> Any:
    """The process-wide ``trt.Logger`` (WARNING): created once, never released.

    ``init_libnvinfer_plugins`` and plugin libraries keep the logger pointer they are given and log
    through it later, so the logger must live as long as the process, not as long as one builder.
    """
    if trt not in _TRT_LOGGERS:
        _TRT_LOGGERS[trt] = trt.Logger(trt.Logger.WARNING)
    return _TRT_LOGGERS[trt]


def init_builtin_plugins(trt: Any) -> Any:
    """Register libnvinfer_plugin's creators once per process with the process-wide logger; returns it.

    Standard bundles hold ONNX DeformConv, which the ONNX parser maps to TensorRT's built-in
    ``ModulatedDeformConv2d`` plugin: its creator must be registered before parsing or deserializing.
    """
    logger = trt_logger(trt)
    if trt not in _BUILTIN_PLUGINS:
        trt.init_libnvinfer_plugins(logger, "")
        _BUILTIN_PLUGINS.add(trt)
    return logger


def _dlopen_global(path: Path) -> ctypes.CDLL:
    """``dlopen(path, RTLD_NOW | RTLD_GLOBAL)``: runs the library's load-time registration, if it has one."""
    return ctypes.CDLL(str(path), mode=getattr(os, "RTLD_GLOBAL", 0))


def _registered_creator(registry: Any) -> Any:
    get_creator = getattr(registry, "get_creator", None)
    if get_creator is None:
        return None
    return get_creator(plugin_spec.PLUGIN_NAME, plugin_spec.PLUGIN_VERSION, plugin_spec.PLUGIN_NAMESPACE)


def load_plugin_library(path: str | os.PathLike[str] | None = None) -> object:
    """Make the TensorRT plugin available; returns TensorRT's library handle, or the ``ctypes.CDLL``.

    The library is first opened with ``ctypes.CDLL(path, RTLD_GLOBAL)`` (that handle is kept for the
    life of the process). A build with ``-DESAN_DCN_STATIC_REGISTRATION=ON`` registers its creator
    right then, and is not handed to TensorRT again (``load_library`` would fail on the creator it
    already has). Otherwise, when the creator is not registered yet, the library goes to
    ``trt.get_plugin_registry().load_library`` (which calls its ``getCreators``). Without the
    ``tensorrt`` package the ``dlopen`` is all (a C++ process registers it). Loading the same library
    again returns the first handle.
    """
    resolved = Path(path) if path is not None else find_library(plugin_spec.PLUGIN_LIBRARY_BASENAME)
    if not resolved.is_file():
        raise FileNotFoundError(f"{resolved} does not exist; {BUILD_HINT}")
    key = str(resolved.resolve())
    if key in _PLUGIN_HANDLES:  # loadLibrary refuses a second registration of the same creator
        return _PLUGIN_HANDLES[key]
    try:
        import tensorrt as trt  # noqa: PLC0415 - optional dependency
    except ImportError:
        trt = None
    if key not in _DLOPENED:
        try:
            _DLOPENED[key] = _dlopen_global(resolved)
        except OSError as exc:
            raise RuntimeError(f"cannot load the plugin library {resolved}: {exc}; {BUILD_HINT}") from exc
    handle: object = _DLOPENED[key]
    if trt is not None:
        registry = trt.get_plugin_registry()
        # Registered already: by this library's load-time registration, or by another copy of it.
        if _registered_creator(registry) is None:
            handle = registry.load_library(str(resolved))
            if handle is None:
                raise RuntimeError(f"TensorRT could not load the plugin library {resolved}")
    _PLUGIN_HANDLES[key] = handle
    return handle


def status_message(lib: ctypes.CDLL, status: int) -> str:
    """Text for a library status code."""
    return lib.esan_dcn_status_string(status).decode()


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    items = tuple(int(v) for v in value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}")
    return items  # type: ignore[return-value]


def make_params(
    input_shape: Sequence[int],
    weight_shape: Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    deformable_groups: int = 1,
    lib: ctypes.CDLL | None = None,
) -> DcnParams:
    """Build and validate a DcnParams (outH/outW filled) from NCHW input and OIHW weight shapes."""
    if len(input_shape) != 4 or len(weight_shape) != 4:
        raise ValueError(f"input and weight must be 4-D, got {tuple(input_shape)} and {tuple(weight_shape)}")
    n, c, h, w = (int(v) for v in input_shape)
    cout, cin_g, kh, kw = (int(v) for v in weight_shape)
    if groups < 1 or c % groups or cout % groups or cin_g * groups != c:
        raise ValueError(f"weight {tuple(weight_shape)} does not match input channels {c} with groups={groups}")
    if deformable_groups < 1 or c % deformable_groups:
        raise ValueError(f"input channels {c} not divisible by deformable_groups={deformable_groups}")
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    params = DcnParams(n, c, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups, deformable_groups, 0, 0)
    lib = lib or load_kernel_library()
    status = lib.esan_dcn_check_params(ctypes.byref(params))
    if status != STATUS_OK:
        raise ValueError(
            f"invalid deformable convolution: input {tuple(input_shape)}, weight {tuple(weight_shape)}, "
            f"stride {(sh, sw)}, padding {(ph, pw)}, dilation {(dh, dw)}, groups {groups}, "
            f"deformable_groups {deformable_groups} ({status_message(lib, status)})"
        )
    return params


def _as_f32(name: str, array: np.ndarray, ndim: int) -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=np.float32)
    if out.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {out.shape}")
    return out


def _ptr(array: np.ndarray) -> ctypes._Pointer:  # type: ignore[name-defined]
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def deform_conv2d_host(
    x: np.ndarray,
    offset: np.ndarray,
    mask: np.ndarray | None,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    deformable_groups: int | None = None,
) -> np.ndarray:
    """Modulated deformable convolution on the CPU (C reference), float32, torchvision semantics.

    x [N,C,H,W]; offset [N,2*dg*kh*kw,Ho,Wo] ((dy, dx) interleaved per tap); mask [N,dg*kh*kw,Ho,Wo]
    (None = all ones); weight [Cout,C/groups,kh,kw]; bias [Cout] or None. ``deformable_groups=None``
    infers dg from the offset channels. Returns [N,Cout,Ho,Wo] float32.
    """
    x = _as_f32("x", x, 4)
    weight = _as_f32("weight", weight, 4)
    offset = _as_f32("offset", offset, 4)
    kh, kw = weight.shape[2], weight.shape[3]
    if deformable_groups is None:
        if offset.shape[1] % (2 * kh * kw):
            raise ValueError(f"offset channels {offset.shape[1]} not a multiple of 2*kh*kw={2 * kh * kw}")
        deformable_groups = offset.shape[1] // (2 * kh * kw)
    lib = load_kernel_library()
    p = make_params(x.shape, weight.shape, stride, padding, dilation, groups, deformable_groups, lib)
    taps = deformable_groups * kh * kw
    expect_offset = (p.batch, 2 * taps, p.outH, p.outW)
    if offset.shape != expect_offset:
        raise ValueError(f"offset must have shape {expect_offset}, got {offset.shape}")
    expect_mask = (p.batch, taps, p.outH, p.outW)
    mask = np.ones(expect_mask, np.float32) if mask is None else _as_f32("mask", mask, 4)
    if mask.shape != expect_mask:
        raise ValueError(f"mask must have shape {expect_mask}, got {mask.shape}")
    bias_ptr = None
    if bias is not None:
        bias = np.ascontiguousarray(bias, dtype=np.float32)
        if bias.shape != (p.outChannels,):
            raise ValueError(f"bias must have shape ({p.outChannels},), got {bias.shape}")
        bias_ptr = _ptr(bias)
    out = np.empty((p.batch, p.outChannels, p.outH, p.outW), np.float32)
    status = lib.esan_dcn_forward_host(
        ctypes.byref(p), _ptr(x), _ptr(offset), _ptr(mask), _ptr(weight), bias_ptr, _ptr(out)
    )
    if status != STATUS_OK:
        raise RuntimeError(f"esan_dcn_forward_host failed: {status_message(lib, status)}")
    return out


def workspace_size(params: DcnParams, dtype: int = FLOAT32, use_cublas: bool = True) -> int:
    """Device workspace bytes for ``forward_cuda`` (dtype FLOAT32 or FLOAT16)."""
    return int(load_kernel_library().esan_dcn_workspace_size(ctypes.byref(params), dtype, int(use_cublas)))


def forward_cuda(
    params: DcnParams,
    dtype: int,
    pointers: Sequence[int | None],
    workspace: int,
    workspace_bytes: int,
    cublas_handle: int | None = None,
    stream: int = 0,
) -> None:
    """Run the CUDA launcher on device pointers (x, offset, mask, weight, bias|None, out); raises on error."""
    lib = load_kernel_library()
    if len(pointers) != 6:
        raise ValueError("pointers must be (x, offset, mask, weight, bias or None, out)")
    status = lib.esan_dcn_forward_cuda(
        ctypes.byref(params), dtype, *pointers, workspace, workspace_bytes, cublas_handle, stream
    )
    if status != STATUS_OK:
        raise RuntimeError(f"esan_dcn_forward_cuda failed: {status_message(lib, status)}")


def create_cublas_handle() -> int | None:
    """A cuBLAS handle for ``forward_cuda`` (None when the library has no cuBLAS)."""
    lib = load_kernel_library()
    if not lib.esan_dcn_has_cublas():
        return None
    handle = ctypes.c_void_p()
    status = lib.esan_dcn_cublas_create(ctypes.byref(handle))
    if status != STATUS_OK:
        raise RuntimeError(f"esan_dcn_cublas_create failed: {status_message(lib, status)}")
    return handle.value


def destroy_cublas_handle(handle: int | None) -> None:
    """Release a handle from ``create_cublas_handle``."""
    if handle:
        load_kernel_library().esan_dcn_cublas_destroy(handle)
