"""``--metrics-port``: Prometheus metrics and health of in-process streams, scraped with a real HTTP client."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.fakes import FakeScheduler, counter_reader
from support.viewtools import wait_until

from esan.runtime.core.errors import UserError
from esan.runtime.io.metrics import RuntimeMetrics
from esan.runtime.io.outputs import OutputOptions, Outputs
from esan.runtime.io.pipeline import Pipeline
from esan.runtime.io.sources import FrameSource


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(base: str) -> dict[tuple[str, tuple], float]:
    status, text = _get(base + "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_scrape_health_and_readiness_while_two_streams_run() -> None:
    short = FrameSource(counter_reader(30), name="short", kind="video", live=False, fps=100, pace_fps=100)
    long = FrameSource(counter_reader(10**6), name="long", kind="video", live=True, fps=100, pace_fps=100)
    metrics = RuntimeMetrics()
    base = metrics.serve(0)
    assert base.startswith("http://127.0.0.1:")
    sched = FakeScheduler(delay=2)
    outs = [Outputs(OutputOptions(), {"backend": "fake", "live": s.live}, fps=100, stream_id=i)
            for i, s in enumerate((short, long))]
    pipe = Pipeline(sched, list(zip((short, long), outs, strict=True)), metrics=metrics)
    assert _get(base + "/readyz")[0] == 503  # nothing running yet
    box: list = []
    runner = threading.Thread(target=lambda: box.append(pipe.run()))
    runner.start()
    try:
        wait_until(lambda: _get(base + "/readyz")[0] == 200, 60, "both streams up")
        assert _get(base + "/healthz") == (200, "ok\n")
        wait_until(lambda: _samples(base).get(("esan_maps_total", (("stream", "0"),))) == 30, 60, "stream 0 to end")
        status, body = _get(base + "/readyz")  # stream 0 ended: not every stream is up any more
        assert status == 503 and "stream 0 (short)" in body and "stream 1" not in body
        m = _samples(base)
        assert m[("esan_frames_total", (("stream", "0"),))] == 30
        assert m[("esan_stream_up", (("source", "short"), ("stream", "0")))] == 0
        assert m[("esan_stream_up", (("source", "long"), ("stream", "1")))] == 1
        maps1 = m[("esan_maps_total", (("stream", "1"),))]
        observed = m[("esan_capture_to_map_seconds_count", (("stream", "1"),))]
        assert maps1 > 0 and 0 <= maps1 - observed <= 1  # one latency per map (a round may be in between)
        assert m[("esan_reconnects_total", (("stream", "1"),))] == 0
        rounds = m[("esan_rounds_total", ())]
        assert rounds >= 30 and abs(m[("esan_round_streams_count", ())] - rounds) <= 1
        assert m[("esan_stage_milliseconds_total", (("stage", "encode"),))] > 0
        assert _get(base + "/nope")[0] == 404
    finally:
        pipe.stop("test done")
        runner.join(60)
        metrics.close()
    assert box and box[0].streams[1].stop_reason == "test done"


def test_a_port_in_use_is_one_clear_error() -> None:
    first = RuntimeMetrics()
    base = first.serve(0)
    try:
        port = int(base.rsplit(":", 1)[1])
        with pytest.raises(UserError, match=f"--metrics-port {port}: cannot listen"):
            RuntimeMetrics().serve(port)
    finally:
        first.close()
