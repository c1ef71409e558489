"""``esan-rt stream`` end to end: the maps it writes equal ``ESAN.forward(clip, lookahead=L)``.

Frames go through real files (a PNG folder for bit-exact input, a video read back with OpenCV for the
video path); the reference runs on the frames exactly as decoded. One ONNX export (L=8, cached in a
session-wide ``ESAN_CACHE_DIR``) serves every ORT run: L=8 uses its unrolled ``bwd_window``, L=0/2
the step-by-step backward cell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_clip, reference_maps

from esan.runtime.cli import main

TOL = 1e-4
WINDOW = 5  # 2T + 1 for the tiny preset (T = 2)


pytestmark = pytest.mark.usefixtures("shared_cache")  # one bundle cache for the session, one thread


def write_png_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        assert cv2.imwrite(str(folder / f"frame_{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def smooth_clip(n: int, hw: tuple[int, int] = (50, 120)) -> list[np.ndarray]:
    """Frames that survive a video codec reasonably (smooth noise), still random per frame."""
    return [cv2.GaussianBlur(f, (0, 0), 3) for f in make_clip(n, hw, seed=3)]


def load_maps(folder: Path) -> np.ndarray:
    files = sorted(folder.glob("*.npy"))
    assert [f.stem for f in files] == [f"{i:06d}" for i in range(len(files))]
    return np.stack([np.load(f) for f in files])


def stream(tmp: Path, source: Path, *extra: str) -> tuple[int, Path]:
    maps = tmp / "maps"
    rc = main(["stream", "--source", str(source), "--save-maps", str(maps), "--maps-format", "npy", *extra])
    return rc, maps


def assert_close(got: np.ndarray, ref: np.ndarray) -> None:
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert got.dtype == np.float32
    err = float(np.abs(got - ref).max())
    assert err <= TOL, f"max abs diff {err:.3g} > {TOL}"


@pytest.mark.parametrize("lookahead", [0, 2, 8])
@pytest.mark.parametrize("length", ["short", "long"])
def test_torch_backend_matches_forward(tmp_path, tiny_model, tiny_checkpoint, lookahead, length) -> None:
    n = 4 if length == "short" else WINDOW + lookahead + 3  # shorter / longer than window + lookahead
    frames = make_clip(n, seed=lookahead + n)
    src = write_png_folder(tmp_path / "frames", frames)
    rc, maps = stream(tmp_path, src, "--checkpoint", str(tiny_checkpoint), "--backend", "torch",
                      "--lookahead", str(lookahead))
    assert rc == 0
    assert_close(load_maps(maps), reference_maps(tiny_model, frames, lookahead))


@pytest.mark.parametrize(("lookahead", "n"), [(8, 4), (8, 16), (2, 10), (0, 7)])
def test_ort_backend_matches_forward(tmp_path, tiny_model, tiny_checkpoint, l8_bundle, lookahead, n) -> None:
    frames = make_clip(n, seed=10 + n)
    src = write_png_folder(tmp_path / "frames", frames)
    model = ["--checkpoint", str(tiny_checkpoint)] if lookahead == 8 else ["--bundle", str(l8_bundle)]
    rc, maps = stream(tmp_path, src, *model, "--backend", "ort", "--lookahead", str(lookahead),
                      "--report", str(tmp_path / "r.json"))
    assert rc == 0
    assert_close(load_maps(maps), reference_maps(tiny_model, frames, lookahead))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == n and report["backend"] == "ort" and report["lookahead"] == lookahead
    assert report["delay_frames"] == lookahead + 2 and report["dropped_frames"] == 0


def test_png_maps_at_frame_size(tmp_path, tiny_checkpoint) -> None:
    frames = make_clip(3, hw=(45, 70))
    src = write_png_folder(tmp_path / "frames", frames)
    rc = main(["stream", "--source", str(src), "--checkpoint", str(tiny_checkpoint), "--backend", "torch",
               "--lookahead", "0", "--save-maps", str(tmp_path / "maps"), "--maps-format", "png"])
    assert rc == 0
    pngs = sorted((tmp_path / "maps").glob("*.png"))
    assert [p.name for p in pngs] == ["000000.png", "000001.png", "000002.png"]
    img = cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED)
    assert img.shape == (45, 70) and img.dtype == np.uint8


def test_video_file_subprocess_matches_forward(tmp_path, tiny_model, l8_bundle) -> None:
    """The one real subprocess: a video file decoded by OpenCV, ORT backend, lookahead 2, max-frames."""
    video = tmp_path / "clip.avi"
    hw = (50, 120)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20.0, (hw[1], hw[0]))
    for f in smooth_clip(12, hw):
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    cap = cv2.VideoCapture(str(video))
    decoded = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    assert len(decoded) == 12
    used = decoded[:10]
    maps, report = tmp_path / "maps", tmp_path / "report.json"
    cmd = [sys.executable, "-m", "esan.runtime.cli", "stream", "--source", str(video), "--bundle", str(l8_bundle),
           "--backend", "ort", "--lookahead", "2", "--max-frames", "10", "--save-maps", str(maps),
           "--report", str(report), "--save-video", str(tmp_path / "overlay.mp4")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert "frames: 10 processed" in proc.stdout
    assert_close(load_maps(maps), reference_maps(tiny_model, used, 2))
    rep = json.loads(report.read_text())
    assert rep["frames"] == 10 and rep["source_fps"] == pytest.approx(20.0)
    assert rep["delay_ms"] == pytest.approx(4 * 50.0)
    cap = cv2.VideoCapture(str(tmp_path / "overlay.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 10
    assert (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))) == hw
    cap.release()
