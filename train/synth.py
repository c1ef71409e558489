"""A small synthetic saliency dataset in the docs/design.md layout (``OUT/synth/<split>/<video>/...``).

Each video: a textured background (blurred noise plus stripes), static distractors (dull squares)
and moving discs that appear, bounce around and disappear. Simulated observers look at the moving
discs (Gaussian scatter around their centres, a few random glances; near the centre when nothing
moves). Fixations are written as binary maps (``.mat`` with key ``I`` for even-numbered videos,
``.png`` for odd ones, so both readers are exercised); the continuous maps are the fixations blurred
with a Gaussian. Everything is deterministic from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from esan.train.errors import UserError


@dataclass(frozen=True)
class SynthSpec:
    videos: int = 12
    test_videos: int = 4
    frames: int = 30
    size: tuple[int, int] = (120, 160)
    seed: int = 0
    observers: int = 12


def parse_size(text: str) -> tuple[int, int]:
    """``"HxW"`` -> (H, W)."""
    m = text.lower().split("x")
    try:
        h, w = int(m[0]), int(m[1])
        if len(m) != 2 or h < 16 or w < 16:
            raise ValueError
    except (ValueError, IndexError):
        raise UserError(f"--size must be HxW with both sides >= 16 (e.g. 120x160), got {text!r}") from None
    return h, w


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    noise = rng.random((max(h // 8, 2), max(w // 8, 2), 3)).astype(np.float32)
    base = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta, period = rng.uniform(0, np.pi), rng.uniform(6, 20)
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period)
    tint = rng.uniform(0.3, 0.7, 3).astype(np.float32)
    bg = 0.55 * base * tint + 0.15 * stripes[..., None] + 0.1
    return np.clip(bg * 255, 0, 255).astype(np.uint8)


@dataclass
class _Mover:
    y: float
    x: float
    vy: float
    vx: float
    r: int
    color: tuple[int, int, int]
    birth: int
    death: int


def _movers(rng: np.random.Generator, n_frames: int, h: int, w: int) -> list[_Mover]:
    out = []
    for k in range(int(rng.integers(1, 4))):
        r = int(rng.integers(max(h // 14, 3), max(h // 8, 4) + 1))
        speed = rng.uniform(1.5, 4.0)
        ang = rng.uniform(0, 2 * np.pi)
        color = tuple(int(c) for c in rng.permutation([255, int(rng.integers(0, 120)), int(rng.integers(120, 255))]))
        # the first mover lives (almost) all the time, the others appear and disappear
        birth = 0 if k == 0 else int(rng.integers(0, max(n_frames // 2, 1)))
        death = n_frames if k == 0 else int(rng.integers(birth + 1, n_frames + 1))
        out.append(_Mover(rng.uniform(r, h - r), rng.uniform(r, w - r), speed * np.sin(ang), speed * np.cos(ang),
                          r, color, birth, death))
    return out


def _step(m: _Mover, h: int, w: int) -> None:
    m.y += m.vy
    m.x += m.vx
    if not m.r <= m.y <= h - m.r:
        m.vy = -m.vy
        m.y = float(np.clip(m.y, m.r, h - m.r))
    if not m.r <= m.x <= w - m.r:
        m.vx = -m.vx
        m.x = float(np.clip(m.x, m.r, w - m.r))


def make_video(rng: np.random.Generator, n_frames: int, size: tuple[int, int], observers: int = 12):
    """Frames (RGB uint8), binary fixation maps and continuous maps (uint8) of one video."""
    h, w = size
    bg = _background(rng, h, w)
    for _ in range(int(rng.integers(1, 4))):  # static distractors: dull squares
        s = int(rng.integers(max(h // 10, 3), max(h // 6, 4) + 1))
        y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
        grey = int(rng.integers(60, 200))
        cv2.rectangle(bg, (x, y), (x + s, y + s), (grey, grey, int(grey * 0.9)), -1)
    movers = _movers(rng, n_frames, h, w)
    sigma = max(h, w) / 24
    frames, fixes, maps = [], [], []
    for t in range(n_frames):
        img = bg.copy()
        visible = [m for m in movers if m.birth <= t < m.death]
        for m in visible:
            cv2.circle(img, (round(m.x), round(m.y)), m.r, m.color, -1, lineType=cv2.LINE_AA)
        img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
        fix = np.zeros((h, w), np.uint8)
        for _ in range(observers):
            if visible and rng.random() > 0.1:
                m = visible[int(rng.integers(len(visible)))]
                y, x = rng.normal(m.y, m.r / 2), rng.normal(m.x, m.r / 2)
            elif visible:
                y, x = rng.uniform(0, h), rng.uniform(0, w)
            else:
                y, x = rng.normal(h / 2, h / 6), rng.normal(w / 2, w / 6)
            fix[int(np.clip(y, 0, h - 1)), int(np.clip(x, 0, w - 1))] = 1
        blurred = cv2.GaussianBlur(fix.astype(np.float32), (0, 0), sigma)
        maps.append(np.round(255 * blurred / blurred.max()).astype(np.uint8))
        frames.append(img)
        fixes.append(fix)
        for m in movers:
            _step(m, h, w)
    return frames, fixes, maps


def write_video(folder: Path, frames, fixes, maps, fixation_format: str) -> None:
    from scipy.io import savemat

    for sub in ("images", "maps", "fixation/maps"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for t, (img, fix, smap) in enumerate(zip(frames, fixes, maps, strict=True)):
        stem = f"{t + 1:04d}"
        cv2.imwrite(str(folder / "images" / f"{stem}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "maps" / f"{stem}.png"), smap)
        if fixation_format == "mat":
            savemat(str(folder / "fixation" / "maps" / f"{stem}.mat"), {"I": fix}, do_compression=True)
        else:
            cv2.imwrite(str(folder / "fixation" / "maps" / f"{stem}.png"), fix * 255)


def write_dataset(out: str | Path, spec: SynthSpec = SynthSpec()) -> Path:
    """Write ``OUT/synth/{training,testing}/vidNNN``; returns ``OUT`` (the data root)."""
    if spec.videos < 1 or spec.test_videos < 1 or spec.frames < 1:
        raise UserError("--videos, --test-videos and --frames must be >= 1")
    root = Path(out)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {root}: {exc.strerror or exc}") from exc
    for split, count, offset in (("training", spec.videos, 0), ("testing", spec.test_videos, 10_000)):
        for v in range(count):
            rng = np.random.default_rng([spec.seed, offset + v])
            frames, fixes, maps = make_video(rng, spec.frames, spec.size, spec.observers)
            write_video(root / "synth" / split / f"vid{v:03d}", frames, fixes, maps, "mat" if v % 2 == 0 else "png")
    return root


def main(args) -> int:
    """``esan-train synth`` handler."""
    test = args.test_videos if args.test_videos is not None else max(2, args.videos // 3)
    spec = SynthSpec(args.videos, test, args.frames, parse_size(args.size), args.seed)
    root = write_dataset(args.out, spec)
    print(f"wrote {spec.videos} training + {spec.test_videos} testing videos of {spec.frames} frames "
          f"({spec.size[0]}x{spec.size[1]}) to {root / 'synth'}; train with --data {root} --setting synth")
    return 0
