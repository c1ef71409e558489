"""``--metrics-port``: Prometheus metrics of the in-process streams, plus ``/healthz`` and ``/readyz``.

Built on ``prometheus_client`` (its own registry, so nothing global leaks between runs). Counters and
gauges are read from the pipeline when scraped (nothing on the hot path); the capture -> map latency
and the batch sizes are histograms observed once per scheduling round. Names match the serving
metrics (``esan.runtime.serving.triton_model``) where they mean the same: ``esan_frames_total``,
``esan_maps_total``, ``esan_rounds_total``, ``esan_stage_milliseconds_total``, ``esan_active_streams``;
per stream they carry a ``stream`` label.

``/healthz``: 200 while the process serves (liveness). ``/readyz``: 200 when every stream is up
(capturing, not in an outage), else 503 with the streams that are not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from esan.runtime.core.errors import UserError

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class _Collector(Collector):
    """Reads the pipeline's per-stream counters at scrape time."""

    def __init__(self, metrics: RuntimeMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Any]:
        lanes = self.m.lanes()
        fams = {
            "frames": CounterMetricFamily("esan_frames", "Frames received (pushed into the model)", labels=["stream"]),
            "maps": CounterMetricFamily("esan_maps", "Saliency maps produced", labels=["stream"]),
            "drops": CounterMetricFamily("esan_dropped_frames", "Frames a live source dropped while behind",
                                         labels=["stream"]),
            "lost": CounterMetricFamily("esan_lost_frames", "Frames lost in outages", labels=["stream"]),
            "reconnects": CounterMetricFamily("esan_reconnects", "Reconnects after an outage", labels=["stream"]),
            "up": GaugeMetricFamily("esan_stream_up", "1 while the stream captures frames, 0 in an outage or ended",
                                    labels=["stream", "source"]),
        }
        for lane in lanes:
            sid = str(lane.sid)
            fams["frames"].add_metric([sid], lane.summary.frames_pushed)
            fams["maps"].add_metric([sid], lane.summary.frames)
            fams["drops"].add_metric([sid], lane.source.dropped)
            fams["lost"].add_metric([sid], sum(g["frames_lost"] for g in lane.gaps))
            fams["reconnects"].add_metric([sid], lane.source.reconnects())
            fams["up"].add_metric([sid, lane.source.name], 1.0 if stream_up(lane) else 0.0)
        yield from fams.values()
        active = GaugeMetricFamily("esan_active_streams", "Streams open in this process")
        active.add_metric([], sum(lane.state != "closed" for lane in lanes))
        yield active
        rounds = CounterMetricFamily("esan_rounds", "Scheduling rounds (one batched run of every stage)")
        rounds.add_metric([], self.m.rounds)
        yield rounds
        stages = CounterMetricFamily("esan_stage_milliseconds", "Milliseconds spent per stage (total = whole rounds)",
                                     labels=["stage"])
        for stage, ms in sorted(self.m.stage_ms.items()):
            stages.add_metric([stage], ms)
        yield stages


def stream_up(lane: Any) -> bool:
    return lane.state == "open" and not lane.source.down() and not lane.source.finished


class RuntimeMetrics:
    """The metrics of one process's pipeline(s); ``serve()`` starts the HTTP endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._pipelines: list[Any] = []
        self._lock = threading.Lock()
        self.rounds = 0
        self.stage_ms: dict[str, float] = {}
        self.latency = Histogram("esan_capture_to_map_seconds", "Capture -> map latency of each map", ["stream"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch = Histogram("esan_round_streams", "Streams with a new frame per scheduling round (batch size)",
                               buckets=BATCH_BUCKETS, registry=self.registry)
        self.registry.register(_Collector(self))
        self.server: WSGIServer | None = None
        self.url = ""

    # -- pipeline hooks ----------------------------------------------------------------------------
    def attach(self, pipeline: Any) -> None:
        with self._lock:
            self._pipelines.append(pipeline)

    def detach(self, pipeline: Any) -> None:
        with self._lock:
            if pipeline in self._pipelines:
                self._pipelines.remove(pipeline)

    def lanes(self) -> list[Any]:
        with self._lock:
            return [lane for p in self._pipelines for lane in p.lanes]

    def round(self, batch: int, results: Iterable[Any], ready: float, timings: dict[str, float] | None) -> None:
        """One scheduling round (compute thread): ``batch`` streams pushed a frame; its maps were ready at ``ready``."""
        self.rounds += 1
        self.batch.observe(batch)
        for stage, ms in (timings or {}).items():
            self.stage_ms[stage] = self.stage_ms.get(stage, 0.0) + float(ms)
        for sid, captured in results:
            self.latency.labels(str(sid)).observe(max(0.0, ready - captured))

    # -- HTTP ----------------------------------------------------------------------------------------
    def app(self) -> Callable[..., Any]:
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            path = environ.get("PATH_INFO", "/")
            if path == "/healthz":
                return _text(start_response, "200 OK", "ok\n")
            if path == "/readyz":
                down = [f"stream {lane.sid} ({lane.source.name})" for lane in self.lanes() if not stream_up(lane)]
                if not self.lanes():
                    down = ["no stream running"]
                return _text(start_response, "503 Service Unavailable" if down else "200 OK",
                             ("not ready: " + ", ".join(down) if down else "ready") + "\n")
            if path == "/metrics":
                return metrics_app(environ, start_response)
            return _text(start_response, "404 Not Found", "try /metrics, /healthz or /readyz\n")

        return app

    def serve(self, port: int, address: str = "127.0.0.1") -> str:
        """Start the endpoint in a daemon thread; returns its base URL (``port`` 0: any free port)."""
        try:
            self.server = make_server(address, port, self.app(), server_class=_Server, handler_class=_Quiet)
        except OSError as exc:
            raise UserError(f"--metrics-port {port}: cannot listen on {address}:{port} ({exc.strerror}); "
                            "choose another port (0: any free one)") from None
        threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True).start()
        self.url = f"http://{address}:{self.server.server_port}"
        return self.url

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _text(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass
