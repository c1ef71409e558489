"""Stream outputs: ``--show`` window, ``--view-port`` browser view, ``--save-video``, ``--save-maps``,
``--report`` and ``--plot``.

Every path is checked writable by :func:`check_outputs` *before* streaming starts; :class:`Outputs`
then receives each result and is always finalised by :meth:`Outputs.close` (video closed, report and
plot written), whatever ended the stream.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from esan.runtime.core.errors import UserError
from esan.runtime.core.fsutil import check_writable_dir
from esan.runtime.io.overlay import map_to_frame, overlay, to_uint8
from esan.runtime.io.report import LatencyLog, build_report, write_report
from esan.runtime.io.tiles import status_text
from esan.runtime.io.window import Window, display_available

MAP_FORMATS = ("npy", "png")


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


def check_outputs(opts: OutputOptions) -> None:
    """Refuse unusable output paths with one clear line, before any frame is read."""
    if opts.view_port is not None and not 0 <= opts.view_port <= 65535:
        raise UserError(f"--view-port must be 0..65535 (0: any free port), got {opts.view_port}")
    if opts.maps_format not in MAP_FORMATS:
        raise UserError(f"--maps-format must be one of {', '.join(MAP_FORMATS)}, got {opts.maps_format!r}")
    if opts.video:
        _writable_parent(opts.video, "--save-video")
        _probe_video_writer(opts.video)
    if opts.report:
        _writable_parent(opts.report, "--report")
    if opts.plot:
        _writable_parent(opts.plot, "--plot")
    if opts.maps:
        if opts.maps.exists() and not opts.maps.is_dir():
            raise UserError(f"--save-maps {opts.maps} is a file; give a directory")
        try:
            check_writable_dir(opts.maps)
        except PermissionError as exc:
            raise UserError(f"--save-maps: {exc}") from None
    paths = [p.resolve() for p in (opts.video, opts.report, opts.plot) if p]
    if len(set(paths)) != len(paths):
        raise UserError("--save-video, --report and --plot must be different files")


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
    """Receives stream results and writes every requested output; ``close`` finalises them all."""

    def __init__(self, opts: OutputOptions, meta: dict[str, Any], *, fps: float, title: str = "esan-rt") -> None:
        self.opts = opts
        self.meta = {**meta, "outputs": opts.describe()}
        self.fps = fps
        self.title = title
        self.notes: list[str] = []
        self._writer: cv2.VideoWriter | None = None
        self._video_size: tuple[int, int] | None = None
        self.window: Window | None = None
        self.live: Any = None  # LiveView when --view-port
        self.maps_written = 0
        self.video_frames = 0
        self.closed = False
        if opts.show:
            ok, why = display_available()
            if ok:
                self.window = Window(title)
            else:
                watch = "the live view still runs" if opts.view_port is not None else \
                    "the stream runs without a window (watch it in a browser with --view-port PORT)"
                self.notes.append(f"--show skipped: {why}; {watch}")
                print(f"esan-rt: {self.notes[-1]}", file=sys.stderr, flush=True)
        if opts.view_port is not None:
            from esan.runtime.io.live_view import LiveView

            self.live = LiveView(opts.view_port, opts.view_address, title=title)
            print(f"esan-rt: live view on {self.live.url} (open it in a browser)", file=sys.stderr, flush=True)
        if opts.maps:
            opts.maps.mkdir(parents=True, exist_ok=True)

    @property
    def needs_overlay(self) -> bool:
        return self.window is not None or self.live is not None or self.opts.video is not None

    def write(self, result: Any, image: np.ndarray, log: LatencyLog) -> bool:
        """Write one result (``image`` is the original RGB frame); ``False`` when the user asked to quit."""
        png_maps = self.opts.maps and self.opts.maps_format == "png"
        frame_map = None  # the map on the original frame, computed once for the PNG maps and the overlay
        if png_maps or self.needs_overlay:
            frame_map = map_to_frame(result.saliency, result.box, image.shape[:2])
        if self.opts.maps:
            self._write_map(result, frame_map)
        if not self.needs_overlay:
            return True
        canvas = overlay(image, frame_map)
        if self.opts.video:
            self._write_video(canvas)
        if self.window is None and self.live is None:
            return True
        sid = getattr(result, "stream_id", 0)
        source_index = getattr(result.payload, "index", result.index)  # counts dropped frames too
        status = status_text(sid, fps=log.recent_fps(), latency_ms=log.e2e_ms[-1] if len(log) else 0.0,
                             drops=max(0, source_index - result.index), frame=result.index)
        if self.live is not None:
            self.live.publish(sid, canvas, status)
        if self.window is not None:
            return self.window.publish(sid, canvas, status, frame_rgb=image)
        return True

    def _write_map(self, result: Any, frame_map: np.ndarray | None) -> None:
        """npy: the model-size map; png: ``frame_map`` (the map on the original frame), 8-bit."""
        stem = self.opts.maps / f"{int(result.index):06d}"
        if self.opts.maps_format == "npy":
            np.save(f"{stem}.npy", np.asarray(result.saliency, np.float32))
        elif not cv2.imwrite(f"{stem}.png", to_uint8(frame_map)):
            raise UserError(f"could not write {stem}.png")
        self.maps_written += 1

    def _write_video(self, canvas: np.ndarray) -> None:
        if self._writer is None:
            h, w = canvas.shape[:2]
            self._video_size = (w, h)
            self._writer = cv2.VideoWriter(str(self.opts.video), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise UserError(f"cannot open {self.opts.video} for writing (mp4v)")
        if (canvas.shape[1], canvas.shape[0]) != self._video_size:
            canvas = cv2.resize(canvas, self._video_size, interpolation=cv2.INTER_AREA)
        self._writer.write(canvas)
        self.video_frames += 1

    def close(self, log: LatencyLog, summary: dict[str, Any]) -> list[str]:
        """Close the video and window, write report and plot; returns notes for the user (idempotent)."""
        if self.closed:
            return self.notes
        self.closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.window is not None:
            self.window.close()
        if self.live is not None:
            self.live.close()
        if self.opts.report:
            report = build_report(log, summary, self.meta)
            report["outputs"].update(maps_written=self.maps_written, video_frames=self.video_frames)
            write_report(self.opts.report, report)
        if self.opts.plot:
            from esan.runtime.io.plot import save_latency_plot

            title = f"{self.meta.get('backend')} {self.meta.get('precision')} L={self.meta.get('lookahead')}"
            note = save_latency_plot(log, self.opts.plot, title=title)
            if note:
                self.notes.append(note)
        return self.notes
