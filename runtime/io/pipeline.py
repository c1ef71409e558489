"""The streaming pipeline: N sources -> one multi-stream scheduler -> N output writers, run concurrently.

Stages and threads:

* **capture** -- one thread per source (``FrameSource``) behind a bounded queue: live sources drop
  their own oldest frames when behind (counted per stream), files wait (nothing lost);
* **compute** -- one thread: each round it takes at most one new frame per stream (only from streams
  whose writer has room), then runs one ``MultiStreamScheduler`` round, batched over the streams that
  have work. ``max_batch_wait_ms`` (default 0: no added latency) lets a round wait that long for more
  streams to have a frame;
* **output** -- one writer thread per stream (``esan.runtime.io.writer``): overlay, video, maps;
* the **main thread** supervises: it owns the ``--show`` window and turns Ctrl-C into a clean stop.

Isolation: a source that ends or disconnects, a frame that cannot be pushed and a failing output
each end only their own stream (its maps flushed, its outputs finalised); the others go on. A failure
of a scheduler round itself (a backend error) cannot be attributed to one stream: it ends them all,
after every output is finalised, and is raised.

Every way out -- end of every stream, ``--max-frames``, quit key, Ctrl-C or SIGTERM (a second signal
skips the flush; ``esan.runtime.io.signals``) -- finalises every output: maps flushed, videos closed,
plots and the report written.
"""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

from esan.runtime.core.scheduler_api import Scheduler
from esan.runtime.io.gaps import StreamSegments
from esan.runtime.io.outputs import Outputs
from esan.runtime.io.reconnect import write_maps_index
from esan.runtime.io.report import LatencyLog, aggregate_fps, build_report, write_report
from esan.runtime.io.signals import redirected, signal_name
from esan.runtime.io.sources import Frame, FrameSource
from esan.runtime.io.summary import END_OF_STREAM, RunSummary, StreamSummary
from esan.runtime.io.viewers import Viewers
from esan.runtime.io.writer import DEFAULT_CAPACITY, Job, OutputWriter

IDLE_WAIT_S = 0.05
PUMP_S = 0.02  # window refresh period of the main thread with --show
OPEN, FINISHING, CLOSED = "open", "finishing", "closed"
INTERRUPTED = "interrupted (Ctrl-C)"


class _Lane(StreamSegments):
    """One stream's pieces in the pipeline (and its segments: ``esan.runtime.io.gaps``)."""

    def __init__(self, sid: int, source: FrameSource, outputs: Outputs, capacity: int, wake: threading.Event) -> None:
        super().__init__(sid)
        self.source, self.outputs = source, outputs
        source.wake = wake
        self.log = LatencyLog()
        self.summary = StreamSummary(stream=sid, source=source.name, live=source.live)
        self.writer = OutputWriter(outputs, self.log, capacity=capacity, wake=wake, name=f"output:{sid}")
        self.state = OPEN
        self.pending = False  # a frame was pushed since the last round
        self.last_event_s = time.perf_counter()  # last push or finish: what the next maps waited for
        self.memory_peak = self.memory_last = 0


