"""Stream outputs: ``--show`` window, ``--view-port`` browser view, ``--save-video``, ``--save-maps``,
``--report`` and ``--plot``.

Every path is checked writable by :func:`check_outputs` *before* streaming starts (with several
streams, each stream's paths: ``DIR/<i>/`` maps, ``{stream}`` in the video and plot paths). One
:class:`Outputs` per stream then receives that stream's results on its writer thread
(``esan.runtime.io.writer``), off the compute thread, and is always finalised, whatever ended the stream:
``finish`` closes the video (writer thread), ``finalise`` draws the plot (main thread). The report covers
every stream and is written by the pipeline.
"""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from esan.runtime.core.errors import UserError
from esan.runtime.core.fsutil import check_writable_dir
from esan.runtime.io.overlay import Renderer
from esan.runtime.io.report import LatencyLog
from esan.runtime.io.segments import SegmentRoller, parse_keep
from esan.runtime.io.tiles import status_text
from esan.runtime.io.viewers import Viewers

MAP_FORMATS = ("npy", "png")
STREAM_FIELD = "{stream}"
# fastest PNG settings for smooth 8-bit maps: zlib level 1, no row filter, run-length strategy (OpenCV >= 4.11
# knows the filter flag; older builds use their defaults)
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
if hasattr(cv2, "IMWRITE_PNG_FILTER"):
    PNG_PARAMS += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


@dataclass
class OutputOptions:
    show: bool = False
    video: Path | None = None
    maps: Path | None = None
    maps_format: str = "npy"
    report: Path | None = None
    plot: Path | None = None
    view_port: int | None = None
    view_address: str = "127.0.0.1"
    view_allow_hosts: tuple[str, ...] = ()  # Host names the live view answers besides its own (--view-allow-host)
    segment_seconds: float | None = None  # roll video, maps and latency log (esan.runtime.io.segments)
    keep: str | None = None

    def describe(self) -> dict[str, str]:
        out = {k: str(getattr(self, k)) for k in ("video", "maps", "report", "plot") if getattr(self, k)}
        if self.maps:
            out["maps_format"] = self.maps_format
        return out


def _writable_parent(path: Path, what: str) -> None:
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; give a file name")
    try:
        check_writable_dir(path.parent if str(path.parent) else Path("."))
    except PermissionError as exc:
        raise UserError(f"{what}: {exc}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {path} exists and is not writable; choose another output path")


def stream_options(opts: OutputOptions, streams: int) -> list[OutputOptions]:
    """Each stream's options: maps in ``DIR/<i>/`` and ``{stream}`` replaced by ``i`` in the video and plot
    paths (with one stream: ``DIR`` itself, and ``{stream}`` -> ``0``). The report is the run's, not a stream's.

    With several streams a ``--save-video`` or ``--plot`` path without ``{stream}`` is one clear error.
    """
    if streams > 1:
        for flag, path in (("--save-video", opts.video), ("--plot", opts.plot)):
            if path is not None and STREAM_FIELD not in str(path):
                raise UserError(f"{flag} {path}: with {streams} streams the path must contain {STREAM_FIELD} "
                                f"(replaced by the stream number 0..{streams - 1}), e.g. "
                                f"out_{STREAM_FIELD}{path.suffix}")
    sub = lambda p, i: Path(str(p).replace(STREAM_FIELD, str(i))) if p is not None else None  # noqa: E731
    out = []
    for i in range(streams):
        maps = sub(opts.maps, i)
        if maps is not None and streams > 1 and STREAM_FIELD not in str(opts.maps):
            maps = maps / str(i)
        out.append(replace(opts, video=sub(opts.video, i), plot=sub(opts.plot, i), maps=maps, report=None))
    return out


