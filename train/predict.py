"""Whole-video inference from the model's building blocks.

``predict_maps`` gives exactly ``model.forward(video, lookahead=L)`` (docs/design.md section 2) for
videos of any length by processing chunks of frames and carrying the cell states across them, so
compute memory is bounded; the letterboxed frames (``FrameStore``) and the maps of the whole video
are held in memory (for a long video with an integer lookahead, ``esan-rt stream --backend torch
--save-maps`` is the bounded-memory path);
``protocol="official"`` reproduces the authors' test protocol (windows of 2T+1 frames, 2T+1
phases, the forward cell's state chained across the windows of one phase, output
``decoder(2*H)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from esan.runtime.core.letterbox import Box, map_box, normalize, unletterbox
from esan.runtime.core.letterbox import letterbox as letterbox_frame
from esan.train.model import ESAN, REFERENCE_NAMES, WINDOW_NAMES, window_indices

FramesFn = Callable[[Sequence[int]], Tensor]  # frame indices -> normalised [k, 3, H, W]


class FrameStore:
    """Letterboxed uint8 canvases of a video's frames (normalised on demand)."""

    def __init__(self, input_hw: tuple[int, int]) -> None:
        self.input_hw = tuple(input_hw)
        self.canvases: list[np.ndarray] = []
        self.boxes: list[Box] = []
        self.sizes: list[tuple[int, int]] = []

    def add(self, rgb: np.ndarray) -> None:
        canvas, box = letterbox_frame(rgb, self.input_hw)
        self.canvases.append(canvas)
        self.boxes.append(box)
        self.sizes.append(tuple(rgb.shape[:2]))

    def __len__(self) -> int:
        return len(self.canvases)

    def __call__(self, indices: Sequence[int]) -> Tensor:
        return torch.from_numpy(np.stack([normalize(self.canvases[i], self.boxes[i]) for i in indices]))


def _align_at(model: ESAN, frames: FramesFn, n: int, ts: Sequence[int], device) -> tuple[Tensor, Tensor]:
    """Projected ``A_t`` (``xf``, ``xb``: ``[len(ts), G, h1, w1]``) for the frames ``ts``."""
    radius = model.cfg.radius
    windows = [window_indices(t, n, radius) for t in ts]
    need = sorted({i for w in windows for i in w} | set(ts))
    pos = {f: k for k, f in enumerate(need)}
    enc = model.encode(frames(need).to(device))
    idx = torch.tensor([[pos[i] for i in w] for w in windows], device=device)
    ref_idx = torch.tensor([pos[t] for t in ts], device=device)
    win = {name: enc[name][idx] for name in WINDOW_NAMES}
    ref = {name: enc[name][ref_idx] for name in REFERENCE_NAMES}
    return model.align(win, ref)


def _forward_chain(model: ESAN, xf: Tensor, state):
    h, c = state if state is not None else model.zero_state(xf[:1])
    hs = []
    for t in range(xf.shape[0]):
        h, c = model.cell_step("fwd", xf[t : t + 1], h, c)
        hs.append(h)
    return torch.cat(hs), (h, c)


@torch.no_grad()
def predict_maps(model: ESAN, frames: FramesFn, n: int, lookahead: int | None = None, chunk: int = 32,
                 device: str | torch.device = "cpu", protocol: str = "streaming") -> Tensor:
    """Maps ``[n, H/2, W/2]`` (CPU float32) of a whole video.

    ``streaming``: exactly ``model.forward(all frames, lookahead)``; ``chunk`` frames per step bound
    the memory (``lookahead=None`` with more than ``chunk`` frames runs the backward cell over the
    video first, storing its hidden states on the CPU). ``official``: the authors' test protocol.
    """
    if n < 1:
        raise ValueError("a video needs at least one frame")
    chunk = max(int(chunk), 1)
    if protocol == "official":
        return _official(model, frames, n, chunk, device)
    if protocol != "streaming":
        raise ValueError(f"unknown protocol {protocol!r}")
    out = []
    if lookahead is None and n > chunk:
        hb_all = [None] * n
        state = None
        for b in range(n, 0, -chunk):  # backward cell over the whole video, chunks in reverse
            a = max(b - chunk, 0)
            _, xb = _align_at(model, frames, n, range(a, b), device)
            h, c = state if state is not None else model.zero_state(xb[:1])
            for t in range(b - a - 1, -1, -1):
                h, c = model.cell_step("bwd", xb[t : t + 1], h, c)
                hb_all[a + t] = h.cpu()
            state = (h, c)
        fstate = None
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            xf, _ = _align_at(model, frames, n, range(a, b), device)
            hf, fstate = _forward_chain(model, xf, fstate)
            hb = torch.cat(hb_all[a:b]).to(device)
            out.append(model.decode(hf, hb)[:, 0].float().cpu())
        return torch.cat(out)
    fstate = None
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        e = n if lookahead is None else min(b + lookahead, n)
        xf, xb = _align_at(model, frames, n, range(a, e), device)
        hf, fstate = _forward_chain(model, xf[: b - a], fstate)
        hb = model.run_backward_cell(xb[None], lookahead)[0, : b - a]
        out.append(model.decode(hf, hb)[:, 0].float().cpu())
    return torch.cat(out)


