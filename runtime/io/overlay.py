"""Saliency overlays: the model-size map back on the original frame as a JET heatmap, in ``uint8``.

The overlay is built at the map's resolution and resized once: per map pixel the heat colour
``jet(level)`` premultiplied by its weight ``w = alpha * level`` (``level = map / peak``) and the
share of the frame kept, ``1 - w``; both are resized onto the frame and blended with two saturating
``uint8`` OpenCV calls: ``out = frame * (1 - w) + jet(level) * w``. A handful of calls on the full frame
(a few ms for 720p, and few round trips through the GIL for a writer thread).
The 8-bit PNG map is the map resized onto the frame once and rounded (``frame_map_u8``).
"""

from __future__ import annotations

import cv2
import numpy as np

from esan.runtime.core.letterbox import Box

ALPHA = 0.6


def to_uint8(saliency: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to ``uint8`` 0..255 (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(saliency, np.float32) * 255.0), 0, 255).astype(np.uint8)


def display_scale(saliency: np.ndarray) -> np.ndarray:
    """Map scaled to [0, 1] by its maximum, for display only (the model's absolute scale is arbitrary)."""
    peak = float(np.max(saliency)) if saliency.size else 0.0
    return np.asarray(saliency, np.float32) / peak if peak > 0 else np.zeros_like(saliency, np.float32)


def overlay_layers(saliency: np.ndarray, box: Box, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """At the map's resolution (the picture's box): ``(jet(level) * w, 1 - w)``, both ``uint8 [h, w, 3]`` 0..255."""
    crop = np.asarray(saliency, np.float32)[box.top:box.top + box.height, box.left:box.left + box.width]
    level = display_scale(crop)
    heat = cv2.applyColorMap(to_uint8(level), cv2.COLORMAP_JET).astype(np.float32)
    weight = (alpha * level)[..., None]
    hot = to_uint8(heat * weight / 255.0)
    keep = np.repeat(to_uint8(1.0 - weight), 3, axis=2)
    return hot, keep


class Renderer:
    """Draws overlays and 8-bit maps of one stream into buffers it reuses while the frame size stays the same
    (no fresh megabytes per frame: fewer page faults, less time in the allocator)."""

    def __init__(self, alpha: float = ALPHA) -> None:
        self.alpha = alpha
        self._buffers: dict[str, np.ndarray] = {}

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty(shape, dtype)
        return buf

    def overlay(self, frame_rgb: np.ndarray, saliency: np.ndarray, box: Box) -> np.ndarray:
        """BGR ``uint8`` frame with the model-size map (picture in ``box``) laid over it as a JET heatmap.

        The map is scaled by its peak; each pixel blends in proportion to its saliency, so non-salient
        areas keep the original picture (module docstring). The result lives in a reused buffer: copy it
        to keep it past the next call.
        """
        h, w = frame_rgb.shape[:2]
        hot_small, keep_small = overlay_layers(saliency, box, self.alpha)
        hot = cv2.resize(hot_small, (w, h), dst=self._buffer("hot", (h, w, 3), np.uint8),
                         interpolation=cv2.INTER_LINEAR)  # fmt: skip
        keep = cv2.resize(keep_small, (w, h), dst=self._buffer("keep", (h, w, 3), np.uint8),
                          interpolation=cv2.INTER_LINEAR)  # fmt: skip
        out = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR, dst=self._buffer("out", (h, w, 3), np.uint8))
        cv2.multiply(out, keep, dst=out, scale=1.0 / 255.0)
        return cv2.add(out, hot, dst=out)

    def map_u8(self, saliency: np.ndarray, box: Box, frame_hw: tuple[int, int]) -> np.ndarray:
        """``to_uint8(unletterbox(...))`` in two OpenCV calls (the PNG maps), in a reused buffer."""
        h, w = frame_hw
        crop = np.asarray(saliency, np.float32)[box.top:box.top + box.height, box.left:box.left + box.width]
        frame_map = cv2.resize(crop, (w, h), dst=self._buffer("map", (h, w), np.float32),
                               interpolation=cv2.INTER_LINEAR)  # fmt: skip
        return cv2.convertScaleAbs(frame_map, dst=self._buffer("map_u8", (h, w), np.uint8), alpha=255.0)


def overlay(frame_rgb: np.ndarray, saliency: np.ndarray, box: Box, alpha: float = ALPHA) -> np.ndarray:
    """``Renderer.overlay`` into fresh arrays."""
    return Renderer(alpha).overlay(frame_rgb, saliency, box)


def frame_map_u8(saliency: np.ndarray, box: Box, frame_hw: tuple[int, int]) -> np.ndarray:
    """``to_uint8(unletterbox(...))`` (rounded, saturated) into a fresh array."""
    return Renderer().map_u8(saliency, box, frame_hw)
