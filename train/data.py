"""Dataset readers and clip sampling for training (docs/design.md section 5).

Layout: ``ROOT/<dataset>/<split>/<video>/images/*``, ``maps/<stem>.png`` (continuous map) and
``fixation/maps/<stem>.mat`` (key ``I``, binary) or ``fixation/maps/<stem>.png`` (binary).
Files are matched by stem, never by sorted position. Frames are ordered by a natural sort of
their stems (``img2`` before ``img10``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from esan.runtime.core.framefiles import IMAGE_EXTS, natural_key
from esan.runtime.core.letterbox import Box, letterbox_map, preprocess
from esan.train.errors import UserError

SETTINGS: dict[str, tuple[str, ...]] = {
    "i": ("DHF1K",),
    "ii": ("Hollywood-2",),
    "iii": ("UCF",),
    "iv": ("DHF1K", "Hollywood-2", "UCF"),
    "synth": ("synth",),
}


def splits_of(dataset: str) -> tuple[str, str]:
    """(training split, validation/test split) of a dataset."""
    return ("training", "val") if dataset == "DHF1K" else ("training", "testing")


def datasets_of(setting: str) -> tuple[str, ...]:
    """Datasets of a paper training setting (``i``, ``ii``, ``iii``, ``iv``) or ``synth``."""
    if setting not in SETTINGS:
        raise UserError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)}")
    return SETTINGS[setting]


def _by_stem(folder: Path, exts: Sequence[str]) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in exts:
            # a .mat wins over a .png fixation file of the same stem
            if p.stem not in out or p.suffix.lower() == ".mat":
                out[p.stem] = p
    return out


@dataclass(frozen=True)
class Video:
    """One video: frame, map and fixation files matched by stem, in frame order."""

    name: str
    frames: tuple[Path, ...]
    maps: tuple[Path, ...]
    fixations: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def stems(self) -> list[str]:
        return [p.stem for p in self.frames]


def scan_video(folder: Path, need_targets: bool = True) -> Video:
    """Match a video's files by stem; raise ``UserError`` naming the video on any mismatch."""
    frames = _by_stem(folder / "images", IMAGE_EXTS)
    if not frames:
        raise UserError(f"video {folder}: no frames in {folder / 'images'}")
    stems = sorted(frames, key=natural_key)
    if not need_targets:
        return Video(folder.name, tuple(frames[s] for s in stems), (), ())
    maps = _by_stem(folder / "maps", (".png", ".jpg", ".jpeg"))
    fix = _by_stem(folder / "fixation" / "maps", (".mat", ".png"))
    for label, found in (("maps/", maps), ("fixation/maps/", fix)):
        missing = [s for s in stems if s not in found]
        extra = sorted(set(found) - set(frames), key=natural_key)
        if missing or extra:
            detail = []
            if missing:
                detail.append(f"{len(missing)} frame(s) without a {label} file (first: {missing[0]})")
            if extra:
                detail.append(f"{len(extra)} {label} file(s) without a frame (first: {extra[0]})")
            raise UserError(f"video {folder}: files do not match by name: {'; '.join(detail)}")
    return Video(folder.name, tuple(frames[s] for s in stems), tuple(maps[s] for s in stems),
                 tuple(fix[s] for s in stems))


