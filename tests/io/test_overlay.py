"""The uint8 overlay and the 8-bit PNG maps against independent float references, on non-square shapes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from esan.runtime.core.letterbox import map_box
from esan.runtime.core.stream_state import StreamResult
from esan.runtime.io.outputs import OutputOptions, Outputs
from esan.runtime.io.overlay import frame_map_u8, overlay
from esan.runtime.io.report import LatencyLog

IN_HW, OUT_HW = (64, 96), (32, 48)
SHAPES = [(720, 1280), (45, 70), (301, 97)]  # wider than, about as wide as, and much taller than the input


def smooth_map(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random(OUT_HW).astype(np.float32), (0, 0), 2) * 0.9


def float_overlay(rgb: np.ndarray, saliency: np.ndarray, box, alpha: float = 0.6) -> np.ndarray:
    """Reference in float64: heat colour and weight per map pixel, bilinear onto the frame, then blended."""
    crop = saliency[box.top:box.top + box.height, box.left:box.left + box.width].astype(np.float64)
    level = crop / crop.max()
    jet = cv2.applyColorMap(np.rint(level * 255).astype(np.uint8), cv2.COLORMAP_JET).astype(np.float64)
    w = alpha * level
    size = (rgb.shape[1], rgb.shape[0])
    hot = cv2.resize((jet * w[..., None]).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    keep = cv2.resize((1.0 - w).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    return rgb[..., ::-1].astype(np.float64) * keep[..., None] + hot


@pytest.mark.parametrize("hw", SHAPES)
def test_overlay_matches_float_reference(hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(hw[0])
    rgb = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    sal = smooth_map(hw[1])
    box = map_box(hw, IN_HW, OUT_HW)
    got = overlay(rgb, sal, box)
    assert got.shape == (*hw, 3) and got.dtype == np.uint8
    err = np.abs(got.astype(np.float64) - float_overlay(rgb, sal, box))
    assert err.max() <= 3.0 and err.mean() < 0.8, (err.max(), err.mean())


def test_overlay_of_an_empty_map_keeps_the_frame() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    out = overlay(rgb, np.zeros(OUT_HW, np.float32), map_box((45, 70), IN_HW, OUT_HW))
    assert np.array_equal(out, rgb[..., ::-1])


@pytest.mark.parametrize("hw", SHAPES)
def test_png_map_is_the_rounded_map_on_the_frame(hw: tuple[int, int], tmp_path: Path) -> None:
    sal = smooth_map(hw[0])
    box = map_box(hw, IN_HW, OUT_HW)
    crop = sal[box.top:box.top + box.height, box.left:box.left + box.width]
    on_frame = cv2.resize(crop, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    ref = np.clip(np.rint(on_frame * 255.0), 0, 255)
    assert np.abs(frame_map_u8(sal, box, hw).astype(np.float64) - ref).max() <= 1.0  # float32 vs float64 rounding
    outputs = Outputs(OutputOptions(maps=tmp_path / "maps", maps_format="png"), {}, fps=25.0)
    result = StreamResult(7, sal, box, {}, None, hw)
    outputs.write(result, np.zeros((*hw, 3), np.uint8), LatencyLog())
    png = cv2.imread(str(tmp_path / "maps" / "000007.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and np.array_equal(png, frame_map_u8(sal, box, hw))  # lossless


def test_maps_and_overlay_video_together_write_every_map_in_order(tmp_path: Path) -> None:
    """With maps and a video, each map file is written on a second thread beside the overlay: all arrive, exact."""
    hw = (45, 70)
    opts = OutputOptions(maps=tmp_path / "maps", maps_format="png", video=tmp_path / "out.mp4")
    outputs = Outputs(opts, {}, fps=25.0)
    rng = np.random.default_rng(3)
    sals = [smooth_map(i) for i in range(6)]
    box = map_box(hw, IN_HW, OUT_HW)
    for i, sal in enumerate(sals):
        outputs.write(StreamResult(i, sal, box, {}, None, hw), rng.integers(0, 256, (*hw, 3), dtype=np.uint8),
                      LatencyLog())
        assert outputs.maps_written == i + 1  # write returns only when the map file is done too
    outputs.finish()
    assert outputs.video_frames == 6 and outputs._maps_thread is None
    for i, sal in enumerate(sals):
        png = cv2.imread(str(tmp_path / "maps" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(png, frame_map_u8(sal, box, hw)), i
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6


def test_a_failed_map_write_beside_the_video_raises_from_write(tmp_path: Path) -> None:
    hw = (45, 70)
    opts = OutputOptions(maps=tmp_path / "maps", maps_format="png", video=tmp_path / "out.mp4")
    outputs = Outputs(opts, {}, fps=25.0)
    box = map_box(hw, IN_HW, OUT_HW)
    (tmp_path / "maps").rmdir()  # the folder went away after the checks: imwrite fails on the maps thread
    with pytest.raises(Exception, match="could not write"):
        outputs.write(StreamResult(0, smooth_map(0), box, {}, None, hw), np.zeros((*hw, 3), np.uint8), LatencyLog())
    assert outputs.video_frames == 1  # the overlay went on meanwhile
    outputs.finish()
