"""A real RTSP camera for tests: ``tests/support/rtsp_server.py`` (GStreamer's RTSP server) run by Debian's Python.

Needs ``python3-gi``, ``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-{base,good,ugly}`` and
``gstreamer1.0-rtsp`` (``.ci/run`` installs them where apt-get exists); :func:`missing` says why not.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from support.proctools import preexec

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_server.py")
PROBE = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
         "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
         "assert all(Gst.ElementFactory.find(e) for e in ('videotestsrc', 'x264enc', 'rtph264pay', 'valve'))")


def missing() -> str | None:
    """Why the RTSP camera cannot run here, or None."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"needs Debian's {SYSTEM_PYTHON} with GStreamer's RTSP server"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return ("needs GStreamer's RTSP server: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
                "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-rtsp "
                f"(.ci/run does): {probe.stderr.strip().splitlines()[-1:] or probe.returncode}")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspCamera:
    """``rtsp://127.0.0.1:PORT/cam``; ``stop()`` takes it away (the process ends), ``start()`` brings it back on
    the same port, ``pause()`` keeps clients connected but sends nothing (a stalled camera)."""

    def __init__(self, log: Path, fps: int = 25) -> None:
        self.port, self.fps, self.log = free_port(), fps, log
        self.proc: subprocess.Popen | None = None
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> RtspCamera:
        for _ in range(50):  # the port may linger for a moment after a stop
            out = open(self.log, "a")  # noqa: SIM115 - the child writes it
            self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), str(self.port), str(self.fps)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out, text=True,
                                         preexec_fn=preexec())
            out.close()
            line = self.proc.stdout.readline().strip()
            if line == "ready":
                return self
            self.proc.wait(10)
            time.sleep(0.2)
        raise AssertionError(f"the RTSP server did not start on port {self.port}: {self.log.read_text()[-1000:]}")

    def _say(self, command: str) -> None:
        assert self.proc is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def pause(self) -> None:
        self._say("pause")

    def resume(self) -> None:
        self._say("resume")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
