"""Where people watch a stream: the ``--show`` window and the ``--view-port`` browser page, for every stream.

``open_viewers`` makes one ``Viewers`` for the run (``None`` when neither is asked for). Writers (one
thread per stream) ``publish`` each overlay; the live page takes it at once (a latest-picture slot per
stream), the window keeps it until the pipeline's main thread ``pump``s it (GUI toolkits want one thread).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import Any

import numpy as np

from esan.runtime.core.netguard import is_loopback
from esan.runtime.io.window import Window, display_available


class Viewers:
    """The window and/or the live page, shared by all streams (module docstring)."""

    def __init__(self, window: Window | None, live: Any) -> None:
        self.window = window
        self.live = live  # esan.runtime.io.live_view.LiveView or None

    def publish(self, stream_id: Hashable, overlay_bgr: np.ndarray, status: str,
                frame_rgb: np.ndarray | None = None) -> None:  # fmt: skip
        """The latest overlay of a stream (any thread)."""
        if self.live is not None:
            self.live.publish(stream_id, overlay_bgr, status)
        if self.window is not None:
            self.window.publish(stream_id, overlay_bgr, status, frame_rgb=frame_rgb)

    def pump(self) -> bool:
        """Main thread: refresh the window and read its keys; ``False`` once the user quit."""
        return self.window.pump() if self.window is not None else True

    def close(self) -> None:
        if self.window is not None:
            self.window.close()
        if self.live is not None:
            self.live.close()


def open_viewers(show: bool, view_port: int | None, view_address: str, title: str,
                 allowed_hosts: tuple[str, ...] = ()) -> tuple[Viewers | None, list[str]]:
    """The run's viewers (or ``None``) and notes for the user (e.g. why there is no window)."""
    notes: list[str] = []
    window = None
    if show:
        ok, why = display_available()
        if ok:
            window = Window(title)
        else:
            watch = "the live view still runs" if view_port is not None else \
                "the stream runs without a window (watch it in a browser with --view-port PORT)"
            notes.append(f"--show skipped: {why}; {watch}")
            print(f"esan-rt: {notes[-1]}", file=sys.stderr, flush=True)
    live = None
    if view_port is not None:
        from esan.runtime.io.live_view import LiveView

        try:
            live = LiveView(view_port, view_address, title=title, allowed_hosts=allowed_hosts)
        except BaseException:
            if window is not None:
                window.close()
            raise
        print(f"esan-rt: live view on {live.url} (open it in a browser)", file=sys.stderr, flush=True)
        if not is_loopback(view_address):
            print(f"esan-rt: warning: the live view listens on {view_address}, reachable from the network, "
                  "unencrypted and without a password; prefer 127.0.0.1 with an SSH tunnel or a TLS reverse proxy "
                  "(README, Security)", file=sys.stderr, flush=True)
    if window is None and live is None:
        return None, notes
    return Viewers(window, live), notes
