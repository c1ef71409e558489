"""ONNX Runtime backend: one ``InferenceSession`` per bundle graph (docs/contracts.md).

Arrays are numpy. Inputs are fed by the manifest's names and cast to the manifest's dtypes (fp16
bundles take fp16 features / hidden states and fp32 cell states; the map is always float32).
Providers: ``device="cpu"`` -> CPUExecutionProvider. ``device="cuda"`` (needs ``onnxruntime-gpu``)
-> CUDAExecutionProvider (+ CPU fallback); ``device="tensorrt"`` -> TensorrtExecutionProvider first.
Bundles exported with ``--dcn plugin`` hold a custom node only TensorRT can run: they always go to
the TensorRT EP, with our plugin library handed over via ``trt_extra_plugin_lib_paths``.
The unrolled ``bwd_window`` graph serves exactly ``L+1`` frames for the bundle's ``L``; other
lengths return ``None`` and the scheduler steps ``cell_bwd`` instead.

Batch: on a bundle with a dynamic batch axis (manifest ``"batch": "dynamic"``) every stage is one
``session.run`` for all streams: their arrays are concatenated along dimension 0 (the aligner's windows and
``bwd_window``'s inputs stream-major, docs/contracts.md), and the outputs are split back into per-stream
numpy views. Format 1 bundles (static batch 1) run the same code one stream per call (``batched`` is False).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from esan.runtime.backends.ort_sessions import SessionSet
from esan.runtime.core.backend_api import (
    REFERENCE_INPUTS,
    WINDOW_INPUTS,
    Array,
    Backend,
    BackendConfig,
    Entry,
    State,
    check_direction,
)
from esan.runtime.core.bundle import Bundle, check_compatible, load_bundle, rebuild_command
from esan.runtime.core.cpus import usable_cores
from esan.runtime.core.errors import UserError

try:
    import onnxruntime as ort
except ImportError as exc:  # pragma: no cover - onnxruntime is a base dependency
    raise UserError("ONNX Runtime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from exc

DEVICES = ("cpu", "cuda", "tensorrt")


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """Graph optimisation ALL, sequential execution, ``threads`` intra-op threads (None: ``usable_cores()``).

    Idle intra-op threads sleep instead of spinning: the pipeline's capture and writer threads need those
    cores (a spinning pool cost 3x throughput with outputs on a busy 2-core machine).
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    so.intra_op_num_threads = int(threads or usable_cores())
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def providers_for(device: str, bundle: Bundle, plugin_lib: str | os.PathLike | None) -> list[Any]:
    """Execution providers (with options) for ``device`` and this bundle."""
    if device not in DEVICES:
        raise UserError(f"the ort backend runs on {', '.join(DEVICES)}; got device {device!r}")
    available = ort.get_available_providers()
    plugin = bundle.dcn == "plugin"
    if plugin and "TensorrtExecutionProvider" not in available:
        check_compatible(bundle, "ort", None)  # raises: ONNX Runtime without TensorRT cannot run the plugin
    if device == "cpu" and not plugin:
        return ["CPUExecutionProvider"]
    if plugin or device == "tensorrt":
        if "TensorrtExecutionProvider" not in available:
            raise UserError(
                "device 'tensorrt' needs ONNX Runtime's TensorRT execution provider, but this onnxruntime "
                f"has only {', '.join(available)}: pip uninstall -y onnxruntime && pip install onnxruntime-gpu tensorrt"
            )
        from esan.runtime.core.bundle import MANIFEST, sha256_file
        from esan.runtime.core.cache_paths import cache_root

        # keyed by what the bundle holds (its manifest names every graph's sha256), not by where it lies: a
        # re-export to the same folder never reuses stale engines; kept under the cache root like the rest
        key = sha256_file(bundle.root / MANIFEST)[:32]
        engine_cache = cache_root() / "ort-trt" / key
        opts: dict[str, Any] = {  # engines persist across sessions instead of being rebuilt each start
            "device_id": 0, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(engine_cache),
            "trt_timing_cache_enable": True, "trt_timing_cache_path": str(engine_cache),
        }
        if plugin:
            opts["trt_extra_plugin_lib_paths"] = str(_plugin_path(plugin_lib))
        return [("TensorrtExecutionProvider", opts), "CUDAExecutionProvider", "CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise UserError(
            f"device 'cuda' needs onnxruntime-gpu (this onnxruntime has {', '.join(available)}): "
            "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
        )
    return [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]


def _plugin_path(plugin_lib: str | os.PathLike | None) -> Path:
    from esan.runtime.backends import plugin_lib as plib
    from esan.runtime.core.plugin_spec import PLUGIN_LIBRARY_BASENAME

    if plugin_lib is not None:
        path = Path(plugin_lib)
        if not path.is_file():
            raise UserError(f"plugin library {path} does not exist; {plib.BUILD_HINT}")
        return path
    try:
        return plib.find_library(PLUGIN_LIBRARY_BASENAME)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from exc


class OrtBackend(Backend):
    """Runs an exported ONNX bundle with ONNX Runtime."""

    name = "ort"

    def __init__(
        self,
        bundle_dir: str | os.PathLike | Bundle,
        *,
        device: str = "cpu",
        threads: int | None = None,
        plugin_lib: str | os.PathLike | None = None,
        providers: list[Any] | None = None,
        lookahead: int | None = None,
    ) -> None:
        bundle = bundle_dir if isinstance(bundle_dir, Bundle) else load_bundle(bundle_dir)
        if bundle.dcn != "plugin":
            check_compatible(bundle, "ort", lookahead)
        self.bundle = bundle
        providers = providers or providers_for(device, bundle, plugin_lib)
        names = [p if isinstance(p, str) else p[0] for p in providers]
        self.session_set = SessionSet(bundle, lambda: session_options(threads),
                                      lambda g, so: self._open_session(bundle, g, so, providers),
                                      specialise=names == ["CPUExecutionProvider"])  # fmt: skip
        # per graph: input name -> numpy dtype, and output names in manifest order
        self._in_dtypes = {g: {t.name: np.dtype(t.dtype) for t in s.inputs} for g, s in bundle.graphs.items()}
        self._out_names = {g: [t.name for t in s.outputs] for g, s in bundle.graphs.items()}
        cell = {t.name: t for t in bundle.graphs["cell_fwd"].inputs}
        h_spec, c_spec = cell["h"], cell["c"]
        self._zero = (np.zeros(h_spec.at_batch(1), h_spec.dtype), np.zeros(c_spec.at_batch(1), c_spec.dtype))
        self.batched = bundle.batch == "dynamic"  # else: one stream per call (format 1 bundle)
        super().__init__(
            BackendConfig.from_bundle(bundle, providers=self.providers), device=device, precision=bundle.precision
        )

    @staticmethod
    def _open_session(bundle: Bundle, name: str, so: ort.SessionOptions, providers: list[Any]) -> Any:
        try:
            return ort.InferenceSession(str(bundle.graphs[name].file), so, providers=providers)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"ONNX Runtime cannot load graph {name} of bundle {bundle.root}: {first}; "
                f"re-export it with {rebuild_command(bundle, bundle.lookahead)}"
            ) from exc

    @property
    def sessions(self) -> dict[str, Any]:
        """The single-stream session of every graph (``esan.runtime.backends.ort_sessions``)."""
        return self.session_set.single

    @property
    def providers(self) -> list[str]:
        return self.sessions["encoder"].get_providers() if self.sessions else []

    def _run(self, graph: str, feeds: dict[str, Array], streams: int = 1) -> list[np.ndarray]:
        dtypes = self._in_dtypes[graph]
        cast = {k: v if v.dtype == dtypes[k] else v.astype(dtypes[k]) for k, v in feeds.items()}
        return self.session_set.for_batch(graph, streams).run(self._out_names[graph], cast)

    # -- stages: one session.run per group of streams (all of them on a dynamic-batch bundle) ----------
    def _groups(self, n: int) -> Iterator[range]:
        step = n if self.batched else 1  # a format 1 bundle's graphs take one stream
        for lo in range(0, n, max(step, 1)):
            yield range(lo, min(lo + step, n))

    @staticmethod
    def _split(arrays: list[np.ndarray], n: int) -> list[list[np.ndarray]]:
        """Per stream, its row of every output (numpy views)."""
        return [[a[i:i + 1] for a in arrays] for i in range(n)]

    def encode_batch(self, frames: np.ndarray, valid: np.ndarray) -> list[Entry]:
        entries: list[Entry] = []
        for g in self._groups(len(frames)):
            outs = self._run("encoder", {"frame": frames[g.start:g.stop], "valid": valid[g.start:g.stop]}, len(g))
            entries += [dict(zip(self._out_names["encoder"], row, strict=True)) for row in self._split(outs, len(g))]
        return entries

    def align_batch(self, windows: Sequence[Sequence[Entry]], refs: Sequence[Entry]) -> list[tuple[Array, Array]]:
        out: list[tuple[Array, Array]] = []
        for g in self._groups(len(windows)):
            feeds = {name: np.concatenate([e[key] for i in g for e in windows[i]])
                     for name, key in WINDOW_INPUTS.items()}  # fmt: skip
            feeds.update({name: np.concatenate([refs[i][name] for i in g]) for name in REFERENCE_INPUTS})
            xf, xb = self._run("aligner", feeds, len(g))
            out += [(a, b) for a, b in self._split([xf, xb], len(g))]
        return out

    def step_batch(self, direction: str, xs: Sequence[Array], hs: Sequence[Array], cs: Sequence[Array]) -> list[State]:
        check_direction(direction)
        out: list[State] = []
        for g in self._groups(len(xs)):
            feeds = {name: np.concatenate([arrays[i] for i in g]) for name, arrays in (("x", xs), ("h", hs), ("c", cs))}
            h, c = self._run(f"cell_{direction}", feeds, len(g))
            out += [(a, b) for a, b in self._split([h, c], len(g))]
        return out

    def zero_state(self) -> State:
        return self._zero[0].copy(), self._zero[1].copy()

    def backward_window_batch(self, xss: Sequence[Sequence[Array]]) -> list[Array] | None:
        if any(len(xs) != self.bundle.lookahead + 1 for xs in xss):  # every bundle has bwd_window for its L
            return None
        out: list[Array] = []
        for g in self._groups(len(xss)):
            (hb,) = self._run("bwd_window", {"xs": np.concatenate([x for i in g for x in xss[i]])}, len(g))
            out += [row[0] for row in self._split([hb], len(g))]
        return out

    def decode_batch(self, hfs: Sequence[Array], hbs: Sequence[Array]) -> list[np.ndarray]:
        maps: list[np.ndarray] = []
        for g in self._groups(len(hfs)):
            (out,) = self._run("decoder", {"hf": np.concatenate([hfs[i] for i in g]),
                                           "hb": np.concatenate([hbs[i] for i in g])}, len(g))  # fmt: skip
            maps += [np.ascontiguousarray(m[0], dtype=np.float32) for m in out]
        return maps

    def close(self) -> None:
        self.session_set.close()
        super().close()
