"""The generated sample clip (moving shapes over a textured, panning background), frame by frame.

``esan-rt demo`` writes it to a video; the INT8 exporter calibrates on it when no footage is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np

SAMPLE_HW = (360, 480)
SAMPLE_FPS = 25.0


def background(hw: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth coloured texture with a gradient (BGR uint8)."""
    h, w = hw
    noise = rng.random((h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    tex = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.5)
    ramp = np.linspace(0.2, 0.6, w, dtype=np.float32)[None, :, None]
    img = 0.45 * tex + 0.2 * fine + ramp * 0.5
    return np.clip(img * 200.0, 0, 255).astype(np.uint8)


def sample_frames(frames: int, hw: tuple[int, int] = SAMPLE_HW, fps: float = SAMPLE_FPS) -> Iterator[np.ndarray]:
    """``frames`` BGR uint8 pictures of the sample clip (deterministic)."""
    rng = np.random.default_rng(7)
    h, w = hw
    bg = background(hw, rng)
    for i in range(frames):
        s = i / fps
        img = np.roll(bg, int(3 * i), axis=1).copy()  # slow camera pan
        cx, cy = int(w * (0.5 + 0.35 * math.sin(1.3 * s))), int(h * (0.5 + 0.3 * math.sin(2.1 * s + 1)))
        cv2.circle(img, (cx, cy), 28, (30, 40, 230), -1, cv2.LINE_AA)
        x0 = int((40 + 90 * s) % (w + 60)) - 60
        cv2.rectangle(img, (x0, int(h * 0.7)), (x0 + 60, int(h * 0.7) + 40), (240, 220, 20), -1)
        px, py = int(w * 0.25 + 40 * math.cos(3 * s)), int(h * 0.25 + 40 * math.sin(3 * s))
        tri = np.array([[px, py - 22], [px - 20, py + 16], [px + 20, py + 16]], np.int32)
        cv2.fillPoly(img, [tri], (40, 230, 40), cv2.LINE_AA)
        yield img
