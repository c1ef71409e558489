"""The browser view on real streams: the pipeline's overlays over MJPEG, headless Chromium, the demo.

Clips are grey (see ``viewtools.gray_clip``), so coloured pixels on a page or in a part are the heatmap.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import BUNDLE_LOOKAHEAD
from support.viewtools import (
    CHROMIUM,
    Cli,
    chromium_screenshot,
    colour_fraction,
    get_json,
    gray_clip,
    read_mjpeg,
    wait_until,
)

HW = (240, 320)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("grey")
    return {"short": gray_clip(d / "short.mp4", 40, HW), "long": gray_clip(d / "long.mp4", 1500, HW)}


def on_page(shot: np.ndarray) -> float:
    """Fraction of the picture area (below the header, above the status list) that is not page background."""
    return float(np.mean(np.abs(shot[60:620].astype(int) - 22).sum(axis=2) > 30))


def shoot(url: str, out: Path) -> np.ndarray:
    """A screenshot once the picture is in (a busy machine may need longer than the first wait)."""
    for wait_ms in (2500, 6000, 12000):
        shot = chromium_screenshot(url, out, wait_ms=wait_ms)
        if on_page(shot) > 0.2:
            break
    return shot


def frames_served(url: str) -> int:
    streams = get_json(url + "status.json")["streams"]
    return streams[0]["frames"] if streams else 0


def test_the_pipeline_serves_its_overlays_while_a_viewer_stalls(tiny_bundle: Path, clips: dict[str, Path]) -> None:
    import esan.runtime
    from esan.runtime.io.outputs import OutputOptions, Outputs
    from esan.runtime.io.pipeline import run_stream
    from esan.runtime.io.sources import open_source
    from esan.runtime.io.viewers import open_viewers

    scheduler = esan.runtime.open(bundle=tiny_bundle, backend="ort", device="cpu", lookahead=BUNDLE_LOOKAHEAD)
    source = open_source(source=str(clips["short"]))  # a file: every frame is processed
    viewers, _ = open_viewers(False, 0, "127.0.0.1", "grey clip")
    outputs = Outputs(OutputOptions(view_port=0), {}, fps=source.fps, title="grey clip", display=viewers)
    view = viewers.live
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(view.address)
    stalled.sendall(b"GET /mosaic.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # never reads
    got: list[np.ndarray] = []
    reader = threading.Thread(target=lambda: got.extend(read_mjpeg(view.url + "mosaic.mjpg", 10**6)))
    reader.start()
    wait_until(lambda: view.stats()["viewers"] == 2, 20, "both viewers to connect")
    try:
        summary = run_stream(source, scheduler, outputs, display=viewers)  # closes the live view at the end
    finally:
        scheduler.shutdown()
    reader.join(timeout=30)
    stalled.close()
    stats = view.stats()
    print(f"\nstream: {summary.frames} maps at {summary.fps:.1f} fps; reading viewer got {len(got)}, "
          f"stalled viewer {stats['sent'] - len(got)}")
    assert summary.frames == 40 and summary.stop_reason == "end of stream" and stats["published"] == 40
    assert stats["sent"] - len(got) < 40  # what no longer fitted in its socket was dropped, not queued
    assert len(got) >= 3 and all(f.shape == (*HW, 3) for f in got)
    assert min(colour_fraction(f[30:]) for f in got) > 0.05  # the heatmap is on every part (frames are grey)
    assert max(float(np.abs(a.astype(int) - b).mean()) for a, b in zip(got, got[1:], strict=False)) > 1.0


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (/usr/bin/chromium): "
                    "apt-get install chromium (.ci/run installs it where apt-get exists)")
def test_headless_chromium_shows_the_live_overlay_and_it_moves(tmp_path: Path, tiny_bundle: Path,
                                                                clips: dict[str, Path]) -> None:
    cli = Cli("stream", "--source", str(clips["long"]), "--bundle", str(tiny_bundle), "--lookahead",
              str(BUNDLE_LOOKAHEAD), "--realtime", "--view-port", "0")
    try:
        url = cli.url()
        assert url.startswith("http://127.0.0.1:")
        wait_until(lambda: frames_served(url) >= 3, 120, "the first maps")
        first = shoot(url, tmp_path / "page1.png")
        seen = frames_served(url)
        wait_until(lambda: frames_served(url) >= seen + 10, 120, "ten more maps")
        second = shoot(url, tmp_path / "page2.png")
        dom = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              f"--user-data-dir={tmp_path / 'dom-profile'}", "--timeout=2500", "--dump-dom", url],
                             capture_output=True, text=True, timeout=120).stdout
    finally:
        cli.proc.send_signal(signal.SIGINT)  # Ctrl-C: flushed, finalised, server closed
        rc, out = cli.finish()
    assert rc == 130 and "interrupted" in out, out
    for shot in (first, second):
        assert on_page(shot) > 0.2 and colour_fraction(shot[60:620]) > 0.03  # the mosaic, with the heatmap
    assert float(np.abs(first[60:620].astype(int) - second[60:620]).mean()) > 1.0  # and it moves
    assert "live: 1 stream" in dom and "latency" in dom and "/stream/0.mjpg" in dom
    with pytest.raises(OSError):  # the server went with the stream
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))), timeout=2)


def test_demo_serves_its_live_view_while_it_plays(tmp_path: Path, tiny_checkpoint: Path,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = tmp_path_factory.getbasetemp() / "esan-cache"  # shared with test_demo / test_stream_cli
    out = tmp_path / "demo"
    cli = Cli("demo", "--out", str(out), "--frames", "100", "--checkpoint", str(tiny_checkpoint),
              "--view-port", "0", env={"ESAN_CACHE_DIR": str(cache)})
    try:
        url = cli.url()
        parts = read_mjpeg(url + "mosaic.mjpg", 2)
    finally:
        rc, printed = cli.finish(timeout=300)
    assert rc == 0, "".join(cli.err)[-2000:]
    assert len(parts) == 2 and parts[0].shape[:2] == (360, 480)
    report = json.loads((out / "report.json").read_text())
    assert report["realtime"] is True and report["frames"] >= 1  # played at the clip's rate, as live
    assert "overlay video" in printed
