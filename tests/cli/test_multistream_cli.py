"""``esan-rt stream`` with several ``--source`` / ``--camera``: one scheduler, per-stream outputs and report.

Every stream's maps equal a single-stream run of the same source (fp32, ORT, <= 1e-4), for clips of
different sizes and lengths; a source that fails mid-way ends only its own stream; paths without
``{stream}`` are refused before anything starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_clip, reference_maps
from test_stream_cli import assert_close, load_maps, write_png_folder

from esan.runtime.cli import main

LOOKAHEAD = "2"


pytestmark = pytest.mark.usefixtures("shared_cache")  # one bundle cache for the session, one thread


def write_video(path: Path, frames: list[np.ndarray], fps: float = 20.0) -> list[np.ndarray]:
    """An MJPG clip; returns the frames as OpenCV decodes them."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    cap, decoded = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]:
        decoded.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    cap.release()
    return decoded


def stream(*argv: str) -> int:
    return main(["stream", "--backend", "ort", "--lookahead", LOOKAHEAD, *argv])


def test_three_streams_equal_single_stream_runs(tmp_path: Path, l8_bundle: Path) -> None:
    clips = [
        write_png_folder(tmp_path / "a", make_clip(9, (40, 70), seed=1)),
        write_png_folder(tmp_path / "b", make_clip(14, (50, 120), seed=2)),
        tmp_path / "c.avi",
    ]
    decoded = write_video(clips[2], [cv2.GaussianBlur(f, (0, 0), 2) for f in make_clip(6, (72, 56), seed=3)])
    assert len(decoded) == 6
    bundle = ["--bundle", str(l8_bundle)]
    sources = [a for c in clips for a in ("--source", str(c))]
    rc = stream(*sources, *bundle, "--save-maps", str(tmp_path / "maps"), "--report", str(tmp_path / "r.json"),
                "--save-video", str(tmp_path / "v_{stream}.mp4"), "--max-batch-wait-ms", "3")
    assert rc == 0
    for i, clip in enumerate(clips):
        assert stream("--source", str(clip), *bundle, "--save-maps", str(tmp_path / f"single{i}")) == 0
        single = load_maps(tmp_path / f"single{i}")
        assert_close(load_maps(tmp_path / "maps" / str(i)), single)
        assert len(single) == (9, 14, 6)[i]
        cap = cv2.VideoCapture(str(tmp_path / f"v_{i}.mp4"))
        assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == len(single)
        cap.release()
    report = json.loads((tmp_path / "r.json").read_text())
    agg, per = report["aggregate"], report["streams"]
    assert report["backend"] == "ort" and report["lookahead"] == 2 and report["delay_frames"] == 4
    assert agg["streams"] == 3 and agg["frames"] == 29 and agg["dropped_frames"] == 0 and agg["fps"] > 0
    assert agg["latency_ms"]["processing"]["p50"] > 0 and agg["latency_ms"]["end_to_end"] is None
    assert [s["stream"] for s in per] == [0, 1, 2] and [s["frames"] for s in per] == [9, 14, 6]
    assert [Path(s["source"]).name for s in per] == ["a", "b", "c.avi"]
    for s in per:
        assert s["stop_reason"] == "end of stream" and s["latency_ms"]["basis"] == "processing"
        assert s["memory"]["scheduler_peak_bytes"] > 0 and len(s["per_frame"]["processing_ms"]) == s["frames"]
        assert s["outputs"]["maps_written"] == s["frames"] == s["outputs"]["video_frames"]


class FakeCamera:
    """``cv2.VideoCapture`` of a camera: frames 1..5 (constant images 24x32), then it is unplugged."""

    def __init__(self, *args: object) -> None:
        self.n = 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def read(self, image: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]:
        self.n += 1
        return (True, np.full((24, 32, 3), 40 * self.n, np.uint8)) if self.n <= 5 else (False, None)

    def get(self, prop: int) -> float:
        return 30.0

    def release(self) -> None:
        pass


def test_failing_sources_end_only_their_stream(tmp_path: Path, tiny_model, l8_bundle: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A camera unplugged after 4 frames (``--reconnect off``) and a folder with a corrupt frame end alone; a clean
    folder goes on. Sources that failed for good: exit status 1."""
    from esan.runtime.io import sources

    monkeypatch.setattr(sources.cv2, "VideoCapture", FakeCamera)
    clean = make_clip(12, (50, 90), seed=5)
    broken = make_clip(8, (60, 40), seed=6)
    write_png_folder(tmp_path / "clean", clean)
    write_png_folder(tmp_path / "broken", broken)
    (tmp_path / "broken" / "frame_0005.png").write_bytes(b"not a png")
    rc = stream("--source", str(tmp_path / "clean"), "--camera", "0", "--source", str(tmp_path / "broken"),
                "--bundle", str(l8_bundle), "--queue-size", "16", "--save-maps", str(tmp_path / "maps"),
                "--report", str(tmp_path / "r.json"), "--reconnect", "off")
    assert rc == 1
    per = json.loads((tmp_path / "r.json").read_text())["streams"]
    assert per[0]["stop_reason"] == "end of stream" and per[0]["frames"] == 12
    assert per[1]["source_kind"] == "camera" and per[1]["stop_reason"] == "source disconnected"
    assert "camera 0 disconnected; reconnect is off" in per[1]["source_error"] and per[1]["frames"] == 4
    assert per[2]["stop_reason"] == "source disconnected" and "frame_0005" in per[2]["source_error"]
    camera = [np.full((24, 32, 3), 40 * n, np.uint8) for n in range(2, 6)]  # the probe frame is dropped
    for i, frames in enumerate((clean, camera, broken[:5])):  # every stream flushed up to its last frame
        assert_close(load_maps(tmp_path / "maps" / str(i)), reference_maps(tiny_model, frames, int(LOOKAHEAD)))


def test_paths_without_stream_field_refused_before_anything(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    frames = write_png_folder(tmp_path / "f", make_clip(2, (20, 30)))
    for flag in ("--save-video", "--plot"):
        out = tmp_path / f"out{flag}.png"
        rc = main(["stream", "--source", str(frames), "--camera", "99", flag, str(out), "--checkpoint",
                   str(tmp_path / "missing.pt")])  # fmt: skip
        err = capfd.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "{stream}" in err[0] and flag in err[0], err
        assert "camera" not in err[0] and "checkpoint" not in err[0] and not out.exists()
    assert main(["stream", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "give a source" in capfd.readouterr().err
