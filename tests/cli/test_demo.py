"""``esan-rt demo``: generated clip -> cached ONNX export -> ORT CPU stream -> video, maps, report, plot."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from esan.runtime.cli import demo, main

pytestmark = pytest.mark.usefixtures("shared_cache")  # one bundle cache for the session, one thread


def test_demo_writes_everything(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "esan-demo"
    rc = main(["demo", "--out", str(out), "--frames", "30", "--checkpoint", str(tiny_checkpoint)])
    printed = capsys.readouterr().out
    assert rc == 0
    for name in ("sample.mp4", "overlay.mp4", "report.json", "latency.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert str(out / name) in printed or name == "sample.mp4"
    # a simulated live camera: paced at 25 fps, so a busy machine may drop frames (counted), never lose maps
    done = re.search(r"frames: (\d+) processed, (\d+) dropped", printed)
    assert done and int(done[1]) + int(done[2]) == 30 and int(done[1]) > 0, printed
    assert "latency (capture -> map)" in printed and "p95" in printed
    n = int(done[1])
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == n
    assert (cap.get(cv2.CAP_PROP_FRAME_HEIGHT), cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == demo.SAMPLE_HW
    cap.release()
    maps = sorted((out / "maps").glob("*.png"))
    assert len(maps) == n and maps[0].name == "000000.png"
    assert cv2.imread(str(maps[0]), cv2.IMREAD_UNCHANGED).shape == demo.SAMPLE_HW
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == n and report["dropped_frames"] == 30 - n and report["live"] and report["realtime"]
    assert report["backend"] == "ort" and report["device"] == "cpu" and report["precision"] == "fp32"
    assert report["lookahead"] == 8 and report["delay_frames"] == 10
    assert report["delay_ms"] == pytest.approx(10 * 1000 / demo.SAMPLE_FPS)
    assert report["package_version"] and report["source"].endswith("sample.mp4")
    assert report["latency_ms"]["basis"] == "end_to_end"
    e2e, proc = report["latency_ms"]["end_to_end"], report["latency_ms"]["processing"]
    assert 0 < e2e["p50"] <= e2e["p95"] <= e2e["p99"]
    # capture -> map includes the algorithmic delay (10 frames at 25 fps), processing does not
    assert e2e["p50"] >= 0.9 * report["delay_ms"] and proc["p50"] < e2e["p50"]
    assert {"encode", "align", "decode"} <= set(report["latency_ms"]["stages"])
    assert report["fps"] > 0
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    preview = cv2.imread(str(out / "preview.png"))  # 2x2 contact sheet of overlay frames
    assert preview.shape == (2 * demo.SAMPLE_HW[0], 2 * demo.SAMPLE_HW[1], 3)


def test_demo_without_shipped_bundle_says_so(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(demo, "DEMO_BUNDLE", tmp_path / "missing" / "demo_tiny_L8")
    assert main(["demo", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "demo bundle" in err and "reinstall esan-rt" in err


def test_demo_on_a_given_source(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        cv2.imwrite(str(frames / f"{i:03d}.jpg"), demo._background((40, 64), np.random.default_rng(i)))
    out = tmp_path / "o"
    rc = main(["demo", "--source", str(frames), "--out", str(out), "--frames", "4",
               "--checkpoint", str(tiny_checkpoint)])
    assert rc == 0 and not (out / "sample.mp4").exists()
    assert len(list((out / "maps").glob("*.png"))) == 4
    assert json.loads((out / "report.json").read_text())["frames"] == 4
