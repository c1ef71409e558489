"""Live sources that come back, against a real RTSP camera (GStreamer's RTSP server, ``tests/support/rtsp_camera.py``).

The camera is taken away for a few seconds, or stalled (connected, no frames), while ``esan-rt stream``
runs in a child process: the stream reconnects, maps resume with frame numbers that count the lost
frames, the gap is reported, and a second camera in the same process loses nothing.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from conftest import BUNDLE_LOOKAHEAD
from support.rtsp_camera import RtspCamera, missing
from support.viewtools import Cli, wait_until

from esan.runtime.io.reconnect import ReconnectPolicy, parse_policy

WHY = missing()
rtsp = pytest.mark.skipif(WHY is not None, reason=WHY or "")


@pytest.fixture
def cameras(tmp_path: Path):
    cams = [RtspCamera(tmp_path / f"cam{i}.log", fps=10) for i in range(2)]
    try:
        yield cams
    finally:
        for cam in cams:
            cam.stop()


def _stream(tmp_path: Path, bundle: Path, urls: list[str], *extra: str) -> Cli:
    args = [a for url in urls for a in ("--source", url)]
    return Cli("stream", *args, "--bundle", str(bundle), "--lookahead", str(BUNDLE_LOOKAHEAD), "--threads", "1",
               "--save-maps", str(tmp_path / "maps"), "--report", str(tmp_path / "r.json"),
               "--reconnect-max-delay", "2", *extra)


def _indices(folder: Path) -> list[int]:
    return sorted(int(p.stem) for p in folder.glob("*.npy"))


def _wait_maps(cli: Cli, folder: Path, n: int) -> None:
    def enough() -> bool:
        if cli.proc.poll() is not None:
            raise AssertionError(f"exited {cli.proc.returncode}: {''.join(cli.err)[-2000:]}")
        return len(_indices(folder)) >= n

    wait_until(enough, 300, f"{n} maps in {folder}")


def _contiguous(values: list[int]) -> bool:
    return values == list(range(values[0], values[0] + len(values))) if values else True


def test_policy_backoff_and_its_refusals() -> None:
    p = parse_policy("3", stall_timeout_s=2, max_delay_s=5)
    assert [p.delay(a) for a in range(1, 6)] == [1, 2, 4, 5, 5]
    assert not p.gives_up(3) and p.gives_up(4)
    assert parse_policy("forever") == ReconnectPolicy(None, 10.0) and not parse_policy("forever").gives_up(10**6)
    assert parse_policy("off").gives_up(1)
    for bad in ("0", "-1", "sometimes"):
        with pytest.raises(Exception, match="--reconnect must be"):
            parse_policy(bad)


@rtsp
def test_camera_outage_reconnects_reports_the_gap_and_the_other_camera_loses_nothing(
        tmp_path: Path, tiny_bundle: Path, cameras: list[RtspCamera]) -> None:  # fmt: skip
    a, b = (cam.start() for cam in cameras)
    cli = _stream(tmp_path, tiny_bundle, [a.url, b.url], "--stall-timeout", "3")
    try:
        _wait_maps(cli, tmp_path / "maps" / "0", 10)
        _wait_maps(cli, tmp_path / "maps" / "1", 10)
        a.stop()
        time.sleep(4)
        a.start()
        wait_until(lambda: "reconnected" in "".join(cli.err), 120, "the reconnect")
        after = len(_indices(tmp_path / "maps" / "0"))
        _wait_maps(cli, tmp_path / "maps" / "0", after + 10)
    finally:
        cli.proc.send_signal(signal.SIGTERM)
        rc, _ = cli.finish()
    err = "".join(cli.err)
    assert rc == 0, err[-2000:]
    assert "stream 0: stream rtsp://127.0.0.1" in err and "reconnect attempt 1 in 1 s" in err
    report = json.loads((tmp_path / "r.json").read_text())
    s0, s1 = report["streams"]
    assert s0["reconnects"] == 1 and len(s0["gaps"]) == 1, s0["gaps"]
    gap = s0["gaps"][0]
    assert gap["seconds"] >= 3.5 and gap["frames_lost"] >= 20 and gap["reason"] == "disconnected"
    assert gap["end"] - gap["start"] == pytest.approx(gap["seconds"], abs=1e-2)
    got = _indices(tmp_path / "maps" / "0")
    before, resumed = [i for i in got if i < gap["resumed_at_frame"]], [i for i in got if i >= gap["resumed_at_frame"]]
    assert _contiguous(before) and before[0] == 0 and len(resumed) >= 10 and _contiguous(resumed)
    assert resumed[0] == gap["resumed_at_frame"] == before[-1] + 1 + gap["frames_lost"]  # numbers count the lost
    assert len(got) == s0["frames"] == s0["frames_pushed"]  # both segments flushed to their last frame
    assert json.loads((tmp_path / "maps" / "0" / "index.json").read_text())["gaps"] == s0["gaps"]
    assert s1["gaps"] == [] and s1["reconnects"] == 0 and s1["stop_reason"] == "stopped (SIGTERM)"
    other = _indices(tmp_path / "maps" / "1")
    assert _contiguous(other) and other[0] == 0 and len(other) == s1["frames_pushed"]
    assert not (tmp_path / "maps" / "1" / "index.json").exists()


@rtsp
def test_a_stalled_camera_is_an_outage_too(tmp_path: Path, tiny_bundle: Path, cameras: list[RtspCamera]) -> None:
    cam = cameras[0].start()
    cli = _stream(tmp_path, tiny_bundle, [cam.url], "--stall-timeout", "2")
    try:
        _wait_maps(cli, tmp_path / "maps", 10)
        cam.pause()  # connected, no frames
        wait_until(lambda: "stalled (no frame for 2 s)" in "".join(cli.err), 120, "the stall")
        time.sleep(1)
        cam.resume()
        wait_until(lambda: "reconnected" in "".join(cli.err), 120, "the reconnect")
        after = len(_indices(tmp_path / "maps"))
        _wait_maps(cli, tmp_path / "maps", after + 5)
    finally:
        cli.proc.send_signal(signal.SIGTERM)
        rc, _ = cli.finish()
    assert rc == 0, "".join(cli.err)[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["reconnects"] == 1 and report["gaps"][0]["reason"] == "stalled (no frame for 2 s)"
    assert report["gaps"][0]["seconds"] >= 2.0


@rtsp
def test_reconnect_off_ends_the_stream_flushed_with_a_failure_status(tmp_path: Path, tiny_bundle: Path,
                                                                      cameras: list[RtspCamera]) -> None:
    cam = cameras[0].start()
    cli = _stream(tmp_path, tiny_bundle, [cam.url], "--reconnect", "off")
    try:
        _wait_maps(cli, tmp_path / "maps", 5)
        cam.stop()
        rc, _ = cli.finish(timeout=120)
    finally:
        if cli.proc.poll() is None:
            cli.proc.kill()
    assert rc == 1, "".join(cli.err)[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["stop_reason"] == "source disconnected" and "reconnect is off" in report["source_error"]
    assert report["reconnects"] == 0 and report["frames"] == report["frames_pushed"] == len(_indices(tmp_path / "maps"))
