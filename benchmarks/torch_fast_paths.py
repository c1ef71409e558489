"""torch fast paths for the latency benchmark: static ring buffers, fp16, channels_last, CUDA graphs.

``CachedStepper`` runs the cached schedule (``ESAN.encode/align/cell_step/decode``, the same
building blocks and casts as ``TorchBackend``) and ``NaiveStepper`` the naive one
(``esan.bench.naive_torch`` modules), both on *static* tensors: the last ``2T+1`` window entries
(naive: raw frames), the reference projections of the frame being aligned (a ``T+1``-slot delay line:
frame ``t`` is aligned once ``t+T`` has arrived), the last ``L+1`` projected inputs (naive: ``A_t``)
and ``Hf`` live in ring buffers that shift by one slot per frame (slot ``-1`` = newest). Frame 0 is
replicated into every slot, which is exactly the clamped start of docs/design.md section 2. Once the
pipeline is full (frame ``L+T`` on), one push = encode + align + forward step + ``L+1`` backward
steps + decode, all on the static tensors, so on CUDA that step is captured once as a
``torch.cuda.CUDAGraph`` and replayed (``cuda_graph=True``; state is snapshotted around the warm-up
runs the capture needs). The rings shift in place (fixed addresses, as the graph needs).

Scope: steady-state streaming only (no ``finish`` tail flush, backward chunk 1): that is what the
benchmark times. Without ``cuda_graph`` everything runs eagerly, on CPU too (tests use that).
Both steppers take ownership of the model they are given (converted in place). torch is imported
lazily (this module imports without it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from esan.runtime.core.backend_api import ENCODER_OUTPUTS, REFERENCE_INPUTS, WINDOW_INPUTS
from esan.runtime.core.letterbox import letterbox, valid_mask

if TYPE_CHECKING:
    import torch

PRECISIONS = ("fp32", "fp16")
WINDOW_NAMES = tuple(WINDOW_INPUTS.values())


def _dtype(precision: str) -> torch.dtype:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16}[precision]


def _shift_in(ring: torch.Tensor, new: torch.Tensor, first: bool) -> None:
    """Drop slot 0, append ``new`` (``[1, ...]``) as the last slot; ``first``: fill every slot with it."""
    if first:
        ring.copy_(new.expand_as(ring))
        return
    if ring.shape[0] > 1:
        ring[:-1].copy_(ring[1:].clone())  # overlapping in-place copy needs a temporary of K-1 slots
    ring[-1:].copy_(new)


class _RingStepper:
    """Shared push / capture logic; subclasses implement ``_ingest``, ``_align``, ``_emit``."""

    kind = "base"

    def __init__(self, model: Any, lookahead: int, device: str, precision: str, channels_last: bool,
                 cuda_graph: bool) -> None:  # fmt: skip
        import torch

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if cuda_graph and not str(device).startswith("cuda"):
            raise ValueError("cuda_graph needs a CUDA device")
        self.cfg = model.cfg
        self.lookahead, self.radius = lookahead, model.cfg.radius
        self.device, self.dtype = torch.device(device), _dtype(precision)
        self.precision, self.channels_last, self.cuda_graph = precision, channels_last, cuda_graph
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        h, w = model.cfg.input_size
        self.frame_in = torch.zeros(1, h, w, 3, dtype=torch.uint8, device=self.device)
        self.valid_in = torch.zeros(1, h, w, 1, dtype=torch.uint8, device=self.device)
        h1, w1 = model.cfg.level_size(1)
        self.state_shape = (1, model.cfg.hidden, h1, w1)
        self.h = torch.zeros(self.state_shape, dtype=self.dtype, device=self.device)
        self.c = torch.zeros(self.state_shape, dtype=torch.float32, device=self.device)
        self.hf_ring = torch.zeros((lookahead + 1, *self.state_shape[1:]), dtype=self.dtype, device=self.device)
        self.out = torch.zeros(1, 1, *model.cfg.output_size, dtype=torch.float32, device=self.device)
        self.decoder: Any = None  # (hf, hb) -> map [1,1,H/2,W/2] float32 (fp32 ESAN.decode); set by subclasses
        self.n = 0
        self.graph: Any = None
        self.graph_error: str | None = None

    def describe(self) -> str:
        failed = f" (capture failed: {self.graph_error})" if self.graph_error else ""
        return (f"{self.kind} stepper, {self.precision}, channels_last={self.channels_last}, "
                f"cuda_graph={self.cuda_graph}{failed}, {self.device}")  # fmt: skip

    # -- to implement ---------------------------------------------------------------------------
    def _ingest(self, first: bool) -> None:
        raise NotImplementedError

    def _align(self) -> None:
        raise NotImplementedError

    def _emit(self) -> None:
        raise NotImplementedError

    def _state(self) -> list[torch.Tensor]:
        return [self.h, self.c, self.hf_ring]

    # -- shared ----------------------------------------------------------------------------------
    def _x(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.fmt) if x.dim() == 4 else x

    def _decode(self, hf: torch.Tensor, hb: torch.Tensor) -> None:
        self.out.copy_(self.decoder(hf, hb))

    def _steady(self) -> None:
        self._ingest(first=False)
        self._align()
        self._emit()

    def _capture(self) -> None:
        """Warm up on a side stream (state snapshotted and restored), then capture ``_steady``."""
        import torch

        saved = [t.clone() for t in self._state()]

        def restore() -> None:
            for t, s in zip(self._state(), saved, strict=True):
                t.copy_(s)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(2):
                self._steady()
                restore()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self._steady()
        restore()
        torch.cuda.synchronize()

    def _capture_or_fall_back(self) -> None:
        """Capture; if this torch / op set cannot be captured, say why and keep running eagerly."""
        import torch

        saved = [t.clone() for t in self._state()]
        try:
            self._capture()
        except RuntimeError as exc:
            self.graph, self.cuda_graph = None, False
            self.graph_error = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            torch.cuda.synchronize()
            for t, s in zip(self._state(), saved, strict=True):
                t.copy_(s)
            print(f"torch_fast_paths: CUDA graph capture failed, running eagerly: {self.graph_error}", flush=True)

    def push(self, frame: np.ndarray) -> list[np.ndarray]:
        """Add an RGB uint8 frame; returns ``[map]`` (``float32 [H/2, W/2]``) for output ``n-L-T`` once ready."""
        import torch

        size = tuple(self.cfg.input_size)
        canvas, box = letterbox(frame, size)
        self.frame_in.copy_(torch.from_numpy(canvas[None]))
        self.valid_in.copy_(torch.from_numpy(valid_mask(box, size)[None]))
        f = self.n
        self.n += 1
        full = f >= self.radius + self.lookahead
        if full and f > 0 and self.cuda_graph:
            if self.graph is None:
                self._capture_or_fall_back()
        if full and f > 0 and self.graph is not None:
            self.graph.replay()
        else:
            with torch.no_grad():
                self._ingest(first=f == 0)
                if f >= self.radius:
                    self._align()
                if full:
                    self._emit()
        return [self.out[0, 0].cpu().numpy().copy()] if full else []

    def reset(self) -> None:
        self.n = 0
        for t in self._state():
            t.zero_()

    def close(self) -> None:
        """Drop the captured graph (the stepper is unusable afterwards)."""
        self.graph = None


class CachedStepper(_RingStepper):
    """The cached schedule (exact savings 1-3) on static ring buffers."""

    kind = "cached"

    def __init__(self, model: Any, lookahead: int, device: str = "cuda", precision: str = "fp32",
                 channels_last: bool = False, cuda_graph: bool = False) -> None:  # fmt: skip
        import torch

        super().__init__(model, lookahead, device, precision, channels_last, cuda_graph)
        self.model = model.eval().to(self.device, self.dtype).to(memory_format=self.fmt)
        self.model.final_conv.float()  # the decoder (and its sigmoid) stays fp32, as in TorchBackend
        self.decoder = self.model.decode
        cfg = model.cfg
        self.mean = torch.tensor(cfg.mean, dtype=torch.float32, device=self.device)
        self.std = torch.tensor(cfg.std, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            probe = self.model.encode(torch.zeros(1, 3, *cfg.input_size, device=self.device, dtype=self.dtype))
        # window entries: 2T+1 slots (t-T..t+T); reference projections: only frame t = newest - T is read
        slots = {n: cfg.window for n in WINDOW_NAMES} | {n: self.radius + 1 for n in REFERENCE_INPUTS}
        self.ring = {n: torch.zeros((slots[n], *probe[n].shape[1:]), dtype=self.dtype, device=self.device)
                     for n in ENCODER_OUTPUTS}  # fmt: skip
        g = 4 * cfg.hidden
        self.xb_ring = torch.zeros((lookahead + 1, g, *self.state_shape[2:]), dtype=self.dtype, device=self.device)

    def _state(self) -> list[torch.Tensor]:
        return super()._state() + list(self.ring.values()) + [self.xb_ring]

    def _ingest(self, first: bool) -> None:
        from esan.train.model import normalize_uint8_frames

        x = normalize_uint8_frames(self.frame_in, self.valid_in, self.mean, self.std)
        entry = self.model.encode(self._x(x.to(self.dtype)))
        for name in ENCODER_OUTPUTS:
            _shift_in(self.ring[name], entry[name], first)

    def _align(self) -> None:
        win = {n: self.ring[n][None] for n in WINDOW_NAMES}
        ref = {n: self.ring[n][0:1] for n in REFERENCE_INPUTS}  # oldest slot of the delay line = frame t
        xf, xb = self.model.align(win, ref)
        h, c = self.model.cell_step("fwd", xf.float(), self.h, self.c)
        self.h.copy_(h)
        self.c.copy_(c)
        _shift_in(self.xb_ring, xb, first=False)
        _shift_in(self.hf_ring, self.h, first=False)

    def _emit(self) -> None:
        import torch

        h = torch.zeros_like(self.h)
        c = torch.zeros_like(self.c)
        for i in range(self.lookahead, -1, -1):
            h, c = self.model.cell_step("bwd", self.xb_ring[i : i + 1].float(), h, c)
            h, c = h.to(self.dtype), c.float()
        self._decode(self.hf_ring[0:1], h)

    def close(self) -> None:
        super().close()
        self.model = None


class NaiveStepper(_RingStepper):
    """The naive schedule (``naive_torch``) with the same fast paths: the window is re-encoded per frame."""

    kind = "naive"

    def __init__(self, model: Any, lookahead: int, device: str = "cuda", precision: str = "fp32",
                 channels_last: bool = False, cuda_graph: bool = False) -> None:  # fmt: skip
        import torch

        from esan.bench.naive_torch import build_naive_modules

        super().__init__(model, lookahead, device, precision, channels_last, cuda_graph)
        mods = build_naive_modules(model, precision)
        self.mods = {k: v.to(self.device).to(memory_format=self.fmt) for k, v in mods.items()}
        self.decoder = self.mods["decoder"]
        cfg = model.cfg
        h, w = cfg.input_size
        k = cfg.window
        self.frames = torch.zeros(k, h, w, 3, dtype=torch.uint8, device=self.device)
        self.valids = torch.zeros(k, h, w, 1, dtype=torch.uint8, device=self.device)
        self.a_ring = torch.zeros((lookahead + 1, cfg.nf, *self.state_shape[2:]), dtype=self.dtype, device=self.device)

    def _state(self) -> list[torch.Tensor]:
        return super()._state() + [self.frames, self.valids, self.a_ring]

    def _ingest(self, first: bool) -> None:
        _shift_in(self.frames, self.frame_in, first)
        _shift_in(self.valids, self.valid_in, first)

    def _align(self) -> None:
        feats = self.mods["naive_encoder"](self.frames, self.valids)  # all 2T+1 frames, every time
        a = self.mods["naive_aligner"](*(self._x(f) for f in feats))
        h, c = self.mods["naive_cell_fwd"](a, self.h, self.c)
        self.h.copy_(h)
        self.c.copy_(c)
        _shift_in(self.a_ring, a, first=False)
        _shift_in(self.hf_ring, self.h, first=False)

    def _emit(self) -> None:
        import torch

        h = torch.zeros_like(self.h)
        c = torch.zeros_like(self.c)
        for i in range(self.lookahead, -1, -1):
            h, c = self.mods["naive_cell_bwd"](self.a_ring[i : i + 1], h, c)
        self._decode(self.hf_ring[0:1], h)

    def close(self) -> None:
        super().close()
        self.mods, self.decoder = {}, None
