"""Small trees in the official download layouts (DHF1K, Hollywood-2, UCF-Sports), built by the tests.

Every frame ``k`` (1-based) of a video is a flat image of brightness ``STEP * k`` with a bright square
whose position depends on the video, so a test can tell which frame landed where. Maps are Gaussians
around the square, fixations a few pixels inside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.io import savemat

HW = (48, 80)  # h, w of every frame (the releases are 360x640; small and non-square here)
STEP = 20  # frame k has brightness STEP * k (k <= 12)


def frame_image(k: int, video: int) -> np.ndarray:
    img = np.full((*HW, 3), STEP * k, np.uint8)
    y, x = 8 + (video * 7) % 24, 10 + (video * 13) % 50
    img[y : y + 8, x : x + 8] = 255
    return img


def saliency_map(k: int, video: int) -> np.ndarray:
    y, x = 12 + (video * 7) % 24, 14 + (video * 13) % 50
    yy, xx = np.mgrid[0 : HW[0], 0 : HW[1]]
    g = np.exp(-((yy - y) ** 2 + (xx - x - k) ** 2) / (2 * 6.0**2))
    return np.round(255 * g).astype(np.uint8)


def fixation_map(k: int, video: int) -> np.ndarray:
    y, x = 12 + (video * 7) % 24, 14 + (video * 13) % 50
    fix = np.zeros(HW, np.uint8)
    fix[y, x + k % 3] = 255
    fix[y + 2, x] = 255
    return fix


def write_avi(path: Path, video: int, n_frames: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (HW[1], HW[0]))
    assert w.isOpened(), "OpenCV cannot write MJPG AVI files here"
    for k in range(1, n_frames + 1):
        w.write(frame_image(k, video))
    w.release()


def write_annotation(folder: Path, video: int, ks, fix_as_mat: bool = False, map_as_mat: tuple = ()) -> None:
    """``folder/maps/<kkkk>.png`` and ``folder/fixation/<kkkk>.png`` (or ``fixation/maps/<kkkk>.mat``)."""
    (folder / "maps").mkdir(parents=True, exist_ok=True)
    (folder / "fixation" / ("maps" if fix_as_mat else "")).mkdir(parents=True, exist_ok=True)
    for k in ks:
        if k in map_as_mat:
            savemat(folder / "maps" / f"{k:04d}.mat", {"I": saliency_map(k, video).astype(np.float64) / 255})
        else:
            cv2.imwrite(str(folder / "maps" / f"{k:04d}.png"), saliency_map(k, video))
        if fix_as_mat:
            savemat(folder / "fixation" / "maps" / f"{k:04d}.mat", {"I": (fixation_map(k, video) > 0).astype(np.uint8)})
        else:
            cv2.imwrite(str(folder / "fixation" / f"{k:04d}.png"), fixation_map(k, video))


@dataclass
class DHF1KTree:
    """What ``dhf1k_tree`` wrote (the facts the tests check against)."""

    root: Path
    frames: dict[int, int] = field(default_factory=dict)  # video -> frames in its AVI
    annotated: dict[int, list[int]] = field(default_factory=dict)  # video -> annotated frame numbers


def dhf1k_tree(root: Path) -> DHF1KTree:
    """Videos 1, 2 (training), 601, 602 (val), 701 (test). Video 2 has one frame more than its annotation,
    video 1 one annotation more than its frames; 602 has no annotation; 601 stores fixations as .mat and
    frame 2's map as .mat only; annotation 0650 has no video."""
    t = DHF1KTree(root)
    spec = {1: (5, [1, 2, 3, 4, 5, 6]), 2: (6, [1, 2, 3, 4, 5]), 601: (4, [1, 2, 3, 4]), 602: (3, []), 701: (4, [])}
    for v, (n, ks) in spec.items():
        write_avi(root / "video" / f"{v:03d}.AVI", v, n)
        t.frames[v] = n
        if ks:
            write_annotation(root / "annotation" / f"{v:04d}", v, ks, fix_as_mat=v == 601,
                             map_as_mat=(2,) if v == 601 else ())
            t.annotated[v] = ks
    write_annotation(root / "annotation" / "0650", 650, [1])
    return t


def frame_folder_tree(root: Path, names: dict[str, list[str]], ext: str = ".png") -> Path:
    """Hollywood-2 / UCF-Sports layout: ``root/<split>/<video>/{images,maps,fixation}``; 4 frames a video
    named ``<video>_<kkkkk><ext>``. The first testing video lacks the fixation of its last frame and the
    last training video keeps its fixations in ``fixation/maps/*.mat``."""
    for split, videos in names.items():
        for i, name in enumerate(videos):
            vid = 100 * (split == "testing") + i
            d = root / split / name
            for sub in ("images", "maps", "fixation"):
                (d / sub).mkdir(parents=True)
            mat = split == "training" and i == len(videos) - 1
            for k in range(1, 5):
                stem = f"{name}_{k:05d}"
                cv2.imwrite(str(d / "images" / f"{stem}{ext}"), frame_image(k, vid))
                cv2.imwrite(str(d / "maps" / f"{stem}.png"), saliency_map(k, vid))
                if split == "testing" and i == 0 and k == 4:
                    continue
                if mat:
                    (d / "fixation" / "maps").mkdir(exist_ok=True)
                    savemat(d / "fixation" / "maps" / f"{stem}.mat", {"I": (fixation_map(k, vid) > 0).astype(np.uint8)})
                else:
                    cv2.imwrite(str(d / "fixation" / f"{stem}.png"), fixation_map(k, vid))
    return root


HOLLYWOOD = {"training": ["actioncliptrain00001", "actioncliptrain00002"], "testing": ["actioncliptest00001"]}
UCF = {"training": ["Diving-Side-001", "Golf-Swing-Back-002"], "testing": ["Kicking-Front-003", "Run-Side-001"]}
