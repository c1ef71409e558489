"""Native TensorRT backend: the bundle's serialized engines, run on one CUDA stream.

``tensorrt`` and ``cuda.bindings`` (cuda-python) are imported inside ``TrtBackend.__init__`` only.
Works with TensorRT 10.x and 11.x: both use the name-based tensor API (``num_io_tensors``,
``get_tensor_name/mode/shape/dtype``), ``set_tensor_address`` and ``execute_async_v3``; engines are
built strongly typed, so precision comes with the engines (nothing to configure here).

Memory: one execution context per engine; inputs and outputs are taken from a pool of device buffers
that return to the pool when the scheduler drops the array (its ring buffer eviction), so steady-state
streaming allocates nothing. Ring-buffer entries, ``xf/xb`` and states stay on the GPU; window stacking
is a device-to-device copy; only the final maps are copied to the host. Everything is enqueued on one
stream, so a recycled buffer is never overwritten before earlier work that reads it.

Stages (``esan.runtime.backends.trt_batch``): engines of a dynamic-batch bundle have one optimisation
profile over 1 .. ``max_batch`` streams (``esan-rt export --engines --max-streams``); each stage gathers the
streams' device arrays into one batch, runs the engine once per ``max_batch`` streams and scatters the
outputs back into per-stream buffers. Engines of format 1 bundles (static batch 1) run one stream per call.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from esan.runtime.backends import cuda_probe
from esan.runtime.backends.trt_batch import TrtBatchMixin, batched_shape
from esan.runtime.core.backend_api import (
    Backend,
    BackendConfig,
)
from esan.runtime.core.bundle import Bundle, GraphSpec, check_compatible, load_bundle
from esan.runtime.core.errors import UserError

INSTALL_HINT = "pip install 'esan-rt[trt]' (tensorrt>=10.1 and cuda-python on a machine with an NVIDIA GPU)"


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise UserError(f"the trt backend needs NVIDIA TensorRT, which is not installed: {INSTALL_HINT}") from exc
    return trt


def import_cudart() -> Any:
    try:
        return cuda_probe.import_cudart()
    except ImportError as exc:
        raise UserError(f"the trt backend needs cuda-python, which is not installed: {INSTALL_HINT}") from exc


@dataclass
class DeviceArray:
    """A device buffer with a numpy-like description; ``ptr`` is a CUDA device address."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


class _Cuda:
    """The handful of CUDA runtime calls we need, with errors checked."""

    def __init__(self, cudart: Any) -> None:
        self.rt = cudart
        self.stream = self.check(cudart.cudaStreamCreate())  # a cudaStream_t object, not an int
        self.handle = _native_handle(self.stream)  # the raw cudaStream_t address execute_async_v3 takes

    def check(self, result: Any) -> Any:
        """cuda-python returns ``(cudaError_t, *values)``; raise on an error, else return the value(s)."""
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:  # enum members are int subclasses (IntEnum / FastEnum)
            raise RuntimeError(cuda_probe.runtime_failure(self.rt, err).message)
        return rest[0] if len(rest) == 1 else (tuple(rest) or None)

    def malloc(self, nbytes: int) -> int:
        return int(self.check(self.rt.cudaMalloc(max(nbytes, 1))))

    def copy(self, dst: int, src: int, nbytes: int, kind: str) -> None:
        k = getattr(self.rt.cudaMemcpyKind, f"cudaMemcpy{kind}")
        self.check(self.rt.cudaMemcpyAsync(dst, src, nbytes, k, self.stream))

    def zero(self, ptr: int, nbytes: int) -> None:
        self.check(self.rt.cudaMemsetAsync(ptr, 0, nbytes, self.stream))

    def sync(self) -> None:
        self.check(self.rt.cudaStreamSynchronize(self.stream))

    def compute_capability(self) -> str:
        dev = self.check(self.rt.cudaGetDevice())
        prop = self.check(self.rt.cudaGetDeviceProperties(dev))
        return f"{prop.major}.{prop.minor}"


