"""Letterboxing shared by training, export and every runtime backend (numpy + OpenCV, no torch).

The authors resize keeping the aspect ratio, centre the picture and pad with zeros *after*
ImageNet normalisation. Frames are RGB ``uint8 [h, w, 3]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), np.float32)
IMAGENET_STD = np.array((0.229, 0.224, 0.225), np.float32)


@dataclass(frozen=True)
class Box:
    """Where the resized picture sits inside the letterboxed canvas (pixels of that canvas)."""

    top: int
    left: int
    height: int
    width: int

    def scaled(self, factor: float) -> Box:
        """The same box on a canvas ``factor`` times the size (e.g. 0.5 for model outputs).

        Edges are scaled and rounded, then the size derived from them, so the box never grows or
        shrinks by a pixel relative to where its edges land.
        """
        top, left = round(self.top * factor), round(self.left * factor)
        bottom, right = round((self.top + self.height) * factor), round((self.left + self.width) * factor)
        return Box(top, left, max(1, bottom - top), max(1, right - left))


def fit_box(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Box:
    """Largest centred box of the source's aspect ratio that fits the destination."""
    sh, sw = src_hw
    dh, dw = dst_hw
    if sh <= 0 or sw <= 0:
        raise ValueError(f"cannot letterbox an empty image of size {sh}x{sw}")
    scale = min(dh / sh, dw / sw)
    h, w = min(dh, max(1, round(sh * scale))), min(dw, max(1, round(sw * scale)))
    return Box((dh - h) // 2, (dw - w) // 2, h, w)


def letterbox(image: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, Box]:
    """Resize ``image`` (``[h, w]`` or ``[h, w, c]``) into a zero canvas of ``size_hw``; returns it and its box."""
    box = fit_box(image.shape[:2], size_hw)
    interp = cv2.INTER_AREA if box.height < image.shape[0] else cv2.INTER_LINEAR
    resized = cv2.resize(image, (box.width, box.height), interpolation=interp)
    canvas = np.zeros((*size_hw, *image.shape[2:]), image.dtype)
    canvas[box.top : box.top + box.height, box.left : box.left + box.width] = resized.reshape(
        box.height, box.width, *image.shape[2:]
    )
    return canvas, box


def valid_mask(box: Box, size_hw: tuple[int, int]) -> np.ndarray:
    """``uint8 [H, W, 1]``: 1 inside the picture, 0 on the padding."""
    mask = np.zeros((*size_hw, 1), np.uint8)
    mask[box.top : box.top + box.height, box.left : box.left + box.width] = 1
    return mask


def normalize(canvas: np.ndarray, box: Box, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """ImageNet-normalised ``float32 [3, H, W]`` with the padding set to zero after normalisation."""
    x = (canvas.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    x *= valid_mask(box, canvas.shape[:2])
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(image: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, Box]:
    """Letterbox and normalise an RGB frame: ``float32 [3, H, W]`` and its box."""
    canvas, box = letterbox(image, size_hw)
    return normalize(canvas, box), box


def letterbox_map(saliency: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, Box]:
    """Letterbox a 2-D target map (continuous) the same way as its frame."""
    return letterbox(saliency.astype(np.float32), size_hw)


def unletterbox(saliency: np.ndarray, box: Box, original_hw: tuple[int, int]) -> np.ndarray:
    """Crop the picture area of a model-size map and resize it back onto the original frame."""
    crop = saliency[box.top : box.top + box.height, box.left : box.left + box.width]
    return cv2.resize(crop.astype(np.float32), (original_hw[1], original_hw[0]), interpolation=cv2.INTER_LINEAR)


def map_box(frame_hw: tuple[int, int], input_hw: tuple[int, int], output_hw: tuple[int, int]) -> Box:
    """Box of the picture on the model's *output* canvas for a frame of ``frame_hw``."""
    return fit_box(frame_hw, input_hw).scaled(output_hw[0] / input_hw[0])
