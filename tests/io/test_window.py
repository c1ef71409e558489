"""``--show`` for real: a window on a virtual X screen (Xvfb), driven with keys (xdotool), photographed.

Needs Xvfb and xdotool (Debian packages; ``.ci/run`` installs them where apt-get exists) and an OpenCV
with GUI support (``opencv-python``, the base install); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import BUNDLE_LOOKAHEAD
from support.viewtools import Cli, bbox, colour_fraction, gray_clip, gui_opencv, wait_painted, wait_until, xvfb

pytestmark = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                                reason="needs Xvfb and xdotool (apt-get install xvfb xdotool; .ci/run does)")


def test_window_shows_the_overlay_at_a_readable_size_and_obeys_its_keys(tmp_path: Path, tiny_bundle: Path) -> None:
    clip = gray_clip(tmp_path / "grey.mp4", 1500, (240, 320))
    maps, report = tmp_path / "maps", tmp_path / "report.json"
    with xvfb(tmp_path) as (display, screenshot):
        ok, why = gui_opencv(display)
        # the GUI OpenCV build is a dependency the README promises (--show): a build that cannot open a window
        # is a broken install, not a reason to skip
        assert ok, f"this OpenCV cannot open a window (opencv-python-headless installed over opencv-python?): {why}"

        def xdo(*args: str) -> str:
            env = {**os.environ, "DISPLAY": display}
            return subprocess.run(["xdotool", *args], capture_output=True, text=True, timeout=30, env=env).stdout

        def window() -> np.ndarray | None:
            shot = screenshot()
            box = bbox(shot.max(axis=2) > 0)  # the screen is black but for the window (no window manager)
            return None if box is None or box[2] - box[0] < 600 else shot[box[1]: box[3], box[0]: box[2]]

        cli = Cli("stream", "--source", str(clip), "--bundle", str(tiny_bundle), "--lookahead",
                  str(BUNDLE_LOOKAHEAD), "--realtime", "--show", "--save-maps", str(maps), "--report", str(report),
                  env={"DISPLAY": display})
        try:
            try:
                wait_painted(lambda: (w := window()) is not None and colour_fraction(w) > 0.05, display, "esan-rt",
                             300, "the window")
            except AssertionError:
                cv2.imwrite(str(tmp_path / "screen.png"), screenshot())
                raise AssertionError(f"no window with the overlay (screen: {tmp_path / 'screen.png'}); "
                                     f"rc {cli.proc.poll()}, stderr: {''.join(cli.err)[-1500:]}") from None
            wid = wait_until(lambda: xdo("search", "--name", "esan-rt").split(), 30, "the window's id")[0]
            xdo("windowfocus", "--sync", wid)  # no window manager: give it the keyboard
            shown = window()
            cv2.imwrite(str(tmp_path / "window.png"), shown)
            assert shown.shape[:2] == (480, 640)  # a 320x240 clip opens at 640 px wide (readable), aspect kept
            text_rows = ((shown[:40] > 230).all(axis=2)).any(axis=1).sum()
            assert text_rows >= 10  # the status line's text is at least 10 px tall

            xdo("key", "o")  # overlay off: the grey frames themselves
            wait_until(lambda: colour_fraction(window()) < 0.01, 30, "the overlay to go off")
            xdo("key", "space")  # pause the view; the stream goes on
            wait_until(lambda: (window()[-20:] > 230).all(axis=2).any(), 30, "the PAUSED line")
            frozen, written = window(), len(list(maps.glob("*.npy")))
            cv2.imwrite(str(tmp_path / "paused.png"), frozen)
            wait_until(lambda: len(list(maps.glob("*.npy"))) >= written + 5, 120, "more maps while paused")
            assert np.array_equal(window(), frozen)
            xdo("key", "o")  # overlay back on, on the paused picture
            wait_until(lambda: colour_fraction(window()) > 0.05, 30, "the overlay to come back")
            xdo("key", "q")
            rc, out = cli.finish(timeout=120)
        finally:
            if cli.proc.poll() is None:
                cli.proc.send_signal(signal.SIGINT)
                cli.finish()
    assert rc == 0 and "quit by the user" in out, out
    summary = json.loads(report.read_text())
    assert summary["frames"] == len(list(maps.glob("*.npy"))) > 0  # flushed: every map written, report too


TILES_SCRIPT = """
import sys, time
import numpy as np
from esan.runtime.io.window import Window

window = Window("esan-rt tiles", max_wh=(1000, 700))
colours = {"a": (0, 0, 255), "b": (0, 255, 0), "c": (255, 0, 0)}  # three streams: red, green, blue
deadline = time.time() + 120
while time.time() < deadline:
    for sid, bgr in colours.items():
        window.publish(sid, np.full((240, 320, 3), bgr, np.uint8), f"#{sid}  status")
    if not window.pump():
        sys.exit(0)  # q pressed
    time.sleep(0.05)
