"""Thin TensorRT engine building (TensorRT 10.x and 11.x); ``tensorrt`` is imported lazily.

Networks are created STRONGLY_TYPED on 10.x (11.x is always strongly typed; the flag is ignored there):
precision then comes from the ONNX graph (an fp16 bundle gives fp16 engines). Without that flag
(old builds), fp16 bundles set the FP16 builder flag instead. fp32 bundles disable TF32.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

INSTALL_HINT = "install it with `pip install 'esan-rt[trt]'` (needs an NVIDIA GPU and driver)"


def import_tensorrt() -> ModuleType | None:
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt


def gpu_info() -> tuple[str, str] | None:
    """``(name, "major.minor")`` of CUDA device 0 via cuda-python, else torch; None without a GPU."""
    try:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            from cuda import cudart  # older cuda-python (removed in 13.0)

        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or count < 1:
            return None
        err, prop = cudart.cudaGetDeviceProperties(0)
        if int(err) != 0:
            return None
        name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
        return name.rstrip("\x00"), f"{prop.major}.{prop.minor}"
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except ImportError:
        pass
    return None


class EngineBuilder:
    """One builder for all graphs of a bundle, sharing a timing cache."""

    def __init__(
        self, trt: ModuleType, precision: str, workspace_mb: int, timing_cache: Path | None,
        plugin_lib: Path | None = None,
    ) -> None:  # fmt: skip
        self.trt, self.precision = trt, precision
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")  # built-in DeformConv plugin for standard bundles
        if plugin_lib is not None:
            from esan.runtime.backends.plugin_lib import load_plugin_library

            load_plugin_library(plugin_lib)  # idempotent: a second build in one process is fine
        self.builder = trt.Builder(self.logger)
        self.workspace_mb = workspace_mb
        self.timing_cache_path = timing_cache
        self.config = self._config()

    def _config(self):
        trt = self.trt
        config = self.builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mb << 20)
        if self.precision == "fp16" and not self.strongly_typed and hasattr(trt.BuilderFlag, "FP16"):
            config.set_flag(trt.BuilderFlag.FP16)
        if self.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # fp32 bundles promise fp32 parity (1e-4 on maps)
        data = b""
        if self.timing_cache_path is not None and self.timing_cache_path.is_file():
            data = self.timing_cache_path.read_bytes()
        cache = config.create_timing_cache(data)
        if cache is None and data:  # unreadable cache file (another TensorRT version, truncated): start afresh
            cache = config.create_timing_cache(b"")
        if cache is not None:
            config.set_timing_cache(cache, ignore_mismatch=True)
        return config

    @property
    def strongly_typed(self) -> bool:
        """True when the flag exists (10.x) or TensorRT is 11+ (always strongly typed)."""
        return self._major >= 11 or hasattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")

    @property
    def _major(self) -> int:
        return int(str(self.trt.__version__).split(".")[0])

    def build(self, onnx_path: Path, profile: dict | None = None) -> bytes:
        """Parse one ONNX graph and return the serialized engine.

        ``profile``: ``{input: (min, opt, max)}`` shapes (``esan.export.trt_profiles``) for a dynamic-batch graph.
        """
        trt = self.trt
        flags = 0
        # 10.x: opt in (EXPLICIT_BATCH is deprecated and ignored there, so it is not set). 11.x: every
        # network is strongly typed and the flag is deprecated and ignored, so it is left out.
        if self._major < 11 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = self.builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
        config = self.config
        if profile:  # a profile belongs to one network: a config of its own, sharing the timing cache
            config = self._config()
            config.set_timing_cache(self.config.get_timing_cache(), ignore_mismatch=True)
            opt = self.builder.create_optimization_profile()
            for name, (lo, mid, hi) in profile.items():
                opt.set_shape(name, lo, mid, hi)
            config.add_optimization_profile(opt)
        plan = self.builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError(f"TensorRT failed to build an engine for {onnx_path.name} (see the log above)")
        return bytes(plan)

    def save_timing_cache(self) -> None:
        if self.timing_cache_path is None:
            return
        from esan.runtime.core.fsutil import atomic_path

        with atomic_path(self.timing_cache_path) as tmp:
            tmp.write_bytes(bytes(self.config.get_timing_cache().serialize()))
