"""Saliency overlays: the model-size map back on the original frame as a JET heatmap, in ``uint8``.

Per result the map is resized onto the frame once (``float32``, a single channel) and turned into the
two 8-bit images the outputs need: the absolute map (``round(255 * map)``, the PNG maps) and the
display level (``round(255 * map / peak)``, the overlay). The blend itself runs on ``uint8`` images
with OpenCV primitives (colour LUT, saturating multiply/add): a few milliseconds for a 720p frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from esan.runtime.core.letterbox import Box, unletterbox

ALPHA = 0.6
_WEIGHT_LUTS: dict[float, np.ndarray] = {}


def map_to_frame(saliency: np.ndarray, box: Box, frame_hw: tuple[int, int]) -> np.ndarray:
    """``float32 [h, w]`` map on the original frame (padding cropped, resized back)."""
    return unletterbox(np.asarray(saliency, np.float32), box, frame_hw)


def to_uint8(saliency: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to ``uint8`` 0..255 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(saliency, np.float32) * 255.0), 0, 255).astype(np.uint8)


def display_scale(saliency: np.ndarray) -> np.ndarray:
    """Map scaled to [0, 1] by its maximum, for display only (the model's absolute scale is arbitrary)."""
    peak = float(np.max(saliency)) if saliency.size else 0.0
    return np.asarray(saliency, np.float32) / peak if peak > 0 else np.zeros_like(saliency, np.float32)


def frame_levels(
    saliency: np.ndarray, box: Box, frame_hw: tuple[int, int], *, absolute: bool = True, display: bool = True
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The map on the frame as ``uint8 [h, w]``: ``(absolute, display level)``, each ``None`` unless asked.

    ``absolute`` equals ``to_uint8(map_to_frame(...))``; the display level is scaled by the map's peak
    (``display_scale``). One resize serves both.
    """
    frame_map = map_to_frame(saliency, box, frame_hw)
    absolute_u8 = cv2.convertScaleAbs(frame_map, alpha=255.0) if absolute else None  # rounds and saturates
    level_u8 = None
    if display:
        peak = float(frame_map.max()) if frame_map.size else 0.0
        level_u8 = (cv2.convertScaleAbs(frame_map, alpha=255.0 / peak) if peak > 0
                    else np.zeros(frame_map.shape, np.uint8))  # fmt: skip
    return absolute_u8, level_u8


def _weight_lut(alpha: float) -> np.ndarray:
    if alpha not in _WEIGHT_LUTS:
        _WEIGHT_LUTS[alpha] = np.clip(np.rint(np.arange(256) * alpha), 0, 255).astype(np.uint8)
    return _WEIGHT_LUTS[alpha]


def blend(frame_rgb: np.ndarray, level_u8: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """BGR ``uint8`` frame with the JET colour of ``level_u8`` laid over it, weight ``alpha * level / 255``.

    ``out = frame * (1 - w) + jet(level) * w`` per pixel, in ``uint8`` arithmetic (within 2 of the
    ``float32`` formula): non-salient areas keep the original picture.
    """
    heat = cv2.applyColorMap(level_u8, cv2.COLORMAP_JET)
    weight = cv2.cvtColor(cv2.LUT(level_u8, _weight_lut(alpha)), cv2.COLOR_GRAY2BGR)
    bgr = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    hot = cv2.multiply(heat, weight, scale=1.0 / 255.0)
    cold = cv2.multiply(bgr, cv2.bitwise_not(weight), scale=1.0 / 255.0)
    return cv2.add(hot, cold)


def overlay(frame_rgb: np.ndarray, frame_map: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """BGR ``uint8`` overlay of a ``float32`` map already on the frame (``map_to_frame``), scaled by its peak."""
    peak = float(np.max(frame_map)) if frame_map.size else 0.0
    level = cv2.convertScaleAbs(np.asarray(frame_map, np.float32), alpha=255.0 / peak) if peak > 0 else (
        np.zeros(frame_map.shape, np.uint8))
    return blend(frame_rgb, level, alpha)


def put_status(image_bgr: np.ndarray, text: str) -> np.ndarray:
    """Draw a status line (e.g. fps and latency) in the top-left corner, in place."""
    scale = max(0.4, min(image_bgr.shape[:2]) / 600.0)
    org = (8, int(22 * scale) + 6)
    cv2.putText(image_bgr, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image_bgr, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr
