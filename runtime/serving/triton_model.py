"""The Triton Python-backend model ``esan`` (imported by the repository's thin ``model.py``).

One model instance holds one many-streams scheduler on the runtime's ``ort`` / ``trt`` engines (opened through
``esan.runtime.session`` from the model's parameters); the sequence batcher (oldest strategy) hands it
requests of different streams together, and ``StreamRouter`` runs them as one round. Tensors cross the
stub with DLPack: the Python-backend stub's numpy path (``as_numpy`` / ``Tensor(name, ndarray)``)
depends on the numpy ABI it was built with and garbles data under numpy 2. Metrics on Triton's endpoint:
``esan_active_streams``, ``esan_frames_total``, ``esan_maps_total``, ``esan_stage_milliseconds_total{stage}``,
``esan_rounds_total``, ``esan_requests_total``, ``esan_refused_streams_total``,
``esan_rejected_frames_total``, ``esan_idle_freed_streams_total``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from esan.runtime.serving import protocol as P
from esan.runtime.serving.router import Request, RouterStats, StreamRouter

_COUNTERS = {
    "frames": ("esan_frames_total", "Frames received"),
    "maps": ("esan_maps_total", "Saliency maps sent"),
    "rounds": ("esan_rounds_total", "Scheduling rounds (one batched run of every stage)"),
    "requests": ("esan_requests_total", "Requests served in rounds (requests / rounds = mean streams per round)"),
    "refused": ("esan_refused_streams_total", "Streams refused past max_streams"),
    "rejected": ("esan_rejected_frames_total", "Malformed or oversized frames rejected"),
    "idle_freed": ("esan_idle_freed_streams_total", "Streams dropped after the idle timeout"),
}


def _params(config: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


class _Metrics:
    """Triton custom metrics, updated from the router's cumulative counters."""

    def __init__(self, pb: Any, labels: dict[str, str]) -> None:
        counter, gauge = pb.MetricFamily.COUNTER, pb.MetricFamily.GAUGE
        self._families = []  # keep the families alive as long as their metrics
        fam = pb.MetricFamily(name="esan_active_streams", description="Streams open on this instance", kind=gauge)
        self._families.append(fam)
        self.active = fam.Metric(labels=labels)
        self.counters = {}
        for key, (name, desc) in _COUNTERS.items():
            fam = pb.MetricFamily(name=name, description=desc, kind=counter)
            self._families.append(fam)
            self.counters[key] = fam.Metric(labels=labels)
        fam = pb.MetricFamily(name="esan_stage_milliseconds_total", kind=counter,
                              description="Milliseconds spent per stage (total = whole rounds)")
        self._families.append(fam)
        self.stages = {s: fam.Metric(labels={**labels, "stage": s}) for s in P.STAGES}
        self._seen = RouterStats()

    def update(self, stats: RouterStats, active: int) -> None:
        self.active.set(float(active))
        for key, metric in self.counters.items():
            delta = getattr(stats, key) - getattr(self._seen, key)
            if delta:
                metric.increment(float(delta))
                setattr(self._seen, key, getattr(stats, key))
        for s, metric in self.stages.items():
            delta = stats.stage_ms[s] - self._seen.stage_ms[s]
            if delta > 0:
                metric.increment(delta)
                self._seen.stage_ms[s] = stats.stage_ms[s]


def _quiet_dlpack_deleter(hook: Any) -> Any:
    """An unraisable hook that drops numpy's complaint about capsules the stub has consumed.

    The stub renames a consumed DLPack capsule to a name numpy's capsule deleter does not know, so numpy
    reports ``PyCapsule_GetPointer called with incorrect name`` (and rightly leaves the tensor to the stub,
    which frees it). Everything else goes to the previous hook.
    """

    def quiet(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, ValueError) and "PyCapsule_GetPointer called with incorrect name" in str(exc):
            return
        hook(unraisable)

    return quiet


class TritonPythonModel:
    """Triton's entry points: ``initialize``, ``execute``, ``finalize``."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb

        from esan.runtime.session import prepare

        self.pb = pb
        sys.unraisablehook = _quiet_dlpack_deleter(sys.unraisablehook)
        config = json.loads(args["model_config"])
        par = _params(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        device = par.get("device", "cpu")
        if args.get("model_instance_kind") == "GPU":
            # each instance is its own stub process: show it only its GPU, before anything touches CUDA
            os.environ["CUDA_VISIBLE_DEVICES"] = str(args.get("model_instance_device_id", 0))
            device = "cuda" if device.startswith("cuda") else device
        session = prepare(bundle=version_dir / par["bundle"], backend=par["backend"], device=device,
                          lookahead=int(par["lookahead"]), backward_chunk=int(par["backward_chunk"]),
                          precision=par.get("precision") or None, threads=int(par.get("threads", "0")) or None,
                          max_streams=int(par["max_streams"]))  # fmt: skip
        self.scheduler = scheduler = session.scheduler()
        idle_s = int(config["sequence_batching"]["max_sequence_idle_microseconds"]) / 1e6
        self.router = StreamRouter(scheduler, max_frame_pixels=int(par["max_frame_pixels"]), idle_timeout_s=idle_s)
        self.metrics = _Metrics(pb, {"model": config["name"], "instance": args.get("model_instance_name", "")})
        self._metrics_lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, args=(min(1.0, idle_s / 4),), daemon=True)
        self._reaper.start()

    def _reap_loop(self, period: float) -> None:
        while not self._stop.wait(period):
            if self.router.reap():
                self._update_metrics()

    def _update_metrics(self) -> None:
        with self._metrics_lock:
            self.metrics.update(self.router.stats, self.router.active)

    def _request(self, req: Any) -> Request:
        pb = self.pb

        def control(name: str) -> int:
            return int(np.from_dlpack(pb.get_input_tensor_by_name(req, name)).reshape(-1)[0])

        frame = np.from_dlpack(pb.get_input_tensor_by_name(req, P.FRAME))
        frame = frame[0] if frame.ndim == 4 and frame.shape[0] == 1 else frame
        return Request(control("CORRID"), bool(control("START")), bool(control("END")), frame)

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        parsed = [self._request(r) for r in requests]
        outcomes = self.router.handle(parsed)
        responses = []
        for out in outcomes:
            if out.error:
                responses.append(pb.InferenceResponse(error=pb.TritonError(out.error)))
                continue
            responses.append(pb.InferenceResponse(output_tensors=self._tensors(out.results, out.stage_ms)))
        self._update_metrics()
        return responses

    def _tensors(self, results: list[Any], stage_ms: tuple[float, ...]) -> list[Any]:
        h2, w2 = self.scheduler.output_size
        k = len(results)
        maps = np.stack([r.saliency for r in results]).astype(np.float32) if k else np.zeros((0, h2, w2), np.float32)
        indices = np.array([r.index for r in results], np.int64)
        boxes = np.array([[r.box.top, r.box.left, r.box.height, r.box.width] for r in results], np.int32).reshape(k, 4)
        arrays = {P.MAPS: maps[None], P.INDICES: indices[None], P.BOXES: boxes[None],
                  P.STAGE_MS: np.asarray(stage_ms, np.float32)[None]}
        return [self._tensor(name, np.ascontiguousarray(a)) for name, a in arrays.items()]

    def _tensor(self, name: str, array: np.ndarray) -> Any:
        # DLPack carries the data whatever numpy the stub was built against; an empty array has no data to
        # garble (and DLPack refuses it), so it goes the plain way
        return self.pb.Tensor.from_dlpack(name, array) if array.size else self.pb.Tensor(name, array)

    def finalize(self) -> None:
        self._stop.set()
        self._reaper.join(timeout=2.0)
        self.scheduler.shutdown()