def _native_handle(obj: Any) -> int:
    """Address held by a cuda-python handle (``cudaStream_t``...) as a Python int.

    ``int(handle)`` works on every cuda-python but is deprecated since cuda-bindings 13.0, which
    offers ``cuda.bindings.utils.get_cuda_native_handle`` instead; use that where it exists.
    """
    if isinstance(obj, int):
        return obj
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    try:
        return int(get_cuda_native_handle(obj))
    except TypeError:  # a type the helper does not know
        return int(obj)


class _Pool:
    """Recycles device buffers by size; arrays go back when garbage collected."""

    def __init__(self, cuda: _Cuda) -> None:
        self.cuda = cuda
        self.free: dict[int, list[int]] = defaultdict(list)
        self.owned: list[int] = []

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> DeviceArray:
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ptr = self.free[nbytes].pop() if self.free[nbytes] else self._new(nbytes)
        arr = DeviceArray(ptr, shape, dtype)
        weakref.finalize(arr, self.free[nbytes].append, ptr)
        return arr

    def _new(self, nbytes: int) -> int:
        ptr = self.cuda.malloc(nbytes)
        self.owned.append(ptr)
        return ptr

    def release(self) -> None:
        for ptr in self.owned:
            self.cuda.rt.cudaFree(ptr)
        self.owned, self.free = [], defaultdict(list)


class _Engine:
    """One deserialized engine, its execution context and its I/O description."""

    def __init__(self, trt: Any, runtime: Any, path: os.PathLike, name: str, spec: GraphSpec) -> None:
        with open(path, "rb") as fh:
            self.engine = runtime.deserialize_cuda_engine(fh.read())
        if self.engine is None:
            raise UserError(f"TensorRT cannot deserialize engine {path} ({name}); rebuild it with "
                            "`esan-rt export CKPT --engines --out DIR`")
        self.context = self.engine.create_execution_context()
        if self.context is None:  # TensorRT could not allocate the context's device memory
            raise UserError(
                f"TensorRT could not create an execution context for {name} (out of GPU memory?): free GPU memory "
                "(other processes: nvidia-smi) or export a smaller --input-size"
            )
        # shapes for one stream (a dynamic batch dimension resolved from the manifest), dtypes
        self.inputs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.outputs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.dynamic, self.max_batch = False, 1
        specs = {t.name: t for t in spec.inputs + spec.outputs}
        for i in range(self.engine.num_io_tensors):
            tname = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(tname))
            if any(d < 0 for d in shape):
                self.dynamic, shape = True, specs[tname].at_batch(1)
            desc = (shape, _np_dtype(trt, self.engine.get_tensor_dtype(tname)))
            is_input = self.engine.get_tensor_mode(tname) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs)[tname] = desc
        if self.dynamic:  # streams per call: the profile's largest dimension 0 over one stream's rows
            self.max_batch = min(int(self.engine.get_tensor_profile_shape(n, 0)[2][0]) // shape[0]
                                 for n, (shape, _) in self.inputs.items())  # fmt: skip


def _np_dtype(trt: Any, dtype: Any) -> np.dtype:
    names = {"FLOAT": np.float32, "HALF": np.float16, "UINT8": np.uint8, "INT8": np.int8, "INT32": np.int32,
             "INT64": np.int64, "BOOL": np.bool_}  # fmt: skip
    for name, np_type in names.items():
        if dtype == getattr(trt.DataType, name, object()):
            return np.dtype(np_type)
    raise UserError(f"unsupported TensorRT tensor dtype {dtype}")


