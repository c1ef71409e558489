"""Calibration footage for INT8 export: short runs of consecutive frames spread over a video, folder or URL.

The temporal graphs need consecutive frames (windows, recurrent states), so the ``n`` frames are taken as
runs of ``SEGMENT`` consecutive frames at evenly spaced positions of the source. A URL (live source, length
unknown) gives its first ``n`` frames. No source: the generated sample clip, with a warning.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np

from esan.runtime.core.errors import UserError
from esan.runtime.core.framefiles import list_frames
from esan.runtime.core.sample_clip import sample_frames

SEGMENT = 24  # consecutive frames per run
DEFAULT_FRAMES = 240
SAMPLE_CLIP_FRAMES = 250


def pick_indices(total: int, n: int, segment: int = SEGMENT) -> list[list[int]]:
    """Runs of ``segment`` consecutive indices in ``range(total)``, evenly spread, ``n`` indices in all."""
    n = min(n, total)
    if n <= 0:
        return []
    segment = min(segment, n)
    runs = math.ceil(n / segment)
    starts = np.linspace(0, total - segment, runs).round().astype(int) if runs > 1 else np.array([0])
    out, left = [], n
    for s in starts:
        k = min(segment, left)
        out.append(list(range(int(s), int(s) + k)))
        left -= k
    return out


def _is_url(text: str) -> bool:
    return "://" in text


def _read_video(cap: cv2.VideoCapture, wanted: set[int] | None, n: int) -> dict[int, np.ndarray]:
    """Decode sequentially, keeping the frames in ``wanted`` (``None``: the first ``n``); RGB."""
    got: dict[int, np.ndarray] = {}
    i = 0
    last = max(wanted) if wanted else n - 1
    while i <= last:
        ok, image = cap.read()
        if not ok or image is None:
            break
        if wanted is None or i in wanted:
            got[i] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        i += 1
    return got


def load_calibration_frames(
    source: str | None, n: int = DEFAULT_FRAMES, segment: int = SEGMENT, skip: int = 0
) -> tuple[list[list[np.ndarray]], dict]:
    """``(runs of RGB frames, description)``; the description goes into the manifest.

    ``skip``: frames at the start of the source not to use (e.g. held out for evaluation).
    """
    if n < 1:
        raise UserError(f"--calib-frames must be >= 1, got {n}")
    if source is None:
        warnings.warn("no --calib footage given: calibrating on the generated sample clip; real footage "
                      "from the deployment calibrates better (--calib VIDEO|DIR|URL)", stacklevel=2)
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in sample_frames(SAMPLE_CLIP_FRAMES)]
        runs = [[frames[i] for i in r] for r in pick_indices(len(frames), n, segment)]
        return runs, {"source": "generated sample clip", "kind": "sample", "frames": sum(map(len, runs))}
    text = str(source)
    if _is_url(text):
        cap = cv2.VideoCapture(text)
        if not cap.isOpened():
            raise UserError(f"cannot open the calibration URL {text}; check it plays (e.g. with ffplay)")
        try:
            got = _read_video(cap, None, n)
        finally:
            cap.release()
        frames = [got[i] for i in sorted(got)]
        runs = [frames[i : i + segment] for i in range(0, len(frames), segment)]
        kind, indices = "url", [list(range(len(frames)))]
    else:
        path = Path(text)
        if path.is_dir():
            files = list_frames(path)[skip:]
            idx = pick_indices(len(files), n, segment)
            runs = []
            for r in idx:
                run = []
                for i in r:
                    image = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
                    if image is None:
                        raise UserError(f"cannot decode calibration frame {files[i]}; remove it or use another --calib")
                    run.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                runs.append(run)
            kind, indices = "folder", [[i + skip for i in r] for r in idx]
        elif path.is_file():
            cap = cv2.VideoCapture(str(path))
            if not cap.isOpened():
                raise UserError(f"cannot decode the calibration video {path}; give a video OpenCV reads or a folder")
            try:
                total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) - skip
                idx = pick_indices(max(total, 0), n, segment)
                got = _read_video(cap, {i + skip for r in idx for i in r}, n) if idx else {}
            finally:
                cap.release()
            runs = [[got[i + skip] for i in r if i + skip in got] for r in idx]
            kind, indices = "video", [[i + skip for i in r] for r in idx]
        else:
            raise UserError(f"calibration source {text} does not exist; give a video file, a folder of frames or a URL")
    runs = [r for r in runs if r]
    if not runs:
        raise UserError(f"calibration source {text} gave no frames; check it is not empty")
    spans = [[r[0], r[-1]] for r in indices if r]
    return runs, {"source": text, "kind": kind, "frames": sum(map(len, runs)), "runs": spans}
