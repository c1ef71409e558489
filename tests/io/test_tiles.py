"""The mosaic both viewers draw: one tile per stream, aspect kept, status lines readable, size capped."""

from __future__ import annotations

import numpy as np
import pytest

from esan.runtime.io.tiles import GAP, draw_status, fit_scale, grid_shape, status_text, tile


def solid(h: int, w: int, bgr: tuple[int, int, int]) -> np.ndarray:
    return np.full((h, w, 3), bgr, np.uint8)


@pytest.mark.parametrize(("n", "shape"), [(1, (1, 1)), (2, (1, 2)), (3, (2, 2)), (4, (2, 2)), (5, (2, 3)),
                                          (7, (3, 3)), (10, (3, 4))])
def test_grid_shape(n: int, shape: tuple[int, int]) -> None:
    rows, cols = grid_shape(n)
    assert (rows, cols) == shape and rows * cols >= n and (rows - 1) * cols < n


def test_one_stream_is_the_frame_itself_at_its_size() -> None:
    img = solid(90, 160, (10, 200, 30))
    out = tile({0: img})
    assert out.shape == img.shape and np.array_equal(out, img) and out is not img


def test_tiles_place_every_stream_in_key_order_and_keep_aspect() -> None:
    colours = {3: (255, 0, 0), 1: (0, 255, 0), 2: (0, 0, 255)}
    images = {k: solid(60, 100, c) for k, c in colours.items()}
    images[2] = solid(100, 60, colours[2])  # portrait: letterboxed into its cell
    before = {k: v.copy() for k, v in images.items()}
    out = tile(images)
    ch, cw = 100, 100  # cells take the largest height and width
    assert out.shape == (2 * ch + GAP, 2 * cw + GAP, 3)
    cells = [out[r * (ch + GAP): r * (ch + GAP) + ch, c * (cw + GAP): c * (cw + GAP) + cw] for r in range(2)
             for c in range(2)]
    for cell, key in zip(cells, (1, 2, 3), strict=False):  # sorted keys, row by row
        centre = cell[ch // 2, cw // 2]
        assert tuple(int(v) for v in centre) == colours[key], key
    assert tuple(cells[0][5, 50]) == (32, 32, 32)  # landscape 100x60 in a 100x100 cell: bars above/below
    assert tuple(cells[1][50, 5]) == (32, 32, 32)  # portrait 60x100: bars left/right
    assert all(np.array_equal(images[k], before[k]) for k in images)  # inputs untouched


def test_mosaic_fits_the_cap_and_grows_to_the_minimum_width() -> None:
    images = {i: solid(1080, 1920, (i * 40, 90, 200)) for i in range(5)}
    out = tile(images, max_wh=(1280, 700))
    assert out.shape[1] <= 1280 and out.shape[0] <= 700
    small = tile({"cam": solid(120, 160, (0, 0, 0))}, min_w=640, max_wh=(2000, 2000))
    assert small.shape[:2] == (480, 640)
    capped = tile({"cam": solid(120, 160, (0, 0, 0))}, min_w=640, max_wh=(400, 400))
    assert capped.shape[:2] == (300, 400)  # the cap wins over the minimum width
    assert fit_scale(200, 100, (100, 100), min_w=800) == 0.5


def test_status_line_is_drawn_readably_and_labels_each_tile() -> None:
    text = status_text(1, fps=24.93, latency_ms=131.2, drops=2, frame=1834)
    assert text == "#1  24.9 fps  latency  131 ms  drops 2  frame 1834"
    img = solid(360, 480, (200, 200, 200))
    draw_status(img, text)
    bar = img[:24]
    bright = (bar > 230).all(axis=2)
    assert bright.sum() > 150 and bright.any(axis=1).sum() >= 10  # white text, >= 10 px tall
    assert bar.mean() < 150 and img[200:].mean() == 200  # darkened bar, picture untouched below it
    out = tile({0: solid(360, 480, (200, 200, 200)), 1: solid(360, 480, (200, 200, 200))},
               {0: "stream zero", 1: ""})
    left, right = out[:24, :480], out[:24, 480 + GAP:]
    assert (left > 230).all(axis=2).sum() > 50 and right.min() == 200  # only the labelled tile has a bar


def test_long_status_text_is_shrunk_to_fit() -> None:
    img = solid(100, 160, (0, 0, 0))
    draw_status(img, "x" * 200)
    assert (img[:, -3:] == 0).all()  # nothing drawn past the right margin
    assert (img[:20, 6:150] > 230).any()  # but drawn
