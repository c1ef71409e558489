"""Live sources that come back: a camera or URL that disconnects or stalls is reopened with backoff.

The policy (``--reconnect {forever,N,off}``, ``--stall-timeout S``) follows what long-running video
systems do (DeepStream's ``rtsp-reconnect-interval``, go2rtc): wait 1 s, then 2, 4, ... up to a cap,
for ever or ``N`` attempts per outage. A stall -- connected, but no frame for ``--stall-timeout``
seconds -- is an outage too: it is OpenCV's FFmpeg read timeout (``CAP_PROP_READ_TIMEOUT_MSEC``), and
every open is bounded by ``CAP_PROP_OPEN_TIMEOUT_MSEC``; nothing here polls or kills threads.

The reader reports each outage as a :class:`Gap` (``take_gap``) with the frames it cost at the source's
frame rate; ``FrameSource`` counts them in its frame numbers and hands the gap on with the first frame
after it, and the pipeline flushes the stream's schedule there and starts a new segment from zero
state. Each attempt and each outage is one log line (the URL redacted).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from esan.runtime.core.errors import UserError
from esan.runtime.io.sources import (
    CAMERA_TIMEOUT_S,
    FrameSource,
    SourceEnded,
    _fps,
    _to_rgb,
    camera_capture,
    redact_url,
    url_capture,
)

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
DEFAULT_STALL_S = 10.0
OPEN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ReconnectPolicy:
    """``attempts``: None = for ever, 0 = off (the first outage ends the stream), N per outage."""

    attempts: int | None = None
    stall_timeout_s: float = DEFAULT_STALL_S
    first_delay_s: float = FIRST_DELAY_S
    max_delay_s: float = MAX_DELAY_S

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (1, 2, ...): 1 s doubling up to the cap."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** (attempt - 1))

    def gives_up(self, attempt: int) -> bool:
        return self.attempts is not None and attempt > self.attempts


def parse_policy(text: str, stall_timeout_s: float = DEFAULT_STALL_S, max_delay_s: float = MAX_DELAY_S
                 ) -> ReconnectPolicy:  # fmt: skip
    """``--reconnect forever|N|off`` and ``--stall-timeout`` as a policy (``UserError`` if invalid)."""
    text = str(text).strip().lower()
    if not stall_timeout_s > 0:
        raise UserError(f"--stall-timeout must be > 0 seconds, got {stall_timeout_s}")
    if text in ("forever", "off"):
        attempts = None if text == "forever" else 0
    elif text.isdigit() and int(text) >= 1:
        attempts = int(text)
    else:
        raise UserError(f"--reconnect must be forever, off or a number of attempts >= 1, got {text!r}")
    return ReconnectPolicy(attempts, float(stall_timeout_s), max_delay_s=max_delay_s)


@dataclass
class Gap:
    """One outage: wall-clock ``start`` (last frame) and ``end`` (first frame again), frames it cost."""

    start: float
    end: float
    frames_lost: int
    reason: str
    attempts: int

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    def as_dict(self) -> dict[str, object]:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "seconds": round(self.seconds, 3),
                "frames_lost": self.frames_lost, "reason": self.reason, "attempts": self.attempts}


Opener = Callable[[], cv2.VideoCapture]


class ReconnectingReader:
    """A ``FrameSource`` reader over an OpenCV capture that reopens it after an outage (module docstring).

    ``stop`` interrupts the waits between attempts; giving up raises ``SourceEnded`` (the stream then
    ends with that error and the run exits non-zero).
    """

    def __init__(self, cap: cv2.VideoCapture, reopen: Opener, *, what: str, fps: float, policy: ReconnectPolicy,
                 log: Callable[[str], None]) -> None:  # fmt: skip
        self.cap: cv2.VideoCapture | None = cap
        self.reopen, self.what, self.fps, self.policy, self.log = reopen, redact_url(what), fps, policy, log
        self.stop = threading.Event()
        self.reconnects = 0
        self._gap: Gap | None = None
        self._last_frame = time.time()
        self._lock = threading.Lock()

    def take_gap(self) -> Gap | None:
        """The outage just recovered from (once), or None."""
        gap, self._gap = self._gap, None
        return gap

    def __call__(self) -> np.ndarray | None:
        while not self.stop.is_set():
            if self.cap is None:
                return None
            t0 = time.monotonic()
            ok, bgr = self.cap.read()
            if ok and bgr is not None:
                self._last_frame = time.time()
                return _to_rgb(bgr)
            stalled = time.monotonic() - t0 >= 0.9 * self.policy.stall_timeout_s
            reason = f"stalled (no frame for {self.policy.stall_timeout_s:g} s)" if stalled else "disconnected"
            self._outage(reason)
        return None

    def _outage(self, reason: str) -> None:
        """Close the capture and reopen it with backoff; sets ``cap`` (None when stopped), or raises."""
        self.close()
        start, cause, attempt = self._last_frame, reason, 0
        while True:
            attempt += 1
            if self.policy.gives_up(attempt):
                tried = "reconnect is off" if self.policy.attempts == 0 else f"gave up after {attempt - 1} attempts"
                self.log(f"{self.what}: {reason}; {tried}")
                raise SourceEnded(f"{self.what} {cause}; {tried}")
            delay = self.policy.delay(attempt)
            self.log(f"{self.what}: {reason}; reconnect attempt {attempt} in {delay:g} s")
            if self.stop.wait(delay):
                return
            try:
                cap = self.reopen()
            except Exception as exc:  # unreachable again: next attempt
                reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                reason = redact_url(reason)
                continue
            end = time.time()
            with self._lock:
                if self.stop.is_set():
                    cap.release()
                    return
                self.cap = cap
            self.reconnects += 1
            self._last_frame = end
            self._gap = Gap(start, end, max(0, round((end - start) * self.fps) - 1), cause, attempt)
            self.log(f"{self.what}: reconnected after {end - start:.1f} s down ({attempt} attempts, "
                     f"~{self._gap.frames_lost} frames lost)")
            return

    def close(self) -> None:
        with self._lock:
            cap, self.cap = self.cap, None
        if cap is not None:
            cap.release()

    def request_stop(self) -> None:
        self.stop.set()


def open_live(kind: str, value: object, *, policy: ReconnectPolicy, queue_size: int = 4,
              log: Callable[[str], None] = print) -> FrameSource:  # fmt: skip
    """A camera (``kind == "camera"``) or URL source that reconnects by ``policy``; the first open fails fast."""
    read_ms = int(policy.stall_timeout_s * 1000)
    if kind == "camera":
        index = int(value)  # type: ignore[call-overload]

        def reopen() -> cv2.VideoCapture:
            return camera_capture(index, CAMERA_TIMEOUT_S)  # the camera driver's own read timeout

        name, what, source_kind = f"camera:{index}", f"camera {index}", "camera"
    else:
        url = str(value)
        # RTSP over TCP (as Frigate/go2rtc default to): a camera that goes away is an error at once, not a silence
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")

        def reopen() -> cv2.VideoCapture:
            return url_capture(url, OPEN_TIMEOUT_S, read_timeout_ms=read_ms)

        name, what, source_kind = url, f"stream {redact_url(url)}", "url"
    cap = reopen()
    fps = _fps(cap)
    reader = ReconnectingReader(cap, reopen, what=what, fps=fps, policy=policy, log=log)
    src = FrameSource(reader, name=name, kind=source_kind, live=True, fps=fps, queue_size=queue_size,
                      close=reader.close)
    src.on_stop = reader.request_stop
    src.reconnects = lambda: reader.reconnects
    src.down = lambda: reader.cap is None
    return src


def write_maps_index(folder: object, gaps: list[dict[str, object]], reconnects: int) -> None:
    """``index.json`` beside the maps of a stream that had outages: where the gaps are (frame numbers keep
    counting through them, so a map's number is always its own frame's)."""
    import json
    from pathlib import Path

    from esan.runtime.core.fsutil import atomic_write_text

    if gaps or reconnects:
        atomic_write_text(Path(str(folder)) / "index.json",
                          json.dumps({"gaps": gaps, "reconnects": reconnects}, indent=2) + "\n")
