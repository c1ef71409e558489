"""What the window and the browser view draw: status lines and a mosaic of one tile per stream.

Shared by :mod:`esan.runtime.io.window` and :mod:`esan.runtime.io.live_view`, so both look the same.
Images are BGR ``uint8``; text is drawn *after* scaling, at a size readable at the final resolution.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
GAP = 2  # pixels between tiles
BACKGROUND = (32, 32, 32)


def status_text(stream_id: Hashable, *, fps: float, latency_ms: float, drops: int, frame: int) -> str:
    """One status line: ``#0  24.9 fps  latency 131 ms  drops 2  frame 1834``."""
    return f"#{stream_id}  {fps:4.1f} fps  latency {latency_ms:4.0f} ms  drops {drops}  frame {frame}"


def font_scale(width: int) -> float:
    """A Hershey font scale giving ~13-26 px text on an image ``width`` pixels wide."""
    return float(np.clip(width / 1000.0, 0.5, 1.0))


def draw_status(image: np.ndarray, text: str, *, bottom: bool = False) -> np.ndarray:
    """A dark bar with white ``text`` across the top (or bottom) of ``image``, in place.

    The font scales with the image width (shrunk further, then cut with "...", if the text is wider).
    """
    h, w = image.shape[:2]
    scale = font_scale(w)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    if tw > w - 12:
        scale = max(0.35, scale * (w - 12) / tw)
        while len(text) > 4 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > w - 12:
            text = text[:-4] + "..."
        (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    bar = min(h, th + base + 10)
    y0 = h - bar if bottom else 0
    region = image[y0 : y0 + bar]
    region[:] = (region.astype(np.uint16) * 2 // 7).astype(np.uint8)  # darken to ~30 %
    thick = 2 if scale >= 0.8 else 1
    cv2.putText(image, text, (6, y0 + 5 + th), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return image


def grid_shape(n: int) -> tuple[int, int]:
    """``(rows, cols)`` of a near-square grid for ``n`` tiles (2 side by side, 3-4 in 2x2, 5-6 in 2x3...)."""
    if n < 1:
        raise ValueError(f"need at least one tile, got {n}")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def fit_scale(w: int, h: int, max_wh: tuple[int, int] | None = None, min_w: int = 0) -> float:
    """Scale for a ``w x h`` picture: at least ``min_w`` wide, at most ``max_wh`` (the cap wins)."""
    scale = max(1.0, min_w / w) if min_w else 1.0
    if max_wh is not None:
        scale = min(scale, max_wh[0] / w, max_wh[1] / h)
    return scale


def _into_cell(image: np.ndarray, cw: int, ch: int) -> np.ndarray:
    """``image`` resized into a ``cw x ch`` cell, aspect kept, centred on the background colour."""
    h, w = image.shape[:2]
    s = min(cw / w, ch / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    resized = image if (nw, nh) == (w, h) else cv2.resize(image, (nw, nh), interpolation=interp)
    if (nw, nh) == (cw, ch):
        return resized.copy() if resized is image else resized
    cell = np.full((ch, cw, 3), BACKGROUND, np.uint8)
    y, x = (ch - nh) // 2, (cw - nw) // 2
    cell[y : y + nh, x : x + nw] = resized
    return cell


def tile(
    latest: Mapping[Hashable, np.ndarray],
    labels: Mapping[Hashable, str] | None = None,
    *,
    max_wh: tuple[int, int] | None = None,
    min_w: int = 0,
) -> np.ndarray:
    """One BGR mosaic of the latest image of every stream (``stream_id -> image``), in key order.

    Every cell has the size of the largest image, scaled so the whole mosaic is at least ``min_w``
    wide and fits in ``max_wh``; images keep their aspect. ``labels[stream_id]`` is drawn as the
    tile's status line at the final size. Works for 1..N streams; the inputs are not modified.
    """
    if not latest:
        raise ValueError("tile() needs at least one image")
    keys = sorted(latest, key=lambda k: (str(type(k)), k))
    rows, cols = grid_shape(len(keys))
    cw = max(latest[k].shape[1] for k in keys)
    ch = max(latest[k].shape[0] for k in keys)
    total_w, total_h = cols * cw + (cols - 1) * GAP, rows * ch + (rows - 1) * GAP
    s = fit_scale(total_w, total_h, max_wh, min_w)
    cw, ch = max(1, int((total_w * s - (cols - 1) * GAP) / cols)), max(1, int((total_h * s - (rows - 1) * GAP) / rows))
    mosaic = np.full((rows * ch + (rows - 1) * GAP, cols * cw + (cols - 1) * GAP, 3), BACKGROUND, np.uint8)
    for i, k in enumerate(keys):
        r, c = divmod(i, cols)
        cell = _into_cell(latest[k], cw, ch)
        if labels and labels.get(k):
            draw_status(cell, labels[k])
        y, x = r * (ch + GAP), c * (cw + GAP)
        mosaic[y : y + ch, x : x + cw] = cell
    return mosaic