sys.exit(3)
"""


def test_several_streams_tile_in_one_window(tmp_path: Path) -> None:
    with xvfb(tmp_path) as (display, screenshot):
        ok, why = gui_opencv(display)
        # the GUI OpenCV build is a dependency the README promises (--show): a build that cannot open a window
        # is a broken install, not a reason to skip
        assert ok, f"this OpenCV cannot open a window (opencv-python-headless installed over opencv-python?): {why}"
        env = {**os.environ, "DISPLAY": display}
        proc = subprocess.Popen([sys.executable, "-c", TILES_SCRIPT], env=env, stderr=subprocess.PIPE, text=True)
        try:
            def tiles() -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
                shot = screenshot()
                pure = [(shot[..., c] > 200) & (shot[..., (c + 1) % 3] < 60) & (shot[..., (c + 2) % 3] < 60)
                        for c in range(3)]  # blue, green, red pixels
                return (shot, bbox(pure[1])) if all(p.any() for p in pure) else None  # all three are up

            shot, box = wait_painted(tiles, display, "esan-rt tiles", 120, "the three tiles")
            cv2.imwrite(str(tmp_path / "tiles.png"), shot)
            wid = wait_until(lambda: subprocess.run(["xdotool", "search", "--name", "esan-rt tiles"], env=env,
                                                    capture_output=True, text=True).stdout.split(), 30, "the id")[0]
            subprocess.run(["xdotool", "windowfocus", "--sync", wid, "key", "q"], env=env, timeout=30, check=True)
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert rc == 0, proc.stderr.read()[-1500:]
    x0, y0, x1, y1 = box  # below its status bar
    cw, ch = x1 - x0, y1  # one cell: 320x240 (the mosaic is 642 px wide: no upscaling needed)
    assert (cw, ch) == (320, 240) and x0 == 322 and 15 <= y0 <= 40

    def centre(col: int, row: int) -> tuple[int, ...]:
        return tuple(int(v) for v in shot[row * (ch + 2) + ch // 2, col * (cw + 2) + cw // 2])

    assert centre(0, 0) == (0, 0, 255) and centre(1, 0) == (0, 255, 0) and centre(0, 1) == (255, 0, 0)
    assert centre(1, 1) == (32, 32, 32)  # 3 streams in a 2x2 grid: the 4th cell is empty
    for col, row in ((0, 0), (1, 0), (0, 1)):  # each tile has its status line
        y, x = row * (ch + 2), col * (cw + 2)
        assert (shot[y: y + 30, x: x + cw] > 230).all(axis=2).sum() > 40


BIG_SCRIPT = """
import sys, time
import numpy as np
from esan.runtime.io.window import Window, screen_size

print(screen_size(), flush=True)
window = Window("esan-rt big")  # sized from the screen
frame = np.full((1080, 1920, 3), (40, 160, 90), np.uint8)  # a full-HD camera
deadline = time.time() + 120
while time.time() < deadline and window.publish(0, frame, "#0  full HD") and window.pump():
    time.sleep(0.05)
sys.exit(0 if time.time() < deadline else 3)
"""


def test_a_frame_larger_than_the_screen_opens_capped_to_it(tmp_path: Path) -> None:
    with xvfb(tmp_path, size=(1280, 800)) as (display, screenshot):
        ok, why = gui_opencv(display)
        # the GUI OpenCV build is a dependency the README promises (--show): a build that cannot open a window
        # is a broken install, not a reason to skip
        assert ok, f"this OpenCV cannot open a window (opencv-python-headless installed over opencv-python?): {why}"
        env = {**os.environ, "DISPLAY": display}
        proc = subprocess.Popen([sys.executable, "-c", BIG_SCRIPT], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            def picture() -> tuple[int, int, int, int] | None:  # where the frame's colour is on screen
                box = bbox(np.abs(screenshot().astype(int) - (40, 160, 90)).max(axis=2) < 8)
                return box if box is not None and box[2] - box[0] > 300 else None

            box = wait_painted(picture, display, "esan-rt big", 120, "the window")
            wid = wait_until(lambda: subprocess.run(["xdotool", "search", "--name", "esan-rt big"], env=env,
                                                    capture_output=True, text=True).stdout.split(), 30, "the id")[0]
            subprocess.run(["xdotool", "windowfocus", "--sync", wid, "key", "Escape"], env=env, timeout=30,
                           check=True)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err[-1500:]
    assert out.splitlines()[0] == "(1280, 800)"  # read from the X server
    x0, y0, x1, y1 = box  # the picture below its status bar
    assert (x0, x1, y1) == (0, 1152, 648)  # 16:9 kept, 90 % of the screen's width