def check_outputs(opts: OutputOptions, streams: int = 1) -> list[OutputOptions]:
    """Refuse unusable output paths with one clear line, before any frame is read; returns each stream's options."""
    if opts.view_port is not None and not 0 <= opts.view_port <= 65535:
        raise UserError(f"--view-port must be 0..65535 (0: any free port), got {opts.view_port}")
    per_stream = stream_options(opts, streams)
    if opts.segment_seconds is not None:
        SegmentRoller(opts.segment_seconds, parse_keep(opts.keep), None, None)  # refuses bad values now
    elif opts.keep is not None:
        raise UserError("--keep applies to segments: give --segment-seconds N too")
    for o in per_stream:
        _check_stream_outputs(o)
    if opts.report:
        _writable_parent(opts.report, "--report")
    files = [p.resolve() for o in per_stream for p in (o.video, o.plot) if p]
    files += [opts.report.resolve()] if opts.report else []
    if len(set(files)) != len(files):
        raise UserError("--save-video, --report and --plot must be different files")
    return per_stream


def _check_stream_outputs(opts: OutputOptions) -> None:
    if opts.maps_format not in MAP_FORMATS:
        raise UserError(f"--maps-format must be one of {', '.join(MAP_FORMATS)}, got {opts.maps_format!r}")
    if opts.video:
        _writable_parent(opts.video, "--save-video")
        _probe_video_writer(opts.video)
    if opts.plot:
        _writable_parent(opts.plot, "--plot")
    if opts.maps:
        if opts.maps.exists() and not opts.maps.is_dir():
            raise UserError(f"--save-maps {opts.maps} is a file; give a directory")
        try:
            check_writable_dir(opts.maps)
        except PermissionError as exc:
            raise UserError(f"--save-maps: {exc}") from None


def _probe_video_writer(path: Path) -> None:
    """Make sure OpenCV can encode mp4v into this container (a tiny throw-away file beside ``path``)."""
    fd, tmp = tempfile.mkstemp(prefix=".probe", suffix=path.suffix or ".mp4", dir=path.parent)
    os.close(fd)
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
        ok = writer.isOpened()
        writer.release()
    finally:
        Path(tmp).unlink(missing_ok=True)
    if not ok:
        raise UserError(f"--save-video {path}: OpenCV cannot write mp4v video to this file type; use .mp4")


