"""Letterboxing: boxes, padding after normalisation, and the inverse mapping, on non-square sizes."""

import numpy as np
import pytest

from esan.runtime.core.letterbox import Box, fit_box, letterbox, map_box, normalize, unletterbox, valid_mask


@pytest.mark.parametrize("src", [(480, 640), (360, 480), (720, 1280), (1000, 300), (97, 211)])
@pytest.mark.parametrize("dst", [(256, 320), (64, 96)])
def test_box_keeps_aspect_and_is_centred(src, dst):
    box = fit_box(src, dst)
    assert box.height == dst[0] or box.width == dst[1]
    assert abs(box.width / box.height - src[1] / src[0]) < 2.0 / min(box.height, box.width)
    assert abs((dst[0] - box.height) - 2 * box.top) <= 1 and abs((dst[1] - box.width) - 2 * box.left) <= 1


def test_scaled_box_edges_land_where_the_full_size_edges_do():
    for top in range(0, 40):
        for height in range(1, 41):
            scaled = Box(top, 33, height, 29).scaled(0.5)
            assert scaled.top == round(top * 0.5) and scaled.top + scaled.height == max(
                scaled.top + 1, round((top + height) * 0.5)
            )
            assert scaled.left + scaled.width == round((33 + 29) * 0.5)


def test_padding_is_zero_after_normalisation_and_picture_is_imagenet_normalised():
    img = np.full((30, 90, 3), 200, np.uint8)  # wide picture: padding above and below
    canvas, box = letterbox(img, (64, 96))
    x = normalize(canvas, box)
    assert x.shape == (3, 64, 96) and box.top > 0
    assert np.all(x[:, : box.top] == 0) and np.all(x[:, box.top + box.height :] == 0)
    want = (200 / 255 - 0.485) / 0.229
    assert abs(x[0, box.top + box.height // 2, 48] - want) < 1e-5
    assert valid_mask(box, (64, 96)).sum() == box.height * box.width


def test_unletterbox_inverts_the_map_box():
    frame_hw, in_hw, out_hw = (360, 480), (64, 96), (32, 48)
    box = map_box(frame_hw, in_hw, out_hw)
    sal = np.zeros(out_hw, np.float32)
    sal[box.top : box.top + box.height, box.left : box.left + box.width] = np.linspace(
        0, 1, box.width, dtype=np.float32
    )
    back = unletterbox(sal, box, frame_hw)
    assert back.shape == frame_hw
    assert back[:, :40].mean() < 0.1 and back[:, -40:].mean() > 0.9  # left-to-right ramp survives


# -- exact values against an independent reference (written from the contract, not from the code) -----------
def _ref_box(src, dst):
    sh, sw = src
    dh, dw = dst
    s = min(dh / sh, dw / sw)
    h, w = min(dh, max(1, round(sh * s))), min(dw, max(1, round(sw * s)))
    return (dh - h) // 2, (dw - w) // 2, h, w


@pytest.mark.parametrize("src", [(50, 120), (120, 50), (7, 3), (1, 500), (500, 1), (64, 96), (33, 47)])
def test_fit_box_exact(src):
    box = fit_box(src, (64, 96))
    assert (box.top, box.left, box.height, box.width) == _ref_box(src, (64, 96))


@pytest.mark.parametrize("src", [(0, 5), (5, 0), (-1, 5), (5, -3)])
def test_empty_or_negative_source_is_refused(src):
    with pytest.raises(ValueError, match="empty image"):
        fit_box(src, (64, 96))


@pytest.mark.parametrize("hw", [(50, 120), (130, 60), (20, 31)])  # down- (INTER_AREA) and up-scaling (LINEAR)
@pytest.mark.parametrize("channels", [(3,), ()])
def test_letterbox_and_preprocess_exact(hw, channels):
    import cv2

    from esan.runtime.core.letterbox import preprocess

    rng = np.random.default_rng(sum(hw))
    img = rng.integers(0, 256, (*hw, *channels), dtype=np.uint8)
    top, left, h, w = _ref_box(hw, (64, 96))
    interp = cv2.INTER_AREA if h < hw[0] else cv2.INTER_LINEAR
    want = np.zeros((64, 96, *channels), np.uint8)
    want[top : top + h, left : left + w] = cv2.resize(img, (w, h), interpolation=interp).reshape(h, w, *channels)
    canvas, box = letterbox(img, (64, 96))
    assert canvas.dtype == np.uint8 and np.array_equal(canvas, want)
    assert box == Box(top, left, h, w)
    if channels:
        x, box2 = preprocess(img, (64, 96))
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        ref = ((want / 255.0 - mean) / std).transpose(2, 0, 1)
        ref[:, :top] = ref[:, top + h :] = ref[:, :, :left] = ref[:, :, left + w :] = 0
        assert x.dtype == np.float32 and x.flags.c_contiguous and box2 == box
        assert np.abs(x - ref).max() < 1e-5


def test_valid_mask_exact():
    mask = valid_mask(Box(3, 5, 4, 2), (10, 9))
    assert mask.shape == (10, 9, 1) and mask.dtype == np.uint8
    want = np.zeros((10, 9, 1), np.uint8)
    want[3:7, 5:7] = 1
    assert np.array_equal(mask, want)


def test_letterbox_map_is_float_and_unletterbox_exact():
    import cv2

    from esan.runtime.core.letterbox import letterbox_map

    sal = np.random.default_rng(1).random((40, 70)) * 3  # float64 in
    canvas, box = letterbox_map(sal, (32, 48))
    assert canvas.dtype == np.float32 and canvas.shape == (32, 48) and box == Box(*_ref_box((40, 70), (32, 48)))
    crop = canvas[box.top : box.top + box.height, box.left : box.left + box.width]
    want = cv2.resize(crop, (70, 40), interpolation=cv2.INTER_LINEAR)
    back = unletterbox(canvas.astype(np.float64), box, (40, 70))
    assert back.dtype == np.float32 and back.shape == (40, 70)
    assert np.array_equal(back, want)


def test_scaled_box_never_collapses_and_map_box_uses_the_output_scale():
    assert Box(0, 0, 1, 1).scaled(0.1) == Box(0, 0, 1, 1)
    assert Box(10, 20, 30, 40).scaled(0.5) == Box(5, 10, 15, 20)
    assert Box(3, 5, 7, 9).scaled(0.5) == Box(2, 2, 3, 5)  # edges 3->2(round half even), 10->5; 5->2, 14->7
    assert map_box((50, 120), (64, 96), (32, 48)) == fit_box((50, 120), (64, 96)).scaled(0.5)
    assert map_box((50, 120), (64, 96), (16, 24)) == fit_box((50, 120), (64, 96)).scaled(0.25)