class TrtBackend(TrtBatchMixin, Backend):
    """Runs the bundle's TensorRT engines (see the module docstring)."""

    name = "trt"

    def __init__(
        self,
        bundle_dir: str | os.PathLike | Bundle,
        *,
        device: str = "cuda",
        plugin_lib: str | os.PathLike | None = None,
        lookahead: int | None = None,
    ) -> None:
        trt = import_tensorrt()
        bundle = bundle_dir if isinstance(bundle_dir, Bundle) else load_bundle(bundle_dir)
        check_compatible(bundle, "trt", lookahead, tensorrt_version=str(trt.__version__))
        self.bundle = bundle
        cudart = import_cudart()
        gpu = cuda_probe.probe_runtime(cudart)
        if not gpu.ok:
            raise UserError(f"the trt backend needs a usable NVIDIA GPU: {gpu.message}")
        self.cuda = cuda = _Cuda(cudart)
        self.pool = _Pool(cuda)
        try:  # from here on, any failure releases the stream and the buffers already taken
            check_compatible(bundle, "trt", lookahead, compute_capability=cuda.compute_capability())
            from esan.runtime.backends.plugin_lib import init_builtin_plugins, load_plugin_library

            # Standard bundles hold ONNX DeformConv, which the ONNX parser turns into TensorRT's built-in
            # ModulatedDeformConv2d plugin (libnvinfer_plugin): its creator must be registered before
            # deserialize_cuda_engine, or deserialization fails ("IPluginCreator not found in Plugin Registry").
            # The logger is the process-wide one: the plugin library keeps its pointer.
            self._logger = init_builtin_plugins(trt)
            if bundle.dcn == "plugin":
                try:
                    self._plugin = load_plugin_library(plugin_lib)
                except (FileNotFoundError, RuntimeError) as exc:
                    raise UserError(str(exc)) from exc
            self._runtime = trt.Runtime(self._logger)
            self.engines = {g: _Engine(trt, self._runtime, bundle.engine_path(g), g, spec)
                            for g, spec in bundle.graphs.items()}  # fmt: skip
            self.max_batch = min(e.max_batch for e in self.engines.values())
            self._map = self.pool.get(*self.engines["decoder"].outputs["map"])
        except BaseException:
            self.close()
            raise
        super().__init__(
            BackendConfig.from_bundle(bundle, tensorrt=str(trt.__version__)), device=device, precision=bundle.precision
        )

    def _run(self, graph: str, inputs: dict[str, DeviceArray], batch: int = 1) -> dict[str, DeviceArray]:
        eng = self.engines[graph]
        if graph == "decoder" and batch == 1:  # the map has one persistent buffer (copied to the host right away)
            outs = {"map": self._map}
        else:  # everything else may be cached by the processor: fresh buffers from the pool
            outs = {name: self.pool.get(batched_shape(shape, batch), dt) for name, (shape, dt) in eng.outputs.items()}
        if eng.dynamic:
            for name, arr in inputs.items():
                if not eng.context.set_input_shape(name, arr.shape):
                    raise RuntimeError(f"TensorRT refused shape {arr.shape} for {graph}:{name} (outside the profile?)")
        for name, arr in {**inputs, **outs}.items():
            if not eng.context.set_tensor_address(name, arr.ptr):
                raise RuntimeError(f"TensorRT refused the device address of {graph}:{name} (see its log above)")
        if not eng.context.execute_async_v3(self.cuda.handle):
            raise RuntimeError(f"TensorRT failed to enqueue {graph}")
        return outs

    def close(self) -> None:
        """Wait for the stream, then free every buffer and the stream, even when the wait fails.

        After a sticky CUDA error (an illegal access, say) every later call fails, the wait too; the
        engines, buffers and stream are released all the same and the error is reported as a warning
        (the call that hit it has raised already).
        """
        cuda = getattr(self, "cuda", None)
        if cuda is not None:
            self.cuda = None
            try:
                cuda.sync()
            except RuntimeError as exc:
                warnings.warn(f"trt backend: closing after a CUDA failure ({exc})", RuntimeWarning, stacklevel=2)
            finally:
                self.engines = {}
                self.pool.release()
                cuda.rt.cudaStreamDestroy(cuda.stream)
        super().close()
