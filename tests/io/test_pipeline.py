"""The multi-stream pipeline's plumbing, with a fake scheduler (no model): writers off the compute thread,
backpressure, per-stream isolation of failures, drops counted per stream, batch gathering, Ctrl-C."""

from __future__ import annotations

import _thread
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support.fakes import FakeScheduler, counter_reader

from esan.runtime.core.errors import UserError
from esan.runtime.io.latency_log import LatencyLog
from esan.runtime.io.outputs import OutputOptions, Outputs, check_outputs, stream_options
from esan.runtime.io.pipeline import Pipeline
from esan.runtime.io.sources import FrameSource, SourceEnded

META = {"backend": "fake", "lookahead": 2, "delay_frames": 2, "source_fps": 25.0}


def file_source(n: int, hw: tuple[int, int] = (40, 60), **kw) -> FrameSource:
    return FrameSource(counter_reader(n, hw, **kw), name=f"file{n}", kind="video", live=False, fps=25, queue_size=2)


def outputs(tmp: Path, i: int, cls: type[Outputs] = Outputs, **kw) -> Outputs:
    opts = OutputOptions(maps=tmp / f"maps{i}", maps_format="npy", **kw)
    return cls(opts, {**META, "source": f"s{i}"}, fps=25.0, stream_id=i)


def written(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.npy"))


class GatedOutputs(Outputs):
    """Stream 0's writer: its first write blocks until ``release`` is set (or 10 s pass), records its thread."""

    release = threading.Event()
    blocked_s = 0.0
    threads: set[str] = set()

    def write(self, result, image, log) -> None:
        GatedOutputs.threads.add(threading.current_thread().name)
        if result.index == 0:
            t0 = time.perf_counter()
            GatedOutputs.release.wait(10.0)
            GatedOutputs.blocked_s = time.perf_counter() - t0
        super().write(result, image, log)


class DoneOutputs(Outputs):
    """Stream 1's writer: sets ``done`` after its last map (``last`` index) is written."""

    last = -1
    done = threading.Event()

    def write(self, result, image, log) -> None:
        super().write(result, image, log)
        if result.index == DoneOutputs.last:
            DoneOutputs.done.set()


def test_slow_writer_blocks_neither_compute_nor_other_streams(tmp_path: Path) -> None:
    """Stream 0's writer blocks until stream 1 is completely written: only possible off the compute thread."""
    GatedOutputs.release.clear()
    DoneOutputs.done.clear()
    DoneOutputs.last = 29
    sched = FakeScheduler(delay=2)
    lanes = [(file_source(25), outputs(tmp_path, 0, GatedOutputs)),
             (file_source(30), outputs(tmp_path, 1, DoneOutputs))]

    def release_after_stream_1() -> None:
        finished = DoneOutputs.done.wait(10.0)
        time.sleep(0.5)  # hold stream 0's writer a while longer: its time must not count as processing
        GatedOutputs.release.set()
        release_after_stream_1.finished = finished

    helper = threading.Thread(target=release_after_stream_1)
    helper.start()
    run = Pipeline(sched, lanes, output_queue=3).run()
    helper.join()
    assert release_after_stream_1.finished, "stream 1 could not finish while stream 0's writer was blocked"
    assert GatedOutputs.threads == {"output:0"}  # never the compute or the main thread
    s0, s1 = run.streams
    assert written(tmp_path / "maps0") == [f"{i:06d}" for i in range(25)]  # backpressure: nothing lost
    assert written(tmp_path / "maps1") == [f"{i:06d}" for i in range(30)]
    assert s0.frames == 25 and s1.frames == 30 and s0.dropped_frames == 0
    assert s0.output_ms["max"] >= GatedOutputs.blocked_s * 1000 >= 500  # the wait shows as output time ...
    assert s0.processing_ms["max"] < GatedOutputs.blocked_s * 1000  # ... not as processing latency
    assert s0.memory["output_queue_peak"] <= 3 + sched.delay_frames + 1  # bounded: capacity + one round's maps


def test_live_source_behind_a_slow_writer_drops_its_own_frames(tmp_path: Path) -> None:
    class SlowOutputs(Outputs):
        def write(self, result, image, log) -> None:
            time.sleep(0.02)
            super().write(result, image, log)

    live = FrameSource(counter_reader(60), name="cam", kind="camera", live=True, fps=500, queue_size=2, pace_fps=500)
    lanes = [(live, outputs(tmp_path, 0, SlowOutputs)), (file_source(20), outputs(tmp_path, 1))]
    run = Pipeline(FakeScheduler(delay=1), lanes, output_queue=2).run()
    s0, s1 = run.streams
    assert s0.dropped_frames > 0 and s0.frames + s0.dropped_frames == 60  # dropped, counted, the rest written
    assert len(written(tmp_path / "maps0")) == s0.frames
    assert s1.dropped_frames == 0 and s1.frames == 20  # the file stream loses nothing


def test_failures_end_only_their_own_stream(tmp_path: Path) -> None:
    """A disconnect, a broken frame and a failing output each end one stream, flushed; the fourth goes on."""

    def bad_frame_reader():
        inner = counter_reader(12)

        def read():
            image = inner()
            return np.zeros((30, 40, 4), np.uint8) if image is not None and image[0, 0, 0] == 6 else image

        return read

    class FailingOutputs(Outputs):
        def write(self, result, image, log) -> None:
            if result.index == 4:
                raise OSError("disk full")
            super().write(result, image, log)

    disconnect = FrameSource(counter_reader(7, fail=SourceEnded("camera unplugged")), name="cam", kind="url",
                             live=True, fps=25, queue_size=64)
    broken = FrameSource(bad_frame_reader(), name="broken", kind="video", live=False, fps=25, queue_size=2)
    lanes = [(disconnect, outputs(tmp_path, 0, video=tmp_path / "v0.mp4")), (broken, outputs(tmp_path, 1)),
             (file_source(15), outputs(tmp_path, 2, FailingOutputs)), (file_source(40), outputs(tmp_path, 3))]
    run = Pipeline(FakeScheduler(delay=2), lanes, report=tmp_path / "r.json").run()
    s = run.streams
    assert s[0].stop_reason == "source disconnected" and "unplugged" in s[0].source_error
    assert written(tmp_path / "maps0") == [f"{i:06d}" for i in range(7)]  # flushed to the last frame
    assert (tmp_path / "v0.mp4").stat().st_size > 0
    assert s[1].stop_reason.startswith("frame 6 failed")
    assert written(tmp_path / "maps1") == [f"{i:06d}" for i in range(6)]
    assert s[2].stop_reason == "output failed" and any("disk full" in n for n in s[2].notes)
    assert written(tmp_path / "maps2") == [f"{i:06d}" for i in range(4)]
    assert s[3].stop_reason == "end of stream" and s[3].frames == 40 and len(written(tmp_path / "maps3")) == 40
    report = json.loads((tmp_path / "r.json").read_text())
    assert [st["stop_reason"] for st in report["streams"]][3] == "end of stream"
    assert report["aggregate"]["frames"] == 7 + 6 + s[2].frames + 40


def test_max_batch_wait_gathers_streams_into_one_round(tmp_path: Path) -> None:
    def slow_reader(n: int):
        inner = counter_reader(n)

        def read():
            time.sleep(0.03)
            return inner()

        return read

    def lanes(tag: str):
        fast = file_source(10)
        slow = FrameSource(slow_reader(10), name="slow", kind="video", live=False, fps=25, queue_size=2)
        return [(fast, outputs(tmp_path / tag, 0)), (slow, outputs(tmp_path / tag, 1))]

    eager, patient = FakeScheduler(delay=1), FakeScheduler(delay=1)
    Pipeline(eager, lanes("eager")).run()
    Pipeline(patient, lanes("patient"), max_batch_wait_ms=2000).run()
    pushed = [b for b in patient.batches if b]
    assert len(pushed) == 10 and all(b == [0, 1] for b in pushed)  # every frame round batched both streams
    assert [0] in eager.batches  # without waiting, the fast stream runs ahead on its own


def test_ctrl_c_in_the_main_thread_flushes_every_stream(tmp_path: Path) -> None:
    def endless(n: int = 10_000):
        inner = counter_reader(n)

        def read():
            time.sleep(0.002)
            return inner()

        return read

    sources = [FrameSource(endless(), name=f"s{i}", kind="video", live=False, fps=25, queue_size=2) for i in range(2)]
    lanes = [(src, outputs(tmp_path, i, video=tmp_path / f"v{i}.mp4")) for i, src in enumerate(sources)]
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    try:
        run = Pipeline(FakeScheduler(delay=3), lanes, report=tmp_path / "r.json").run()
    finally:
        timer.cancel()  # never interrupt pytest itself if the run ended early
        timer.join()
    assert run.interrupted and all(s.stop_reason == "interrupted (Ctrl-C)" for s in run.streams)
    for i, s in enumerate(run.streams):
        assert s.frames == s.frames_pushed > 0  # the frames waiting for their lookahead were flushed
        assert len(written(tmp_path / f"maps{i}")) == s.frames and (tmp_path / f"v{i}.mp4").stat().st_size > 0
    assert json.loads((tmp_path / "r.json").read_text())["aggregate"]["interrupted"]


def test_stream_paths(tmp_path: Path) -> None:
    opts = OutputOptions(video=tmp_path / "v_{stream}.mp4", maps=tmp_path / "maps", plot=tmp_path / "p{stream}.png",
                         report=tmp_path / "r.json")
    per = stream_options(opts, 3)
    assert [o.video.name for o in per] == ["v_0.mp4", "v_1.mp4", "v_2.mp4"]
    assert [o.maps for o in per] == [tmp_path / "maps" / str(i) for i in range(3)]
    assert [o.plot.name for o in per] == ["p0.png", "p1.png", "p2.png"] and all(o.report is None for o in per)
    assert stream_options(opts, 1)[0].maps == tmp_path / "maps"  # one stream: the folder itself
    for flag, bad in (("--save-video", {"video": tmp_path / "v.mp4"}), ("--plot", {"plot": tmp_path / "p.png"})):
        with pytest.raises(UserError, match=rf"{flag} .*must contain \{{stream\}}"):
            check_outputs(OutputOptions(**bad), streams=2)
    assert len(check_outputs(OutputOptions(**{"video": tmp_path / "v.mp4"}), streams=1)) == 1


def test_latency_log_keeps_the_last_maps_in_bounded_memory() -> None:
    log = LatencyLog(capacity=5)
    records = [log.add(i, captured_s=10.0 + i, ready_s=10.5 + i, timings_ms={"encode": float(i)},
                       pushed_s=10.25 + i) for i in range(12)]  # fmt: skip
    log.set_output(records[3], 99.0)  # overwritten long ago: ignored
    log.set_output(records[10], 7.0)
    assert len(log) == 12 and log.retained == 5 and records == list(range(12))
    assert log.index.tolist() == [7, 8, 9, 10, 11]
    assert np.allclose(log.e2e_ms, 500.0) and np.allclose(log.processing_ms, 250.0)
    assert log.stage("encode").tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert log.output_ms.tolist() == [7.0] and log.latest(end_to_end=False) == pytest.approx(250.0)
    assert log.fps() == pytest.approx(12 / 11.5) and set(log.stage_names()) == {"encode", "output"}
    before = log._stages.nbytes
    for i in range(12, 1000):
        log.add(i, 10.0 + i, 10.5 + i, {"encode": 1.0, "total": 2.0})
    assert log._stages.shape[0] == 5 and log._stages.nbytes <= before * 2  # one new column, no new rows


class FakeDisplay:
    """Stands in for the ``--show`` window: the quit key is 'pressed' once both streams have shown a frame."""

    def __init__(self) -> None:
        self.shown: dict[int, tuple[tuple[int, ...], str]] = {}
        self.pump_threads: set[str] = set()
        self.closed = False

    def publish(self, stream_id: int, bgr: np.ndarray, status: str, frame_rgb: np.ndarray | None = None) -> None:
        self.shown[stream_id] = (bgr.shape, status)

    def pump(self) -> bool:
        self.pump_threads.add(threading.current_thread().name)
        return len(self.shown) < 2

    def close(self) -> None:
        self.closed = True


def test_quit_key_in_the_window_ends_every_stream(tmp_path: Path) -> None:
    display = FakeDisplay()
    sources = [FrameSource(counter_reader(100_000, hw), name=f"s{i}", kind="video", live=False, fps=25, queue_size=2)
               for i, hw in enumerate([(40, 60), (30, 80)])]  # fmt: skip
    lanes = [(src, Outputs(OutputOptions(maps=tmp_path / f"maps{i}"), META, fps=25.0, stream_id=i, display=display))
             for i, src in enumerate(sources)]  # fmt: skip
    run = Pipeline(FakeScheduler(delay=2), lanes, display=display).run()
    assert display.pump_threads == {threading.main_thread().name} and display.closed
    assert display.shown[0][0] == (40, 60, 3) and display.shown[1][0] == (30, 80, 3)
    assert display.shown[1][1].startswith("#1 ")
    for i, s in enumerate(run.streams):
        assert s.stop_reason == "quit by the user" and 0 < s.frames == s.frames_pushed < 100_000
        assert len(written(tmp_path / f"maps{i}")) == s.frames
