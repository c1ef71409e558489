"""Frame sources for ``esan-rt stream``: camera, video file, RTSP/HTTP URL, folder of frames.

Every source yields :class:`Frame` objects (RGB ``uint8`` image + capture timestamp). Capture runs
in its own thread behind a bounded queue:

* live sources (camera, URL, or a file with ``realtime=True``) drop the *oldest* queued frame when
  the pipeline falls behind and count the drops;
* files and folders block the reader instead, so every frame is processed.

A source that ends or disconnects ends the iteration (``error`` says why on a disconnect), so the
pipeline can flush. Credentials in URLs never reach logs: use :func:`redact_url`.
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from esan.runtime.core.errors import UserError
from esan.runtime.core.framefiles import list_frames

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
DEFAULT_FPS = 25.0
CAMERA_TIMEOUT_S = 5.0
T = TypeVar("T")

# user info ends at the authority's last '@' (a password may hold '@'); the authority ends at / ? # or a space
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")
_QUERY_ITEM = re.compile(r"(?P<head>[?&#;](?P<key>[^=&#;?\s]+)=)(?P<value>[^&#\s]*)")
# a query/fragment key holding one of these (any case) has its value hidden: user/pass pairs, tokens, API keys,
# signed-URL signatures (X-Amz-Signature, sig), credentials, sessions
SECRET_WORDS = ("user", "login", "pass", "pwd", "token", "key", "secret", "auth", "sig", "credential", "session",
                "cookie")


def is_secret_key(key: str) -> bool:
    """Whether a query key names a secret (``SECRET_WORDS``)."""
    k = key.lower()
    return any(w in k for w in SECRET_WORDS)


def redact_url(text: str) -> str:
    """Remove credentials (``user:pass@`` and secret query values) from a URL or a message holding URLs."""
    text = _USERINFO.sub(r"\g<scheme>***@", str(text))
    return _QUERY_ITEM.sub(lambda m: m["head"] + "***" if is_secret_key(m["key"]) else m[0], text)


def is_url(source: str) -> bool:
    """True for ``rtsp://``, ``http(s)://`` and other network stream addresses."""
    scheme, sep, _ = str(source).partition("://")
    return bool(sep) and scheme.lower() in URL_SCHEMES


class SourceEnded(Exception):
    """Raised by a reader when its source disconnects or fails mid-stream."""


@dataclass
class Frame:
    """One captured frame: ``index`` counts every frame the source delivered (dropped ones included)."""

    index: int
    image: np.ndarray
    timestamp: float
    """``time.perf_counter()`` when the frame was captured."""
    gap: Any = None
    """On the first frame after an outage: its ``esan.runtime.io.reconnect.Gap`` (``index`` counts the lost frames)."""


Reader = Callable[[], "np.ndarray | None"]


