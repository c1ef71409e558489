"""Helpers for the live-view and window tests: clips, MJPEG parsing, Chromium, Xvfb screenshots."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from support.proctools import preexec

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def video_frames(path: Path) -> int:
    """How many frames OpenCV decodes from ``path`` (0 for a file that does not play)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def gray_clip(path: Path, n: int, hw: tuple[int, int] = (240, 320), fps: float = 25.0) -> Path:
    """A grey-only clip (a bright disc moving over a grey texture): any colour on screen is the overlay."""
    h, w = hw
    rng = np.random.default_rng(5)
    bg = cv2.resize(rng.integers(60, 160, (h // 8, w // 8), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for i in range(n):
        img = np.roll(bg, 2 * i, axis=1).copy()
        cx, cy = int(w * (0.5 + 0.35 * np.sin(i / 9))), int(h * (0.5 + 0.3 * np.cos(i / 13)))
        cv2.circle(img, (cx, cy), max(6, h // 10), 235, -1, cv2.LINE_AA)
        writer.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def colour_fraction(bgr: np.ndarray) -> float:
    """Fraction of clearly coloured pixels (HSV saturation > 110, value > 50): the heatmap on grey frames."""
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    return float(np.mean((hsv[..., 1] > 110) & (hsv[..., 2] > 50)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def wait_until(cond, timeout: float, what: str, step: float = 0.1):
    """Poll ``cond()`` until it returns something truthy (a hang guard, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def read_mjpeg(url: str, count: int, timeout: float = 60.0, decode: bool = True) -> list:
    """The first ``count`` parts of a ``multipart/x-mixed-replace`` stream: decoded BGR images (or bytes)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("GET", u.path)
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    ctype = resp.getheader("Content-Type", "")
    assert ctype.startswith("multipart/x-mixed-replace"), ctype
    boundary = b"--" + re.search(r"boundary=([^\s;]+)", ctype)[1].encode()
    frames: list = []
    try:
        while len(frames) < count:
            line = resp.fp.readline()
            if not line:
                break
            if line.strip() != boundary:
                continue
            headers = {}
            while h := resp.fp.readline().strip():
                k, v = h.split(b":", 1)
                headers[k.strip().lower()] = v.strip()
            if not headers:  # the connection ended after a boundary
                break
            assert headers[b"content-type"] == b"image/jpeg", headers
            data = resp.fp.read(int(headers[b"content-length"]))
            if decode:
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None, "a part is not a JPEG"
                frames.append(image)
            else:
                frames.append(data)
    finally:
        conn.close()
    return frames


def chromium_screenshot(url: str, out: Path, size: tuple[int, int] = (1000, 760), wait_ms: int = 2500) -> np.ndarray:
    """Headless Chromium renders ``url`` for ``wait_ms`` and saves a PNG; returns it as BGR."""
    profile = out.parent / f".chromium-{out.stem}"
    cmd = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
           f"--timeout={wait_ms}", f"--screenshot={out}", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    assert out.is_file(), f"chromium wrote no screenshot (rc {proc.returncode}): {proc.stderr[-1500:]}"
    image = cv2.imread(str(out))
    assert image is not None and image.shape[:2] == (size[1], size[0]), None if image is None else image.shape
    return image


def read_xwd(path: Path) -> np.ndarray:
    """An X window dump (Xvfb's ``-fbdir`` framebuffer file, 24/32-bit TrueColor) as BGR."""
    data = path.read_bytes()
    f = struct.unpack(">25I", data[:100])
    header, width, height, byte_order, bpp, bpl, ncolors = f[0], f[4], f[5], f[7], f[11], f[12], f[19]
    assert bpp == 32, f"unexpected {bpp} bits per pixel"
    px = np.frombuffer(data, np.uint8, count=height * bpl, offset=header + 12 * ncolors).reshape(height, bpl)
    px = px[:, : width * 4].reshape(height, width, 4)
    if byte_order == 1:  # MSBFirst: xRGB
        px = px[..., ::-1]
    return np.ascontiguousarray(px[..., :3])


@contextmanager
def xvfb(tmp: Path, size: tuple[int, int] = (1280, 800)):
    """A virtual X screen; yields ``(DISPLAY, screenshot())``; skipped by the caller when Xvfb is absent.

    Xvfb picks a free display number itself (``-displayfd``): a number another X server on this machine
    holds (maybe only as an abstract socket, invisible in /tmp) would send our windows to that server.
    """
    fbdir = tmp / "xvfb"
    fbdir.mkdir()
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([shutil.which("Xvfb"), "-displayfd", str(write_end), "-screen", "0",
                             f"{size[0]}x{size[1]}x24", "-fbdir", str(fbdir), "-nolisten", "tcp"],
                            pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as f:
            number = f.readline().strip()  # written once the server accepts connections
        assert number.isdigit(), f"Xvfb did not start (rc {proc.poll()})"
        wait_until(lambda: (fbdir / "Xvfb_screen0").is_file(), 20, "Xvfb's framebuffer file")
        yield f":{number}", lambda: read_xwd(fbdir / "Xvfb_screen0")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def gui_opencv(display: str) -> tuple[bool, str]:
    """Whether the installed OpenCV can open a window on ``display`` (checked in a subprocess)."""
    code = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DISPLAY": display})
    return proc.returncode == 0, (proc.stderr.strip().splitlines() or ["?"])[-1]


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of the true pixels of ``mask`` (exclusive ends), or ``None``."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class Cli:
    """``esan-rt ...`` in a subprocess; stderr is collected by a thread (the live view's URL is on it)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, ignore_sigint: bool = False) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "esan.runtime.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=preexec(ignore_sigint),
                                     env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
        self.err: list[str] = []
        self._reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def url(self) -> str:
        def find() -> str | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode} before serving: {''.join(self.err)[-2000:]}")
            return next((ln.split(" on ", 1)[1].split()[0] for ln in self.err if "live view on http" in ln), None)

        return wait_until(find, 300, "the live view's address")

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        out = self.proc.communicate(timeout=timeout)[0]
        self._reader.join(timeout=10)
        return self.proc.returncode, out


def wait_painted(cond, display: str, name: str, timeout: float, what: str):
    """``wait_until(cond)`` for a new window's first picture, mapping the window again once if need be.

    opencv-python's bundled Qt sometimes misses a new window's first expose when the CPU is busy and
    leaves it black until it is mapped again (opencv/opencv-python#362). Reproduced here with busy loops
    on both cores: XGetImage of the window is black as well, the process keeps calling imshow/waitKey,
    and one unmap/map (what a window manager does on minimise/restore) paints it. Not our code's doing,
    so the tests remap after a grace period instead of failing on it.
    """
    env = {**os.environ, "DISPLAY": display}

    def ids() -> list[str]:
        return subprocess.run(["xdotool", "search", "--name", name], env=env, capture_output=True, text=True,
                              timeout=30).stdout.split()

    wait_until(ids, timeout, f"a window called {name!r}")
    try:
        return wait_until(cond, 8, what)
    except AssertionError:
        for wid in ids():
            subprocess.run(["xdotool", "windowunmap", "--sync", wid, "windowmap", "--sync", wid], env=env,
                           timeout=30)
        return wait_until(cond, timeout, what)
