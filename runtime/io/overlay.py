"""Saliency overlays: the model-size map back on the original frame as a JET heatmap."""

from __future__ import annotations

import cv2
import numpy as np

from esan.runtime.core.letterbox import Box, unletterbox


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


def overlay(frame_rgb: np.ndarray, frame_map: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """BGR ``uint8`` frame with the JET-coloured map (already on the frame: ``map_to_frame``) laid over it.

    The map is scaled by its maximum; each pixel blends in proportion to its saliency, so
    non-salient areas keep the original picture.
    """
    level = display_scale(frame_map)
    heat = cv2.applyColorMap(to_uint8(level), cv2.COLORMAP_JET).astype(np.float32)
    bgr = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR).astype(np.float32)
    weight = (alpha * level)[..., None]
    return np.clip(bgr * (1.0 - weight) + heat * weight, 0, 255).astype(np.uint8)


def put_status(image_bgr: np.ndarray, text: str) -> np.ndarray:
    """Draw a status line (e.g. fps and latency) in the top-left corner, in place."""
    scale = max(0.4, min(image_bgr.shape[:2]) / 600.0)
    org = (8, int(22 * scale) + 6)
    cv2.putText(image_bgr, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image_bgr, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr
