"""TensorRT and CUDA simulated on the CPU, for the glue code that drives them (no GPU, no TensorRT here).

* ``FakeCudart``: ``cuda.bindings.runtime`` over host memory ("device" pointers are numpy buffers),
  with cuda-python's error enum, error names, and a sticky-error switch.
* ``fake_tensorrt_module(bundle)``: the runtime side (engines run the bundle's ONNX graphs with ONNX
  Runtime on host memory) for ``TrtBackend``.
* ``fake_build_tensorrt()``: the builder side, enough of it for Polygraphy's loaders to build
  "engines" whose bytes describe the network and builder config Polygraphy made (JSON), with a
  timing cache that, like TensorRT's, is refused (``set_timing_cache`` -> False) when it was recorded
  on another GPU and ``ignore_mismatch`` is False.
* ``install_cudart(monkeypatch, cudart)``: make ``from cuda.bindings import runtime`` return it.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime


class CudaError(enum.IntEnum):
    """The members of cuda-python's ``cudaError_t`` the tests use (same values)."""

    cudaSuccess = 0
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorIllegalAddress = 700


class FakeCudart(types.ModuleType):
    """``cuda.bindings.runtime`` over host memory; ``sticky`` makes every later call fail like a sticky error."""

    cudaError_t = CudaError  # noqa: N815 - mirrors cuda-python

    class cudaMemcpyKind:  # noqa: N801
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice = 1, 2, 3

    def __init__(self, device_count_error: CudaError = CudaError.cudaSuccess, devices: int = 1) -> None:
        super().__init__("cuda.bindings.runtime")
        self.buffers: dict[int, np.ndarray] = {}
        self.freed: list[int] = []
        self.streams_destroyed = 0
        self.sticky: CudaError | None = None
        self.device_count_error, self.devices = device_count_error, devices

    def _err(self) -> CudaError:
        return self.sticky or CudaError.cudaSuccess

    def cudaGetErrorName(self, err):  # noqa: N802
        return CudaError.cudaSuccess, CudaError(err).name.encode()

    def cudaGetErrorString(self, err):  # noqa: N802
        return CudaError.cudaSuccess, f"fake description of {CudaError(err).name}".encode()

    def cudaGetDeviceCount(self):  # noqa: N802
        return self.device_count_error, self.devices if self.device_count_error == 0 else 0

    def cudaGetDeviceProperties(self, dev):  # noqa: N802
        return CudaError.cudaSuccess, types.SimpleNamespace(name=b"NVIDIA Fake\x00\x00", major=9, minor=0)

    def cudaMalloc(self, n):  # noqa: N802
        buf = np.full(n, 0xAB, np.uint8)  # garbage, like fresh device memory
        self.buffers[buf.ctypes.data] = buf
        return self._err(), buf.ctypes.data

    def cudaFree(self, ptr):  # noqa: N802
        self.buffers.pop(ptr)
        self.freed.append(ptr)
        return (self._err(),)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):  # noqa: N802
        if self.sticky is None:
            ctypes.memmove(dst, src, n)
        return (self._err(),)

    def cudaMemsetAsync(self, ptr, value, n, stream):  # noqa: N802
        if self.sticky is None:
            ctypes.memset(ptr, value, n)
        return (self._err(),)

    def cudaStreamCreate(self):  # noqa: N802
        return self._err(), 1234

    def cudaStreamSynchronize(self, stream):  # noqa: N802
        return (self._err(),)

    def cudaStreamDestroy(self, stream):  # noqa: N802
        self.streams_destroyed += 1
        return (self._err(),)

    def cudaGetDevice(self):  # noqa: N802
        return self._err(), 0


def install_cudart(monkeypatch, cudart: types.ModuleType) -> None:
    monkeypatch.setitem(sys.modules, "cuda", types.ModuleType("cuda"))
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)


# -- runtime side ---------------------------------------------------------------------------------
def bundle_with_engines(src: Path, root: Path, tensorrt_version: str = "10.13.0") -> Path:
    """A copy of bundle ``src`` whose manifest lists "engines" (each ``.plan`` holds its graph's name)."""
    shutil.copytree(src, root)
    manifest = json.loads((root / "manifest.json").read_text())
    files = {}
    for g in manifest["graphs"]:
        (root / f"{g}.plan").write_bytes(g.encode())
        files[g] = {"file": f"{g}.plan", "sha256": hashlib.sha256(g.encode()).hexdigest()}
    manifest["engines"] = {"tensorrt_version": tensorrt_version, "gpu": "sim", "compute_capability": "9.0",
                           "files": files}  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def fake_tensorrt_module(bundle, *, context_fails: str | None = None, refuse_address: str | None = None,
                         max_batch: int | None = None, calls: list | None = None):
    """``tensorrt`` whose engines run the bundle's ONNX graphs with ONNX Runtime on host memory.

    ``context_fails``: the graph whose ``create_execution_context`` returns None (out of GPU memory);
    ``refuse_address``: ``"graph:tensor"`` whose ``set_tensor_address`` returns False.
    ``max_batch``: engines with a dynamic batch axis (profile 1 .. ``max_batch`` streams; else static batch 1);
    ``calls`` then records ``(graph, streams)`` per execution.
    ``trt.plugin_inits`` records the loggers handed to ``init_libnvinfer_plugins``.
    """
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.13.0"
    trt.DataType = types.SimpleNamespace(FLOAT="f4", HALF="f2", UINT8="u1")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.plugin_inits = []
    trt.init_libnvinfer_plugins = lambda logger, namespace: trt.plugin_inits.append(logger) or True

    def view(ptr, shape, dtype):
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer((ctypes.c_char * n).from_address(ptr), dtype).reshape(shape)

    class Context:
        def __init__(self, graph):
            self.graph, self.addr = graph, {}
            self.shapes = {t.name: t.at_batch(1) for t in graph.inputs}  # static engines: batch 1
            so = onnxruntime.SessionOptions()
            so.intra_op_num_threads = 1
            self.session = onnxruntime.InferenceSession(str(graph.file), so, providers=["CPUExecutionProvider"])

        def set_input_shape(self, name, shape):
            spec = next(t for t in self.graph.inputs if t.name == name)
            batch, rest = divmod(shape[0], spec.rows)
            ok = max_batch is not None and rest == 0 and 1 <= batch <= max_batch
            if ok and tuple(shape[1:]) == spec.at_batch(1)[1:]:
                self.shapes[name] = tuple(shape)
                return True
            return False

        def set_tensor_address(self, name, ptr):
            if refuse_address == f"{self.graph.name}:{name}":
                return False
            self.addr[name] = ptr
            return True

        def execute_async_v3(self, stream):
            feeds = {t.name: view(self.addr[t.name], self.shapes[t.name], t.dtype) for t in self.graph.inputs}
            batches = {self.shapes[t.name][0] // t.rows for t in self.graph.inputs}
            assert len(batches) == 1, f"{self.graph.name}: inputs set to different batches {batches}"
            if calls is not None:
                calls.append((self.graph.name, batches.pop()))
            outs = self.session.run([t.name for t in self.graph.outputs], feeds)
            for t, value in zip(self.graph.outputs, outs, strict=True):
                view(self.addr[t.name], value.shape, t.dtype)[...] = value
            return True

    class Engine:
        def __init__(self, graph):
            self.graph = graph
            self.io = [(t, "in") for t in graph.inputs] + [(t, "out") for t in graph.outputs]
            self.num_io_tensors = len(self.io)

        def get_tensor_name(self, i):
            return self.io[i][0].name

        def _find(self, name):
            return next((t, mode) for t, mode in self.io if t.name == name)

        def get_tensor_mode(self, name):
            return self._find(name)[1]

        def get_tensor_shape(self, name):
            shape = self._find(name)[0].at_batch(1)
            return shape if max_batch is None else (-1, *shape[1:])

        def get_tensor_profile_shape(self, name, profile):
            t = self._find(name)[0]
            return t.at_batch(1), t.at_batch(max_batch or 1), t.at_batch(max_batch or 1)

        def get_tensor_dtype(self, name):
            return {"float32": "f4", "float16": "f2", "uint8": "u1"}[self._find(name)[0].dtype]

        def create_execution_context(self):
            return None if context_fails == self.graph.name else Context(self.graph)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine(bundle.graphs[data.decode()])

    trt.Runtime = Runtime
    return trt


# -- builder side (for Polygraphy) ------------------------------------------------------------------
FAKE_DEVICE = "NVIDIA Fake sm90"


class _TimingCache:
    def __init__(self, device: str | None, entries: list[str]) -> None:
        self.device, self.entries = device, entries

    def serialize(self) -> bytes:
        return json.dumps({"device": self.device, "entries": self.entries}).encode()


class _Tensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        self.name, self.shape, self.dtype, self.is_shape_tensor = name, shape, dtype, False


def fake_build_tensorrt(version: str = "10.9.0.34", *, strongly_typed_flag: bool = True) -> types.ModuleType:
    """``tensorrt`` for Polygraphy's build loaders; engines are JSON descriptions of what was asked for."""
    import onnx

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.plugin_inits = []
    trt.init_libnvinfer_plugins = lambda logger, namespace: trt.plugin_inits.append(logger) or True
    creation = {"EXPLICIT_BATCH": 0, **({"STRONGLY_TYPED": 5} if strongly_typed_flag else {})}
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", creation)
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", {"FP16": 0, "INT8": 1, "TF32": 7})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.DeviceType = enum.IntEnum("DeviceType", {"GPU": 0, "DLA": 1})
    trt.LayerType = enum.IntEnum("LayerType", {"SHAPE": 0})

    class ILogger:
        def __init__(self):
            pass

    class Logger(ILogger):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, level=2):
            super().__init__()

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.inputs, self.source = flags, [], None

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, i: int) -> _Tensor:
            return self.inputs[i]

        def get_flag(self, flag) -> bool:
            return bool(self.flags & (1 << int(flag)))

        def __iter__(self):
            return iter(())  # no layers to inspect

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger) -> None:
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            model = onnx.load(path)
            for inp in model.graph.input:
                dims = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)
                self.network.inputs.append(_Tensor(inp.name, dims, str(inp.type.tensor_type.elem_type)))
            self.network.source = Path(path).name
            return True

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, list] = {}

        def set_shape(self, name, lo, opt, hi) -> None:
            self.shapes[name] = [list(lo), list(opt), list(hi)]

    class Config:
        def __init__(self) -> None:
            self.flags = {trt.BuilderFlag.TF32}  # TensorRT enables TF32 by default
            self.pools: dict[int, int] = {}
            self.cache: _TimingCache | None = None
            self.profiles: list[Profile] = []
            self.DLA_core, self.default_device_type, self.int8_calibrator = -1, trt.DeviceType.GPU, None

        def set_flag(self, flag) -> None:
            self.flags.add(flag)

        def clear_flag(self, flag) -> None:
            self.flags.discard(flag)

        def get_flag(self, flag) -> bool:
            return flag in self.flags

        def set_memory_pool_limit(self, pool, size: int) -> None:
            self.pools[int(pool)] = size

        def get_memory_pool_limit(self, pool) -> int:
            return self.pools.get(int(pool), 0)

        def add_optimization_profile(self, profile: Profile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        @property
        def num_optimization_profiles(self) -> int:
            return len(self.profiles)

        def create_timing_cache(self, data: bytes):
            if not bytes(data):
                return _TimingCache(None, [])
            try:
                d = json.loads(bytes(data))
                return _TimingCache(d["device"], list(d["entries"]))
            except (ValueError, KeyError, TypeError):
                return None  # TensorRT returns nullptr for a cache it cannot read

        def set_timing_cache(self, cache: _TimingCache, ignore_mismatch: bool) -> bool:
            if cache.device not in (None, FAKE_DEVICE) and not ignore_mismatch:
                return False
            cache.device = FAKE_DEVICE
            self.cache = cache
            return True

        def get_timing_cache(self) -> _TimingCache | None:
            return self.cache

    class Builder:
        def __init__(self, logger) -> None:
            pass

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            if config.cache is not None:
                config.cache.entries.append(network.source)
            flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
            return json.dumps({
                "graph": network.source,
                "strongly_typed": flag is not None and network.get_flag(flag),
                "fp16": config.get_flag(trt.BuilderFlag.FP16), "tf32": config.get_flag(trt.BuilderFlag.TF32),
                "int8": config.get_flag(trt.BuilderFlag.INT8),
                "workspace": config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE),
                "profiles": [p.shapes for p in config.profiles],
                "timing_cache_entries": list(config.cache.entries) if config.cache else None,
            }).encode()  # fmt: skip

    class Engine:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data

    class Runtime:
        def __init__(self, logger) -> None:
            pass

        def deserialize_cuda_engine(self, data) -> Engine:
            return Engine(bytes(data))

    trt.ILogger, trt.Logger, trt.OnnxParser, trt.Builder, trt.Runtime = ILogger, Logger, OnnxParser, Builder, Runtime
    return trt


def install_build_tensorrt(monkeypatch, trt: types.ModuleType) -> None:
    """Make ``import tensorrt`` and Polygraphy's TensorRT loaders use ``trt`` for this test.

    Polygraphy imports TensorRT lazily once per module and keeps it (and one logger made from it):
    those are pointed at ``trt`` too, and monkeypatch restores them afterwards.
    """
    import polygraphy.backend.trt  # noqa: F401 - loads the modules whose `trt` is patched below
    from polygraphy.backend.trt import util as trt_util

    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    for name, module in list(sys.modules.items()):
        lazy = getattr(module, "trt", None) if name.startswith("polygraphy.") and module is not None else None
        if type(lazy).__name__ == "LazyModule":  # not the `polygraphy.backend.trt` subpackage itself
            monkeypatch.setattr(module, "trt", trt)
    monkeypatch.setattr(trt_util, "TRT_LOGGER", None)
