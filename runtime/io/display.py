"""``--show``: the latest overlay of every stream, tiled in one OpenCV window.

Writers (one thread per stream) ``publish`` their overlays; only the thread that calls ``pump`` (the
pipeline's main thread) touches the window, as GUI toolkits require. ``q`` or Esc asks to quit.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Hashable

import cv2
import numpy as np

from esan.runtime.io.overlay import put_status

QUIT_KEYS = (ord("q"), ord("Q"), 27)
TILE_WIDTH = 640  # tiles are scaled to this width when several streams share the window


def display_available() -> tuple[bool, str]:
    """Whether ``cv2.imshow`` can work here, and why not."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY is not set)"
    try:
        cv2.namedWindow("esan-rt-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("esan-rt-probe")
    except cv2.error:
        return False, "this OpenCV build has no GUI support (opencv-python-headless?)"
    return True, ""


def tile(items: list[tuple[np.ndarray, str] | None], width: int = TILE_WIDTH) -> np.ndarray:
    """A near-square grid of ``(BGR image, status)``, each scaled to ``width`` (the first one's aspect ratio)
    with its status line drawn on it; missing tiles stay black."""
    first = next(item[0] for item in items if item is not None)
    h = max(1, round(width * first.shape[0] / first.shape[1]))
    cols = math.ceil(math.sqrt(len(items)))
    rows = math.ceil(len(items) / cols)
    canvas = np.zeros((rows * h, cols * width, 3), np.uint8)
    for i, item in enumerate(items):
        if item is not None:
            r, c = divmod(i, cols)
            small = cv2.resize(item[0], (width, h), interpolation=cv2.INTER_AREA)
            canvas[r * h:(r + 1) * h, c * width:(c + 1) * width] = put_status(small, item[1])
    return canvas


class TiledDisplay:
    """One window for ``streams`` streams; ``publish`` from any thread, ``pump`` from the GUI thread."""

    def __init__(self, title: str, streams: int) -> None:
        self.title = title
        self.streams = streams
        self._latest: dict[Hashable, tuple[np.ndarray, str]] = {}
        self._lock = threading.Lock()
        self._dirty = False
        self._open = False

    def publish(self, stream_id: Hashable, bgr: np.ndarray, status: str) -> None:
        with self._lock:
            self._latest[stream_id] = (bgr, status)
            self._dirty = True

    def pump(self) -> bool:
        """Show what changed and poll the keyboard; ``False`` when the user asked to quit."""
        with self._lock:
            latest, dirty, self._dirty = dict(self._latest), self._dirty, False
        if dirty and latest:
            if not self._open:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
                self._open = True
            if self.streams == 1:
                bgr, status = next(iter(latest.values()))
                view = put_status(bgr.copy(), status)
            else:
                view = tile([latest.get(sid) for sid in range(self.streams)])
            cv2.imshow(self.title, view)
        if not self._open:
            return True
        return (cv2.waitKey(1) & 0xFF) not in QUIT_KEYS

    def close(self) -> None:
        if self._open:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass
            self._open = False