class FrameSource:
    """A capture thread feeding a bounded queue; iterate it to get frames until the end of stream.

    ``reader()`` returns the next RGB frame, ``None`` at the end, or raises (a disconnect). ``pace_fps``
    sleeps between reads to simulate a live source from a file.
    """

    def __init__(
        self,
        reader: Reader,
        *,
        name: str,
        kind: str,
        live: bool,
        fps: float,
        queue_size: int = 4,
        pace_fps: float | None = None,
        close: Callable[[], None] | None = None,
        first: np.ndarray | None = None,
    ) -> None:
        if queue_size < 1:
            raise UserError(f"--queue-size must be >= 1, got {queue_size}")
        self.name = redact_url(name)
        self.kind = kind
        self.live = live
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FPS
        self.queue_size = queue_size
        self.dropped = 0
        self.captured = 0
        self.error: str | None = None
        self._reader = reader
        self._close = close
        self._pace = pace_fps
        self._first = first
        self._buf: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._ended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.wake: threading.Event | None = None
        """Set on every new frame and at the end of the stream (a consumer watching many sources waits on it)."""
        self.on_stop: Callable[[], None] | None = None  # told on request_stop (a reconnecting reader's waits)
        self.reconnects: Callable[[], int] = lambda: 0
        self.down: Callable[[], bool] = lambda: False  # True during a reconnecting source's outage

    # -- producer ---------------------------------------------------------------------------------
    def start(self) -> FrameSource:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"capture:{self.kind}", daemon=True)
            self._thread.start()
        return self

    def _read(self) -> np.ndarray | None:
        if self._first is not None:
            image, self._first = self._first, None
            return image
        return self._reader()

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            while not self._stop.is_set():
                if self._pace:
                    delay = t0 + self.captured / self._pace - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        break
                image = self._read()
                if image is None:
                    break
                gap = self._reader.take_gap() if hasattr(self._reader, "take_gap") else None
                self.captured += gap.frames_lost if gap is not None else 0  # lost frames keep their numbers
                self._put(Frame(self.captured, image, time.perf_counter(), gap))
                self.captured += 1
        except Exception as exc:  # a disconnect or a decoder failure ends the stream
            self.error = redact_url(f"{type(exc).__name__}: {exc}" if not isinstance(exc, SourceEnded) else str(exc))
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()
            self._notify()

    def _notify(self) -> None:
        if self.wake is not None:
            self.wake.set()

    def _put(self, frame: Frame) -> None:
        with self._cond:
            while len(self._buf) >= self.queue_size and not self._stop.is_set():
                if self.live:
                    old = self._buf.popleft()
                    self.dropped += 1
                    if old.gap is not None:  # the next frame starts the new segment instead
                        (self._buf[0] if self._buf else frame).gap = old.gap
                else:
                    self._cond.wait(0.1)
            self._buf.append(frame)
            self._cond.notify_all()
        self._notify()

    @property
    def finished(self) -> bool:
        """True once the capture thread has stopped (end of stream, disconnect or ``stop()``)."""
        return self._ended

    # -- consumer ---------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest queued frame, or ``None`` once the source has ended and the queue is empty."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._buf and not self._ended:
                wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if wait <= 0:
                    return None
                self._cond.wait(wait)
            if not self._buf:
                return None
            frame = self._buf.popleft()
            self._cond.notify_all()
            return frame

    def poll(self) -> tuple[Frame | None, bool]:
        """Without waiting: ``(oldest queued frame or None, ended)``; ``ended`` is True only once the
        source has stopped *and* every frame was taken, so no frame is ever left behind."""
        self.start()
        with self._cond:
            if self._buf:
                frame = self._buf.popleft()
                self._cond.notify_all()
                return frame, False
            return None, self._ended

    def request_stop(self) -> None:
        """Ask the capture thread to stop, without waiting for it (``stop()`` waits and releases)."""
        self._stop.set()
        if self.on_stop is not None:
            self.on_stop()
        with self._cond:
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.get()) is not None:
            yield frame

    def stop(self) -> None:
        """Stop capturing and release the device or file (idempotent)."""
        self.request_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
            if self._thread.is_alive():  # stuck in a blocking read: releasing now could crash the decoder
                return
        if self._close is not None:
            close, self._close = self._close, None
            close()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- concrete sources -----------------------------------------------------------------------------
def _capture_reader(cap: cv2.VideoCapture, what: str, live: bool) -> Reader:
    buf: list[np.ndarray] = []  # the decoder's BGR frame, reused (only the RGB copy travels on)

    def read() -> np.ndarray | None:
        ok, bgr = cap.read(buf[0]) if buf else cap.read()
        if not ok or bgr is None:
            if live:
                raise SourceEnded(f"{what} stopped delivering frames (disconnected?)")
            return None
        buf[:] = [bgr]
        return _to_rgb(bgr)

    return read


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _fps(cap: cv2.VideoCapture) -> float:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return float(fps) if fps and np.isfinite(fps) and 1.0 <= fps <= 1000.0 else DEFAULT_FPS


