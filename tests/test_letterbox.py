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