def _official(model: ESAN, frames: FramesFn, n: int, chunk: int, device) -> Tensor:
    k = model.cfg.window
    out: list[Tensor | None] = [None] * n
    per_call = max(chunk // k, 1)  # centres per encode call (each needs k frames)
    for phase in range(k):
        centres = list(range(phase, n, k))
        state = None
        for i in range(0, len(centres), per_call):
            ts = centres[i : i + per_call]
            xf, _ = _align_at(model, frames, n, ts, device)
            hf, state = _forward_chain(model, xf, state)
            maps = model.decode(hf, hf)[:, 0].float().cpu()  # decoder(2H): both directions = fwd cell
            for t, m in zip(ts, maps, strict=True):
                out[t] = m
    return torch.stack(out)


def to_original(map_out: np.ndarray, frame_hw: tuple[int, int], input_hw: tuple[int, int]) -> np.ndarray:
    """A model-output map back on the original frame (crop the letterbox, resize bilinearly)."""
    return unletterbox(map_out, map_box(frame_hw, input_hw, map_out.shape[-2:]), frame_hw)


def resolve_device(name: str | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; a clear error for an unavailable device."""
    from esan.train.errors import UserError

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"bad --device {name!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} requested but CUDA is not available; use --device cpu")
    return dev


def read_source(source: str | Path, input_hw: tuple[int, int]) -> tuple[FrameStore, list[str]]:
    """Frames of a video file or a folder of images (natural order) and the output file names."""
    from esan.runtime.core.framefiles import IMAGE_EXTS, list_frames
    from esan.train.data import read_frame
    from esan.train.errors import UserError

    src = Path(source)
    store = FrameStore(input_hw)
    if src.is_dir():
        files = list_frames(src)
        if not files:
            raise UserError(f"{src} holds no images ({', '.join(IMAGE_EXTS)})")
        for p in files:
            store.add(read_frame(p))
        return store, [f"{p.stem}.png" for p in files]
    if not src.is_file():
        raise UserError(f"--source {src} does not exist (give a video file or a folder of frames)")
    cap = cv2.VideoCapture(str(src))
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            store.add(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not len(store):
        raise UserError(f"cannot read any frame from {src} (not a video OpenCV can decode?)")
    width = max(6, len(str(len(store))))
    return store, [f"{i:0{width}d}.png" for i in range(len(store))]


def main(args) -> int:
    """``esan-train predict`` handler: one 8-bit PNG per frame, at the frame's original size.

    Pixel value = round(255 * map) (the model's (0, 1) output, not renormalised per frame).
    """
    from esan.runtime.core.fsutil import check_writable_dir
    from esan.train import checkpoint
    from esan.train.config import parse_lookahead
    from esan.train.errors import UserError

    lookahead = parse_lookahead(args.lookahead)
    device = resolve_device(args.device)
    model = checkpoint.load(args.checkpoint).to(device)
    store, names = read_source(args.source, model.cfg.input_size)
    try:
        out = check_writable_dir(args.out)
    except PermissionError as exc:
        raise UserError(str(exc)) from exc
    maps = predict_maps(model, store, len(store), lookahead, args.chunk, device).numpy()
    for t, name in enumerate(names):
        m = to_original(maps[t], store.sizes[t], model.cfg.input_size)
        if not cv2.imwrite(str(out / name), np.clip(np.round(m * 255), 0, 255).astype(np.uint8)):
            raise UserError(f"cannot write {out / name}")
    print(f"wrote {len(names)} maps to {out}")
    return 0
