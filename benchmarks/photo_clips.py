"""Clips made from real photographs: a virtual camera pans and zooms over a still picture.

No real video can be fetched on the build machines, but real photographs ship inside packages:
scikit-image's ``skimage.data`` (astronaut, coffee, rocket, a cat, ...; ``pip install scikit-image``) and
matplotlib's sample data (Grace Hopper). A clip keeps each photograph's real content and statistics; the
motion is a smooth camera move (no independently moving objects), which is what the figures say.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from esan.runtime.core.errors import UserError

CALIBRATION_PHOTOS = ("astronaut", "coffee", "rocket", "motorcycle")
HELD_OUT_PHOTOS = ("chelsea", "grace_hopper", "camera")


def load_photo(name: str) -> np.ndarray:
    """RGB uint8 of a packaged photograph (``skimage.data.<name>`` or matplotlib's ``grace_hopper``)."""
    if name == "grace_hopper":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            data = np.frombuffer(f.read(), np.uint8)
        return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    try:
        import skimage.data
    except ImportError as exc:
        raise UserError("the photo clips need scikit-image's sample photographs: pip install scikit-image") from exc
    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def camera_clip(photo: np.ndarray, frames: int, hw: tuple[int, int] = (288, 384), seed: int = 0) -> list[np.ndarray]:
    """``frames`` RGB frames of size ``hw``: a crop window that pans across ``photo`` while zooming in/out."""
    rng = np.random.default_rng(seed)
    ph, pw = photo.shape[:2]
    h, w = hw
    base = min(ph / h, pw / w)  # crop scale at which the window just fits the photo
    z0, z1 = rng.uniform(0.6, 0.8), rng.uniform(0.75, 0.95)
    a0, a1 = rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)  # start / end position of the window centre (fraction)
    out = []
    for i in range(frames):
        s = i / max(frames - 1, 1)
        s = 0.5 - 0.5 * np.cos(np.pi * s)  # ease in / out
        zoom = base * (z0 + (z1 - z0) * s)
        ch, cw = h * zoom, w * zoom
        fy, fx = a0 + (a1 - a0) * s
        cy = ch / 2 + fy * (ph - ch)
        cx = cw / 2 + fx * (pw - cw)
        m = np.array([[1 / zoom, 0, w / 2 - cx / zoom], [0, 1 / zoom, h / 2 - cy / zoom]], np.float32)
        out.append(cv2.warpAffine(photo, m, (w, h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT))
    return out


def photo_clips(names: tuple[str, ...], frames: int, hw: tuple[int, int] = (288, 384)) -> dict[str, list[np.ndarray]]:
    return {n: camera_clip(load_photo(n), frames, hw, seed=i) for i, n in enumerate(names)}


def write_folder(clips: dict[str, list[np.ndarray]], folder: Path) -> Path:
    """All clips one after another as numbered PNGs (a calibration ``--calib DIR``)."""
    folder.mkdir(parents=True, exist_ok=True)
    i = 0
    for clip in clips.values():
        for f in clip:
            cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            i += 1
    return folder