def _call_with_timeout(fn: Callable[[], object], timeout: float) -> tuple[bool, object]:
    """Run ``fn`` in a daemon thread with OpenCV/FFmpeg logging silenced (our error says it all, and
    FFmpeg may print URLs with credentials); ``(finished, result_or_exception)``."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg starts
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    old = log.setLogLevel(log.LOG_LEVEL_SILENT) if log is not None else None
    try:
        return _run_with_timeout(fn, timeout)
    finally:
        if log is not None:
            log.setLogLevel(old)


def _run_with_timeout(fn: Callable[[], object], timeout: float) -> tuple[bool, object]:
    box: list[object] = []

    def target() -> None:
        try:
            box.append(fn())
        except Exception as exc:  # reported to the caller
            box.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    return (bool(box), box[0] if box else None)


def _probe(fn: Callable[[], T], timeout: float, late: str, failed: str) -> T:
    """``fn()`` (an OpenCV open) within ``timeout`` s; a ``UserError`` saying ``late`` or ``failed: <why>``."""
    done, result = _call_with_timeout(fn, timeout)
    if not done:
        raise UserError(late)
    if isinstance(result, Exception):
        raise result if isinstance(result, UserError) else UserError(f"{failed}: {result}")
    return result  # type: ignore[return-value]


def camera_capture(index: int, timeout: float = CAMERA_TIMEOUT_S) -> cv2.VideoCapture:
    """Camera ``index`` opened and delivering frames within ``timeout`` s, or one clear ``UserError``."""

    def probe() -> tuple[cv2.VideoCapture, np.ndarray]:
        cap = cv2.VideoCapture(int(index))
        if not cap.isOpened():
            cap.release()
            raise UserError(f"cannot open camera {index}: no such device or it is busy; check --camera N")
        ok, bgr = cap.read()
        if not ok or bgr is None:
            cap.release()
            raise UserError(f"camera {index} opened but delivered no frame; is it in use by another program?")
        return cap, bgr

    cap, _ = _probe(probe, timeout, f"camera {index} did not deliver a frame within {timeout:.0f} s; check --camera N",
                    f"cannot open camera {index}")  # the probe frame is stale by the time streaming starts: drop it
    return cap


def open_camera(index: int, *, queue_size: int = 4, timeout: float = CAMERA_TIMEOUT_S) -> FrameSource:
    """Camera ``index`` via ``cv2.VideoCapture``; one clear error within ``timeout`` seconds if unusable."""
    cap = camera_capture(index, timeout)
    return FrameSource(
        _capture_reader(cap, f"camera {index}", live=True), name=f"camera:{index}", kind="camera",
        live=True, fps=_fps(cap), queue_size=queue_size, close=cap.release,
    )


def url_capture(url: str, timeout: float = 10.0, read_timeout_ms: int = 5000) -> cv2.VideoCapture:
    """An RTSP/HTTP stream opened by OpenCV's FFmpeg within ``timeout`` s (reads time out after
    ``read_timeout_ms``), or one clear ``UserError``."""
    shown = redact_url(url)

    def probe() -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                  int(read_timeout_ms)]
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise UserError(f"cannot open stream {shown}: unreachable, wrong address or unsupported format")
        return cap

    return _probe(probe, timeout + 2.0, f"stream {shown} did not open within {timeout:.0f} s",
                  f"cannot open stream {shown}")


def open_url(url: str, *, queue_size: int = 4, timeout: float = 10.0) -> FrameSource:
    """An RTSP/HTTP stream, treated as live (drops the oldest frames when behind)."""
    shown = redact_url(url)
    cap = url_capture(url, timeout)
    return FrameSource(
        _capture_reader(cap, f"stream {shown}", live=True), name=url, kind="url", live=True,
        fps=_fps(cap), queue_size=queue_size, close=cap.release,
    )


def open_video(path: str | os.PathLike, *, queue_size: int = 4, realtime: bool = False) -> FrameSource:
    """A video file: every frame, or paced at its fps with the live drop policy when ``realtime``."""
    p = Path(path)
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        raise UserError(f"cannot decode video {p}: not a video file or an unsupported codec")
    ok, bgr = cap.read()
    if not ok or bgr is None:
        cap.release()
        raise UserError(f"video {p} has no readable frames")
    fps = _fps(cap)
    return FrameSource(
        _capture_reader(cap, f"video {p}", live=False), name=str(p), kind="video", live=realtime,
        fps=fps, queue_size=queue_size, pace_fps=fps if realtime else None, close=cap.release,
        first=_to_rgb(bgr),
    )


def open_folder(
    folder: str | os.PathLike, *, queue_size: int = 4, realtime: bool = False, fps: float = DEFAULT_FPS
) -> FrameSource:
    """A folder of frames in natural name order; a frame that cannot be decoded ends the stream with an error."""
    files = list_frames(folder)
    if not files:
        raise UserError(f"folder {folder} holds no frames (.png, .jpg, .jpeg or .bmp)")
    it = iter(files)

    def read() -> np.ndarray | None:
        path = next(it, None)
        if path is None:
            return None
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceEnded(f"cannot decode frame {path}")
        return _to_rgb(image)

    return FrameSource(
        read, name=str(folder), kind="folder", live=realtime, fps=fps, queue_size=queue_size,
        pace_fps=fps if realtime else None,
    )


def open_source(
    camera: int | None = None,
    source: str | os.PathLike | None = None,
    *,
    queue_size: int = 4,
    realtime: bool = False,
) -> FrameSource:
    """Open exactly one of a camera index or a path/URL/folder; raises ``UserError`` if unusable.

    The capture thread starts on first use (``start()`` or iteration), so a source can be opened (and
    fail fast) before a slow model load.
    """
    if (camera is None) == (source is None):
        raise UserError("give exactly one of --camera N or --source PATH|URL|DIR")
    if camera is not None:
        return open_camera(camera, queue_size=queue_size)
    text = str(source)
    if is_url(text):
        return open_url(text, queue_size=queue_size)
    p = Path(text)
    if p.is_dir():
        return open_folder(p, queue_size=queue_size, realtime=realtime)
    if not p.exists():
        raise UserError(f"source {redact_url(text)} does not exist; give a video file, a folder of frames or a URL")
    return open_video(p, queue_size=queue_size, realtime=realtime)