class Pipeline:
    """Runs N streams through one scheduler (module docstring); ``run()`` returns the :class:`RunSummary`."""

    def __init__(
        self,
        scheduler: Scheduler,
        streams: Sequence[tuple[FrameSource, Outputs]],
        *,
        max_frames: int | None = None,
        max_batch_wait_ms: float = 0.0,
        report: Path | None = None,
        display: Viewers | None = None,
        output_queue: int = DEFAULT_CAPACITY,
        metrics: Any = None,
    ) -> None:
        if not streams:
            raise ValueError("the pipeline needs at least one stream")
        self.scheduler = scheduler
        self.max_frames = max_frames
        self.max_batch_wait_s = max(0.0, float(max_batch_wait_ms)) / 1000.0
        self.report = report
        self.display = display
        self.metrics = metrics  # esan.runtime.io.metrics.RuntimeMetrics (--metrics-port), or None
        self.wake = threading.Event()
        self.lanes = [_Lane(i, src, out, output_queue, self.wake) for i, (src, out) in enumerate(streams)]
        self._by_key: dict[Hashable, _Lane] = {lane.sid: lane for lane in self.lanes}  # + later segments
        self._stop_reason: str | None = None
        self._interrupted = False
        self._abort = False
        self._error: BaseException | None = None
        self._computed = threading.Event()  # set when the compute thread ends (see _supervise)
        self.rounds = 0
        self._changes: list[tuple[str, Any]] = []  # streams added / ended while running (applied by compute)
        self._changes_lock = threading.Lock()
        self._output_queue = output_queue

    def add_stream(self, source: FrameSource, outputs: Outputs) -> int:
        """Add a stream while running (any thread); returns its number. It starts at the next round."""
        with self._changes_lock:
            lane = _Lane(len(self.lanes) + sum(k == "add" for k, _ in self._changes), source, outputs,
                         self._output_queue, self.wake)
            self._changes.append(("add", lane))
        self.wake.set()
        return lane.sid

    def end_stream(self, sid: int, reason: str) -> None:
        """End one stream while running (any thread): flushed, its outputs finalised; the others go on."""
        with self._changes_lock:
            self._changes.append(("end", (sid, reason)))
        self.wake.set()

    def _apply_changes(self) -> None:
        with self._changes_lock:
            changes, self._changes = self._changes, []
        for kind, item in changes:
            if kind == "add":
                self.lanes.append(item)
                self._by_key[item.sid] = item
                self.scheduler.open_stream(item.sid)
                item.source.start()
            elif (lane := self._by_key.get(item[0])) is not None and lane.state == OPEN:
                self._end(lane, item[1])

    # -- control (any thread) --------------------------------------------------------------------
    def stop(self, reason: str, *, interrupted: bool = False, abort: bool = False) -> None:
        """End every stream: flush their maps (``abort``: drop them) and finalise the outputs."""
        self._stop_reason = self._stop_reason or reason
        self._interrupted = self._interrupted or interrupted
        self._abort = self._abort or abort
        self.wake.set()

    def _on_signal(self, signum: int, hits: int) -> None:
        """A stop signal (main thread): the first flushes every stream, the second drops what is pending."""
        ctrl_c = signum == signal.SIGINT
        self.stop(INTERRUPTED if ctrl_c else f"stopped ({signal_name(signum)})", interrupted=ctrl_c, abort=hits > 1)
        if hits > 1:
            self._interrupted = self._interrupted or ctrl_c
            for lane in self.lanes:
                lane.writer.abort()

    # -- main thread -----------------------------------------------------------------------------
    def run(self) -> RunSummary:
        t0 = time.perf_counter()
        for lane in self.lanes:
            self.scheduler.open_stream(lane.sid)
            lane.source.start()
        if self.metrics is not None:
            self.metrics.attach(self)
        with redirected(self._on_signal):  # SIGINT/SIGTERM: a clean stop (esan.runtime.io.signals)
            try:
                threading.Thread(target=self._compute, name="compute", daemon=True).start()
                self._supervise()
            finally:
                self._shutdown()
                summary = self._summarise(t0)
                if self.metrics is not None:
                    self.metrics.detach(self)
        if self._error is not None:
            raise self._error
        return summary

    def _supervise(self) -> None:
        """Wait for the compute thread; pump the window; Ctrl-C stops cleanly (twice: without the flush).

        Waits on an event, not ``Thread.join``: a Ctrl-C landing inside ``join`` can leave the thread
        marked as stopped while it still runs (CPython < 3.13), and the flush would be lost.
        """
        hits = 0
        while not self._computed.is_set():
            try:
                if self.display is not None and not self.display.pump():
                    self.stop("quit by the user")
                self._computed.wait(PUMP_S if self.display is not None else 0.1)
            except KeyboardInterrupt:
                hits += 1
                self.stop(INTERRUPTED, interrupted=True, abort=hits > 1)

    def _shutdown(self) -> None:
        """Writers drained and closed, sources released, window closed, plots drawn."""
        if not self._computed.is_set():  # the supervisor itself failed: stop without flushing
            self.stop("stopped", abort=True)
            self._computed.wait(5.0)
        for lane in self.lanes:
            if lane.state != CLOSED:
                lane.writer.close()
        for lane in self.lanes:
            while True:
                try:
                    if lane.writer.join(0.1):
                        break
                except KeyboardInterrupt:
                    self._interrupted = True
                    for other in self.lanes:
                        other.writer.abort()
        for lane in self.lanes:
            lane.source.stop()
        if self.display is not None:
            self.display.close()
        for lane in self.lanes:
            lane.summary.notes.extend(lane.outputs.finalise(lane.log))

    def _summarise(self, t0: float) -> RunSummary:
        wall = round(time.perf_counter() - t0, 3)
        for lane in self.lanes:
            s, src = lane.summary, lane.source
            s.wall_s = wall
            s.dropped_frames = src.dropped
            s.source_error = src.error
            s.gaps, s.reconnects = lane.gaps, src.reconnects()
            if lane.outputs.opts.maps is not None:
                write_maps_index(lane.outputs.opts.maps, s.gaps, s.reconnects)
            if src.error and s.stop_reason == END_OF_STREAM:
                s.stop_reason = "source disconnected"
            if lane.writer.error:
                s.notes.append(f"output failed, stream {lane.sid} ended early: {lane.writer.error}")
            if lane.writer.discarded:
                s.notes.append(f"{lane.writer.discarded} maps of stream {lane.sid} were not written")
            s.interrupted = self._interrupted
            s.memory = {"scheduler_peak_bytes": lane.memory_peak, "scheduler_last_bytes": lane.memory_last,
                        "output_queue_peak": lane.writer.peak_backlog}  # fmt: skip
            s.fill(lane.log, delay=self.scheduler.delay_frames, source_fps=src.fps)
        if self.report is not None:
            write_report(self.report, build_report([(lane.log, lane.summary.as_dict(), lane.outputs.meta)
                                                    for lane in self.lanes]))  # fmt: skip
        return RunSummary([lane.summary for lane in self.lanes], wall_s=wall,
                          fps=aggregate_fps([lane.log for lane in self.lanes]))

    # -- compute thread --------------------------------------------------------------------------
    def _compute(self) -> None:
        try:
            while self._round():
                pass
        except BaseException as exc:  # a failed round cannot be pinned on one stream: end them all
            self._error = exc
            for lane in self.lanes:
                if lane.state != CLOSED:
                    lane.close_all(self.scheduler)
                    lane.state = CLOSED
                    lane.source.request_stop()
                    lane.writer.close()
        finally:
            self._computed.set()

    def _round(self) -> bool:
        """Admit frames, run one scheduler round, hand the maps to the writers; False when every stream is done."""
        self.wake.clear()
        self._apply_changes()
        self._apply_stop()
        for lane in self.lanes:
            if lane.writer.error and lane.state != CLOSED:
                self._end(lane, "output failed", flush=False)
        got = self._admit(self.lanes)
        if got and self.max_batch_wait_s > 0:
            self._gather()
        if not self.scheduler.has_work():
            self._retire()
            if all(lane.state == CLOSED for lane in self.lanes):
                return False
            if not any(lane.pending for lane in self.lanes):
                self.wake.wait(IDLE_WAIT_S)
            return True
        batch = sum(lane.pending for lane in self.lanes)
        try:
            results = self.scheduler.run()
        except KeyboardInterrupt:  # raised by a scheduler in this thread: stop as for Ctrl-C
            self.stop(INTERRUPTED, interrupted=True)
            return True
        ready = time.perf_counter()
        self.rounds += 1
        for r in results:
            lane = self._by_key[r.stream_id]
            if lane.offsets[r.stream_id]:  # a later segment: its own count from 0, shifted to the stream's
                r = dataclasses.replace(r, index=lane.offsets[r.stream_id] + r.index)
            frame: Frame = r.payload
            record = lane.log.add(r.index, frame.timestamp, ready, getattr(r, "timings_ms", None), lane.last_event_s)
            lane.summary.frames += 1
            lane.writer.put(Job(r, frame, record))
        if self.metrics is not None:
            self.metrics.round(batch, [(self._by_key[r.stream_id].sid, r.payload.timestamp) for r in results], ready,
                               getattr(results[0], "timings_ms", None) if results else None)
        open_streams = set(self.scheduler.streams)
        for lane in self.lanes:
            lane.pending = False
            if lane.key in open_streams:
                lane.memory_last = self.scheduler.stream_memory(lane.key)
                lane.memory_peak = max(lane.memory_peak, lane.memory_last)
        self._retire()
        return True

    def _apply_stop(self) -> None:
        if self._stop_reason is None:
            return
        for lane in self.lanes:
            if lane.state == OPEN:
                self._end(lane, self._stop_reason, flush=not self._abort)
            elif lane.state == FINISHING and self._abort:
                lane.close_all(self.scheduler)

    def _admit(self, lanes: Sequence[_Lane]) -> list[_Lane]:
        """At most one new frame per open stream with room downstream; ends streams whose source ended."""
        got = []
        for lane in lanes:
            if lane.state != OPEN or lane.pending or lane.writer.full:
                continue
            frame, ended = lane.source.poll()
            if frame is not None:
                if self._push(lane, frame):
                    got.append(lane)
            elif ended:
                self._end(lane, None)
            elif lane.source.down():  # an outage: the maps before it come out now, not after it
                lane.end_segment(self.scheduler)
        return got

    def _gather(self) -> None:
        """``--max-batch-wait-ms``: wait (at most that long) until every open stream has a frame for this round."""
        deadline = time.perf_counter() + self.max_batch_wait_s
        while self._stop_reason is None:
            missing = [lane for lane in self.lanes if lane.state == OPEN and not lane.pending and not lane.writer.full]
            left = deadline - time.perf_counter()
            if not missing or left <= 0:
                return
            self.wake.clear()
            if not self._admit(missing):
                self.wake.wait(left)

    def _push(self, lane: _Lane, frame: Frame) -> bool:
        now = time.perf_counter()
        try:
            if frame.gap is not None or not lane.segment_open:
                lane.new_segment(self.scheduler, frame.gap)
                self._by_key[lane.key] = lane
            self.scheduler.push(lane.key, frame.image, payload=frame)  # checks the frame
        except KeyboardInterrupt:
            self.stop(INTERRUPTED, interrupted=True)
            return False
        except ValueError as exc:  # a broken frame ends its own stream only (what came before is flushed)
            self._end(lane, f"frame {frame.index} failed: {exc}")
            return False
        lane.pending = True
        lane.next_index += 1
        lane.last_event_s = now
        lane.summary.frames_pushed += 1
        if self.max_frames is not None and lane.summary.frames_pushed >= self.max_frames:
            self._end(lane, f"--max-frames {self.max_frames} reached")
        return True

    def _end(self, lane: _Lane, reason: str | None, *, flush: bool = True) -> None:
        """End one stream: stop its source; flush its remaining maps (or drop them)."""
        if lane.state == CLOSED or (lane.state == FINISHING and flush):
            return
        if reason is not None and lane.summary.stop_reason == END_OF_STREAM:
            lane.summary.stop_reason = reason
        lane.source.request_stop()
        if flush:
            if lane.segment_open:
                self.scheduler.finish(lane.key)
            lane.last_event_s = time.perf_counter()
            lane.state = FINISHING
        else:
            lane.close_all(self.scheduler)
            lane.state = FINISHING  # retired (writer closed) by the next _retire

    def _retire(self) -> None:
        """Streams the scheduler no longer holds (flushed or closed): no more maps, close their writers."""
        open_streams = set(self.scheduler.streams)
        for lane in self.lanes:
            if lane.state == FINISHING and not open_streams.intersection(lane.offsets):
                lane.state = CLOSED
                lane.writer.close()
                threading.Thread(target=lane.source.stop, daemon=True).start()  # release it now, not at exit


def run_stream(source: FrameSource, scheduler: Scheduler, outputs: Outputs, **kwargs: Any) -> StreamSummary:
    """One stream through the pipeline; returns its summary (``kwargs``: see :class:`Pipeline`)."""
    run = Pipeline(scheduler, [(source, outputs)], **kwargs).run()
    summary = run.streams[0]
    summary.notes.extend(run.notes)
    return summary