class Outputs:
    """Writes one stream's results (on its writer thread); ``finish`` closes the video, ``finalise`` plots.

    ``meta`` describes the stream and the run (it goes into the report); ``display`` is the run's
    ``--show`` window and ``--view-port`` page (``esan.runtime.io.viewers``), if any.

    With both map files and an overlay to make, the map file is written on a second thread while this one
    draws and encodes the overlay (OpenCV releases the GIL in both), and ``write`` returns when both are
    done: one map's outputs cost the longer of the two, not their sum (``benchmarks/outputs_speed.py``).
    """

    def __init__(self, opts: OutputOptions, meta: dict[str, Any], *, fps: float, title: str = "esan-rt",
                 stream_id: int = 0, display: Viewers | None = None) -> None:  # fmt: skip
        self.opts = opts
        self.meta = {**meta, "outputs": opts.describe()}
        self.fps = fps
        self.title = title
        self.stream_id = stream_id
        self.display = display
        self.live = bool(meta.get("live", False))
        self.notes: list[str] = []
        self._writer: cv2.VideoWriter | None = None
        self._video_size: tuple[int, int] | None = None
        self.renderer = Renderer()
        self._maps_thread: ThreadPoolExecutor | None = None  # the map files' thread, beside an overlay
        self.maps_written = 0
        self.video_frames = 0
        self.finished = False
        if opts.maps:
            opts.maps.mkdir(parents=True, exist_ok=True)
        self.roller = (SegmentRoller(opts.segment_seconds, parse_keep(opts.keep), opts.video, opts.maps)
                       if opts.segment_seconds else None)  # fmt: skip

    @property
    def needs_overlay(self) -> bool:
        return self.display is not None or self.opts.video is not None

    def write(self, result: Any, image: np.ndarray, log: LatencyLog) -> None:
        """Write one result (``image`` is the original RGB frame): map file, overlay video, window tile."""
        if self.roller is not None:
            self._roll(result)
        if self.opts.maps and not self.needs_overlay:
            self._write_map(result, image.shape[:2])
            return
        pending = self._map_in_parallel(result, image.shape[:2]) if self.opts.maps else None
        try:
            self._write_overlay(result, image, log)
        finally:
            if pending is not None:
                pending.result()  # both are done before the next map; a failed map write raises here

    def _map_in_parallel(self, result: Any, frame_hw: tuple[int, int]) -> Future:
        if self._maps_thread is None:
            self._maps_thread = ThreadPoolExecutor(1, thread_name_prefix=f"maps-{self.stream_id}")
        return self._maps_thread.submit(self._write_map, result, frame_hw)

    def _write_overlay(self, result: Any, image: np.ndarray, log: LatencyLog) -> None:
        canvas = self.renderer.overlay(image, result.saliency, result.box)
        if self.opts.video:
            self._write_video(canvas)
        if self.display is not None:
            source_index = getattr(result.payload, "index", result.index)  # counts dropped frames too
            status = status_text(self.stream_id, fps=log.recent_fps(), latency_ms=log.latest(end_to_end=self.live),
                                 drops=max(0, source_index - result.index), frame=result.index)
            # the renderer reuses its buffer for the next map: viewers get their own copy
            self.display.publish(self.stream_id, canvas.copy(), status, frame_rgb=image)

    def _write_map(self, result: Any, frame_hw: tuple[int, int]) -> None:
        """npy: the model-size map; png: the map on the original frame, 8-bit."""
        stem = (self.roller.maps_dir if self.roller else self.opts.maps) / f"{int(result.index):06d}"
        if self.opts.maps_format == "npy":
            np.save(f"{stem}.npy", np.asarray(result.saliency, np.float32))
        elif not cv2.imwrite(f"{stem}.png", self.renderer.map_u8(result.saliency, result.box, frame_hw), PNG_PARAMS):
            raise UserError(f"could not write {stem}.png")
        self.maps_written += 1

    def _write_video(self, canvas: np.ndarray) -> None:
        if self._writer is None:
            h, w = canvas.shape[:2]
            self._video_size = (w, h)
            path = self.roller.video_path if self.roller else self.opts.video
            self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise UserError(f"cannot open {self.opts.video} for writing (mp4v)")
        if (canvas.shape[1], canvas.shape[0]) != self._video_size:
            canvas = cv2.resize(canvas, self._video_size, interpolation=cv2.INTER_AREA)
        self._writer.write(canvas)
        self.video_frames += 1

    def finish(self) -> None:
        """Close the video file (idempotent; the writer thread calls it after the stream's last map)."""
        self.finished = True
        if self._maps_thread is not None:
            self._maps_thread.shutdown(wait=True)
            self._maps_thread = None
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.roller is not None:
            self.roller.close()

    def _roll(self, result: Any) -> None:
        """``--segment-seconds``: close the segment when due (video released, files renamed) and open the next."""
        if self.roller.due():
            if self._writer is not None:
                self._writer.release()
                self._writer = None
            self.roller.close()
            self.roller.open()
        captured = getattr(result.payload, "timestamp", None)
        if captured is not None:
            self.roller.record(result.index, (time.perf_counter() - captured) * 1000.0)

    def finalise(self, log: LatencyLog) -> list[str]:
        """After the stream: close the video if still open, draw the plot; returns notes for the user."""
        self.finish()
        self.meta["outputs"].update(maps_written=self.maps_written, video_frames=self.video_frames)
        if self.opts.plot:
            from esan.runtime.io.plot import save_latency_plot

            title = f"{self.meta.get('backend')} {self.meta.get('precision')} L={self.meta.get('lookahead')}"
            if self.meta.get("stream") is not None:
                title = f"stream {self.meta['stream']}: {title}"
            note = save_latency_plot(log, self.opts.plot, title=title, live=self.live)
            if note:
                self.notes.append(note)
        return self.notes