def scan_split(root: str | Path, dataset: str, split: str, need_targets: bool = True,
               max_videos: int | None = None) -> list[Video]:
    """All videos of ``ROOT/<dataset>/<split>`` (natural order); clear errors for bad paths."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data directory {root} does not exist")
    folder = root / dataset / split
    if not folder.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise UserError(f"{folder} does not exist (datasets under {root}: {', '.join(have) or 'none'}); "
                        f"expected ROOT/<dataset>/<split>/<video>/images/")
    dirs = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))
    if max_videos is not None:
        dirs = dirs[:max_videos]
    videos = [scan_video(d, need_targets) for d in dirs]
    if not videos:
        raise UserError(f"{folder} holds no videos")
    return videos


def scan_setting(root: str | Path, setting: str, which: str = "train") -> list[Video]:
    """Videos of a training setting: ``which`` is ``train`` or ``val`` (the val/test split)."""
    videos: list[Video] = []
    for ds in datasets_of(setting):
        videos += scan_split(root, ds, splits_of(ds)[0 if which == "train" else 1])
    return videos


# ---------------------------------------------------------------------------------- readers


def read_frame(path: Path) -> np.ndarray:
    """RGB ``uint8 [h, w, 3]``."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_map(path: Path) -> np.ndarray:
    """Continuous ground-truth map as ``float32 [h, w]`` in [0, 1]."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"cannot read saliency map {path}")
    if img.ndim == 3:
        img = img[..., :3].mean(-1)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    return img.astype(np.float32) / scale


def read_fixations(path: Path) -> np.ndarray:
    """Binary fixation map ``uint8 [h, w]`` from a ``.mat`` (key ``I``) or a ``.png``."""
    if path.suffix.lower() == ".mat":
        from scipy.io import loadmat

        try:
            data = loadmat(str(path))
        except Exception as exc:
            raise UserError(f"cannot read fixation file {path}: {exc}") from exc
        if "I" not in data:
            raise UserError(f"{path} has no variable 'I' (keys: {sorted(k for k in data if not k.startswith('_'))})")
        arr = np.asarray(data["I"])
    else:
        arr = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if arr is None:
            raise UserError(f"cannot read fixation file {path}")
    return (arr > 0).astype(np.uint8)


def letterbox_fixations(fix: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, Box]:
    """Move each fixation onto the letterboxed canvas (no blurring; points are kept)."""
    from esan.runtime.core.letterbox import fit_box

    box = fit_box(fix.shape[:2], size_hw)
    out = np.zeros(size_hw, np.float32)
    pts = np.argwhere(fix > 0)
    if pts.size:
        h0, w0 = fix.shape[:2]
        ys = box.top + np.minimum(pts[:, 0] * box.height // h0, box.height - 1)
        xs = box.left + np.minimum(pts[:, 1] * box.width // w0, box.width - 1)
        out[ys, xs] = 1.0
    return out, box


def frame_tensor(path: Path, input_hw: tuple[int, int]) -> tuple[np.ndarray, Box, tuple[int, int]]:
    """Letterboxed, normalised ``float32 [3, H, W]``, its box and the original (h, w)."""
    rgb = read_frame(path)
    x, box = preprocess(rgb, input_hw)
    return x, box, rgb.shape[:2]


def clip_indices(n_frames: int, start: int, clip_len: int) -> list[int]:
    """``clip_len`` consecutive indices from ``start``; past the end the last frame repeats."""
    return [min(start + k, n_frames - 1) for k in range(clip_len)]


# ------------------------------------------------------------------------------ clip dataset


class ClipDataset:
    """Random training clips, deterministic from ``seed`` and the item index.

    Item ``i`` draws (video, start) from ``numpy.random.default_rng([seed, i])``: uniform video,
    uniform start in ``[0, max(len - clip_len, 0)]``; short videos are padded by repeating their
    last frame. Returns ``frames [N,3,H,W]``, ``maps [N,1,h,w]`` and ``fixations [N,1,h,w]``
    (float32 tensors; targets letterboxed to the output size ``(H/2, W/2)``).
    """

    def __init__(self, videos: Sequence[Video], clip_len: int = 15, input_hw: tuple[int, int] = (256, 320),
                 output_hw: tuple[int, int] | None = None, seed: int = 0, length: int = 1_000_000) -> None:
        if not videos:
            raise UserError("no training videos")
        if clip_len < 1:
            raise UserError(f"clip length must be >= 1, got {clip_len}")
        self.videos = list(videos)
        self.clip_len = clip_len
        self.input_hw = tuple(input_hw)
        self.output_hw = tuple(output_hw) if output_hw else (input_hw[0] // 2, input_hw[1] // 2)
        self.seed = seed
        self.length = length

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> tuple[int, int]:
        """(video index, start frame) of item ``index``."""
        rng = np.random.default_rng([self.seed, index])
        v = int(rng.integers(len(self.videos)))
        start = int(rng.integers(max(len(self.videos[v]) - self.clip_len, 0) + 1))
        return v, start

    def load(self, video: Video, indices: Sequence[int]) -> dict[str, np.ndarray]:
        frames, maps, fixes = [], [], []
        for i in indices:
            x, _, _ = frame_tensor(video.frames[i], self.input_hw)
            frames.append(x)
            m, _ = letterbox_map(read_map(video.maps[i]), self.output_hw)
            maps.append(m[None])
            f, _ = letterbox_fixations(read_fixations(video.fixations[i]), self.output_hw)
            fixes.append(f[None])
        return {"frames": np.stack(frames), "maps": np.stack(maps), "fixations": np.stack(fixes)}

    def __getitem__(self, index: int) -> dict:
        import torch

        v, start = self.sample(index)
        video = self.videos[v]
        arrays = self.load(video, clip_indices(len(video), start, self.clip_len))
        return {k: torch.from_numpy(a) for k, a in arrays.items()}


class StepSampler:
    """The clip indices of steps ``start_step .. stop_step - 1``, in order: step ``s`` always gets clips
    ``s*B .. s*B + B - 1`` (``B = batch_size * world``), so a resumed run sees exactly the data of an
    uninterrupted one. Of several processes, rank ``r`` takes the ``r``-th ``batch_size`` of each step."""

    def __init__(self, batch_size: int, start_step: int, stop_step: int, rank: int = 0, world: int = 1) -> None:
        self.batch_size, self.start, self.stop = batch_size, start_step, stop_step
        self.rank, self.world = rank, world

    def __iter__(self):
        b, total = self.batch_size, self.batch_size * self.world
        return (s * total + self.rank * b + j for s in range(self.start, self.stop) for j in range(b))

    def __len__(self) -> int:
        return max(self.stop - self.start, 0) * self.batch_size


def make_loader(dataset: ClipDataset, batch_size: int, start_step: int, stop_step: int, workers: int = 0,
                rank: int = 0, world: int = 1):
    """A torch DataLoader yielding this process's ``batch_size`` clips of steps ``start_step .. stop_step - 1``."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size,
                      sampler=StepSampler(batch_size, start_step, stop_step, rank, world),
                      num_workers=workers, drop_last=True, persistent_workers=False)
