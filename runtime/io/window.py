"""The ``--show`` window: the overlay of every stream, tiled, with a readable status line per tile.

Opens at the frames' size (at least 640 px wide, capped to 90 % of the screen). Keys: ``q`` / Esc
(or closing the window) quit, the stream is then flushed and every output finalised; space pauses
the view (the stream keeps running); ``o`` toggles the overlay (saliency heatmap <-> plain frame).
Needs an OpenCV build with GUI support (``opencv-python``; ``opencv-python-headless`` has none).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import time
from collections.abc import Hashable
from pathlib import Path

import cv2
import numpy as np

from esan.runtime.io.tiles import draw_status, tile

QUIT_KEYS = (ord("q"), ord("Q"), 27)
PAUSE_KEYS = (ord(" "),)
OVERLAY_KEYS = (ord("o"), ord("O"))
KEY_HINT = "q quit, space pause, o overlay"
MIN_WIDTH = 640
SCREEN_FRACTION = 0.9
FALLBACK_SCREEN = (1600, 900)  # when the screen size cannot be read
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts")


def display_available() -> tuple[bool, str]:
    """Whether an OpenCV window can open here, and what to do if not."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY is not set)"
    _fix_qt_fonts()
    try:
        cv2.namedWindow("esan-rt-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("esan-rt-probe")
    except cv2.error:
        return False, ("this OpenCV build has no GUI support (opencv-python-headless); for the window: "
                       "pip uninstall -y opencv-python-headless opencv-python && pip install opencv-python")
    return True, ""


def _fix_qt_fonts() -> None:
    """opencv-python's Qt looks for fonts in a folder its wheel does not ship; point it at the system's."""
    fontdir = os.environ.get("QT_QPA_FONTDIR")
    if sys.platform.startswith("linux") and fontdir and not Path(fontdir).is_dir():
        for candidate in FONT_DIRS:
            if Path(candidate).is_dir():
                os.environ["QT_QPA_FONTDIR"] = candidate
                return


def screen_size() -> tuple[int, int] | None:
    """``(width, height)`` of the screen in pixels (X11 or Windows), or ``None`` if it cannot be read."""
    try:
        if sys.platform == "win32":
            user32 = ctypes.windll.user32  # type: ignore[attr-defined]
            return int(user32.GetSystemMetrics(0)), int(user32.GetSystemMetrics(1))
        if not os.environ.get("DISPLAY"):
            return None
        x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x11.XDefaultScreen.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        x11.XDisplayWidth.argtypes = x11.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
        display = x11.XOpenDisplay(None)
        if not display:
            return None
        try:
            screen = x11.XDefaultScreen(display)
            return int(x11.XDisplayWidth(display, screen)), int(x11.XDisplayHeight(display, screen))
        finally:
            x11.XCloseDisplay(display)
    except (OSError, AttributeError):
        return None


class Window:
    """One window for all streams: :meth:`publish` from any thread (writers), :meth:`pump` from the GUI thread.

    GUI toolkits want one thread to touch the window: ``publish`` only stores the latest picture of a
    stream; ``pump`` (the pipeline's main thread) draws what changed and handles the keys.
    """

    def __init__(self, title: str, *, max_wh: tuple[int, int] | None = None, min_w: int = MIN_WIDTH,
                 redraw_s: float = 1 / 60) -> None:
        self.title = f"{title}  ({KEY_HINT})"
        if max_wh is None:
            sw, sh = screen_size() or FALLBACK_SCREEN
            max_wh = (int(sw * SCREEN_FRACTION), int(sh * SCREEN_FRACTION) - 40)  # room for the title bar
        self.max_wh = max_wh
        self.min_w = min_w
        self.redraw_s = redraw_s
        self.paused = False
        self.overlay = True
        self.quit = False
        self.shown: np.ndarray | None = None  # the last image put on screen
        self._latest: dict[Hashable, tuple[np.ndarray, np.ndarray | None, str]] = {}
        self._frozen: dict[Hashable, tuple[np.ndarray, np.ndarray | None, str]] = {}
        self._last_draw = 0.0
        self._closed = False
        self._lock = threading.Lock()
        self._dirty = False
        _fix_qt_fonts()

    def publish(self, stream_id: Hashable, overlay_bgr: np.ndarray, status: str,
                frame_rgb: np.ndarray | None = None) -> bool:
        """Keep the latest overlay of ``stream_id`` (``frame_rgb``: the plain frame, for ``o``); any thread.

        Returns ``False`` once the user quit.
        """
        with self._lock:
            self._latest[stream_id] = (overlay_bgr, frame_rgb, status)
            self._dirty = True
        return not self.quit

    def pump(self, wait_ms: int = 1) -> bool:
        """GUI thread: draw what changed (not while paused, at most every ``redraw_s``), handle the keys.

        Returns ``False`` once the user quit.
        """
        if self.quit:
            return False
        if not self.paused and time.perf_counter() - self._last_draw >= self.redraw_s:
            with self._lock:
                dirty, self._dirty = self._dirty, False
                latest = dict(self._latest)
            if dirty:
                self._frozen = latest
                self._draw()
        return self.poll(wait_ms)

    def poll(self, wait_ms: int = 1) -> bool:
        """Handle keys (and a closed window); ``False`` once the user quit."""
        if self.quit:
            return False
        key = cv2.waitKey(wait_ms) & 0xFF
        if key in QUIT_KEYS or self._closed_by_user():
            self.quit = True
            self.close()
            return False
        if key in PAUSE_KEYS:
            self.paused = not self.paused
            if not self.paused:
                with self._lock:
                    self._frozen = dict(self._latest)
            self._draw()
        elif key in OVERLAY_KEYS:
            self.overlay = not self.overlay
            self._draw()
        return True

    def _closed_by_user(self) -> bool:
        if self.shown is None:
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def render(self) -> np.ndarray | None:
        """The mosaic the window shows now (overlay or plain frames, status lines, pause banner)."""
        if not self._frozen:
            return None
        images, labels = {}, {}
        for sid, (over, plain, status) in self._frozen.items():
            use_plain = not self.overlay and plain is not None
            images[sid] = cv2.cvtColor(plain, cv2.COLOR_RGB2BGR) if use_plain else over
            labels[sid] = status if self.overlay else f"{status}  (overlay off)"
        mosaic = tile(images, labels, max_wh=self.max_wh, min_w=self.min_w)
        if self.paused:
            draw_status(mosaic, "PAUSED - the stream keeps running; space resumes", bottom=True)
        return mosaic

    def _draw(self) -> None:
        mosaic = self.render()
        if mosaic is None:
            return
        if self.shown is None:  # created with its first picture (not as an empty box while the model loads)
            cv2.namedWindow(self.title, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        cv2.imshow(self.title, mosaic)
        self.shown = mosaic
        self._last_draw = time.perf_counter()

    def close(self) -> None:
        """Destroy the window (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass
