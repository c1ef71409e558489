"""TensorRT engines through Polygraphy's loaders (TensorRT 10.x and 11.x); tensorrt and polygraphy imported lazily.

Per graph: ``NetworkFromOnnxPath`` (strongly typed where TensorRT has the flag, 10.x; 11.x networks are
always strongly typed) -> ``CreateConfig`` (workspace, one optimisation profile at the manifest's
input shapes, precision) -> ``PostprocessConfig`` (the checked timing cache below) ->
``EngineFromNetwork`` -> ``SaveEngine``. Strongly typed, precision comes from the ONNX graph (an fp16
bundle gives fp16 engines, an int8 bundle's Q/DQ nodes give int8 layers); without the flag, fp16 bundles
set the FP16 builder flag and int8 bundles (explicit quantization, tensorrt flavour) the INT8 flag. TF32 stays off,
so fp32 parts are computed in fp32.

Timing cache: one file per bundle, shared by the graphs of a build. It is attached with
``ignore_mismatch=False`` and the answer is checked: a cache recorded on another GPU or TensorRT
version (or a damaged file) is not reused (TensorRT warns such a cache can give wrong or slow
engines); a fresh cache replaces it, written atomically once every graph is built. Polygraphy's own
``load_timing_cache`` does not look at that answer and its ``save_timing_cache`` merges the old file
back with ``ignore_mismatch=True``, so neither is used for this.

Plugins: Polygraphy's network loader registers libnvinfer_plugin's creators (TensorRT's DeformConv
for standard bundles) with its process-wide logger. Our DCN plugin library is loaded by
``plugin_lib.load_plugin_library``, which handles both of its builds; Polygraphy's ``LoadPlugins``
only dlopens, which registers nothing for the default (``getCreators``) build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from esan.runtime.core.errors import UserError
from esan.runtime.core.fsutil import atomic_path

if TYPE_CHECKING:
    from esan.runtime.backends.cuda_probe import GpuStatus

INSTALL_HINT = "install it with `pip install 'esan-rt[trt]'` (needs an NVIDIA GPU and driver)"


def import_tensorrt() -> ModuleType | None:
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt


def import_polygraphy() -> tuple[Any, Any, type[Exception]]:
    """``(polygraphy.backend.trt, G_LOGGER, PolygraphyException)``; one UserError line when it is missing."""
    try:
        from polygraphy.backend import trt as ptrt
        from polygraphy.exception import PolygraphyException
        from polygraphy.logger import G_LOGGER
    except ImportError as exc:
        raise UserError(f"building TensorRT engines needs Polygraphy ({exc}): pip install 'esan-rt[trt]'") from None
    return ptrt, G_LOGGER, PolygraphyException


def gpu_info() -> GpuStatus:
    """Device 0 (name, compute capability) or why there is none usable, with the CUDA error's name."""
    from esan.runtime.backends.cuda_probe import probe_gpu

    return probe_gpu()


class TimingCache:
    """The build's timing cache: read once, checked against this GPU and TensorRT, saved atomically."""

    def __init__(self, path: Path | None, log: Callable[[str], None] = print) -> None:
        self.path, self.log = path, log
        self.data = path.read_bytes() if path is not None and path.is_file() else b""
        self.from_file = bool(self.data)  # True until TensorRT has accepted the file's cache once
        self.rejected = False
        self._config: Any = None

    def attach(self, builder: Any, network: Any, config: Any) -> None:
        """``PostprocessConfig`` hook: attach the cache, or a fresh one when TensorRT refuses it."""
        self._config = config
        if self.data:
            try:
                cache = config.create_timing_cache(self.data)
            except Exception:  # a damaged file: TensorRT may raise instead of returning None
                cache = None
            if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
                self.from_file = False
                return
            if self.from_file:
                self.rejected, self.from_file = True, False
                self.log(f"timing cache {self.path} was recorded on another GPU or TensorRT version (or is damaged): "
                         "not reused (it could give wrong or slow engines); a fresh one replaces it")  # fmt: skip
            self.data = b""
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)

    def update(self) -> None:
        """Keep what the last build measured: the next graph starts from it."""
        cache = self._config.get_timing_cache() if self._config is not None else None
        if cache is not None:
            self.data = bytes(cache.serialize())
        self._config = None

    def save(self) -> None:
        if self.path is None or not self.data:
            return
        with atomic_path(self.path) as tmp:
            tmp.write_bytes(self.data)


class EngineBuilder:
    """Builds the graphs of one bundle with the same settings and one timing cache."""

    def __init__(
        self, trt: ModuleType, precision: str, workspace_mb: int, timing_cache: Path | None,
        plugin_lib: Path | None = None, log: Callable[[str], None] = print,
    ) -> None:  # fmt: skip
        self.trt, self.precision, self.workspace_mb = trt, precision, workspace_mb
        self.ptrt, self.g_logger, self.polygraphy_error = import_polygraphy()
        self.timing_cache = TimingCache(timing_cache, log)
        if plugin_lib is not None:
            from esan.runtime.backends.plugin_lib import load_plugin_library

            load_plugin_library(plugin_lib)  # idempotent: a second build in one process is fine

    @property
    def _major(self) -> int:
        return int(str(self.trt.__version__).split(".")[0])

    @property
    def strongly_typed_flag(self) -> bool:
        """Whether to ask for a strongly typed network (10.x; on 11.x the flag is deprecated and ignored)."""
        return self._major < 11 and hasattr(self.trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")

    @property
    def strongly_typed(self) -> bool:
        """True when the flag exists (10.x) or TensorRT is 11+ (always strongly typed)."""
        return self._major >= 11 or self.strongly_typed_flag

    def _profile(self, inputs: Sequence[dict], max_streams: int) -> Any:
        from esan.export.trt_profiles import profile_shapes

        profile = self.ptrt.Profile()
        for name, (lo, opt, hi) in profile_shapes(inputs, max_streams).items():
            profile.add(name, min=lo, opt=opt, max=hi)
        return profile

    def build(self, onnx_path: Path, inputs: Sequence[dict], plan_path: Path, max_streams: int = 1) -> None:
        """Parse ``onnx_path``, build its engine and save it to ``plan_path``.

        ``inputs``: the manifest's input specs (name, shape); with a dynamic batch (``"batch"`` in dimension 0)
        the optimisation profile spans 1 .. ``max_streams`` streams (``esan.export.trt_profiles``).
        """
        ptrt, trt, g_logger = self.ptrt, self.trt, self.g_logger
        with g_logger.verbosity(g_logger.WARNING):  # Polygraphy's INFO lines would bury our progress lines
            network = ptrt.NetworkFromOnnxPath(str(onnx_path), strongly_typed=self.strongly_typed_flag)
            config = ptrt.CreateConfig(
                tf32=False,
                fp16=self.precision == "fp16" and not self.strongly_typed,
                int8=self.precision == "int8" and not self.strongly_typed,  # explicit Q/DQ: no calibrator
                profiles=[self._profile(inputs, max_streams)],
                memory_pool_limits={trt.MemoryPoolType.WORKSPACE: self.workspace_mb << 20},
            )
            config = ptrt.PostprocessConfig(config, self.timing_cache.attach)
            try:
                ptrt.SaveEngine(ptrt.EngineFromNetwork(network, config), str(plan_path))()
            except self.polygraphy_error as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UserError(f"TensorRT could not build an engine for {onnx_path.name}: {first} "
                                "(see TensorRT's messages above)") from exc  # fmt: skip
        self.timing_cache.update()

    def save_timing_cache(self) -> None:
        self.timing_cache.save()
