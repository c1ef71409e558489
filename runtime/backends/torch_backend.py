"""PyTorch backend: the model's own building blocks (``ESAN.encode/align/cell_step/decode``).

The reference for every other backend. torch is imported here only, so the rest of the runtime
imports without it. CPU or CUDA, fp32 or fp16 (weights and activations ``.half()``; the LSTM cell
state ``c``, the gate sum and its nonlinearities stay fp32, the hidden state ``h`` fed back is fp16,
the decoder runs in fp32 — the same casts as the fp16 ONNX graphs of ``esan.export.graphs``).
Normalisation is exactly ``esan.runtime.core.letterbox.normalize``: ``(x / 255 - mean) / std`` in fp32,
then zero on the padding (via the valid mask).

Stages: each runs the model once on the streams' tensors concatenated along dimension 0 (``torch.cat``;
windows stacked to ``[B, K, ...]``) and splits the outputs back into per-stream views.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from esan.runtime.core.backend_api import (
    REFERENCE_INPUTS,
    WINDOW_INPUTS,
    Array,
    Backend,
    BackendConfig,
    Entry,
    State,
    check_direction,
)
from esan.runtime.core.errors import UserError
from esan.train.model import normalize_uint8_frames

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}


class TorchBackend(Backend):
    """Runs a checkpoint with PyTorch (``torch.inference_mode``)."""

    name = "torch"

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        *,
        model: torch.nn.Module | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
    ) -> None:
        from esan.train.checkpoint import load

        if precision not in PRECISIONS:
            raise UserError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("device 'cuda' requested but torch sees no CUDA device; use --device cpu")
        if model is None:
            if checkpoint is None:
                raise UserError("the torch backend needs a checkpoint (--checkpoint PATH)")
            model = load(checkpoint)
        if threads:
            torch.set_num_threads(threads)
        self.dtype = PRECISIONS[precision]
        self.torch_device = torch.device(device)
        self.model = model.eval().to(self.torch_device, self.dtype)  # takes ownership: converts `model` in place
        self.model.final_conv.float()  # the decoder (and its sigmoid) stays fp32
        cfg = model.cfg
        super().__init__(
            BackendConfig(
                input_size=tuple(cfg.input_size),
                output_size=tuple(cfg.output_size),
                radius=cfg.radius,
                hidden=cfg.hidden,
                state_size=tuple(cfg.level_size(1)),
                lookahead=None,
                mean=tuple(cfg.mean),
                std=tuple(cfg.std),
                extra={"checkpoint": str(checkpoint) if checkpoint else None},
            ),
            device=str(self.torch_device),
            precision=precision,
        )
        self._mean = torch.tensor(cfg.mean, dtype=torch.float32, device=self.torch_device)
        self._std = torch.tensor(cfg.std, dtype=torch.float32, device=self.torch_device)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.torch_device)

    # -- stages: one model call for all streams ---------------------------------------------------
    def _step(self, direction: str, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> State:
        check_direction(direction)
        # fp32 x promotes the gate sum to fp32 (the recurrent conv on h runs in the compute dtype),
        # exactly like the fp16 ONNX cells; c stays fp32, h goes back to the compute dtype
        h_new, c_new = self.model.cell_step(direction, x.float(), h, c)
        return h_new.to(self.dtype), c_new.float()

    @torch.inference_mode()
    def encode_batch(self, frames: np.ndarray, valid: np.ndarray) -> list[Entry]:
        x = normalize_uint8_frames(self._tensor(frames), self._tensor(valid), self._mean, self._std)
        entry = self.model.encode(x.to(self.dtype))
        return [{k: v[i:i + 1] for k, v in entry.items()} for i in range(len(frames))]

    @torch.inference_mode()
    def align_batch(self, windows: Sequence[Sequence[Entry]], refs: Sequence[Entry]) -> list[tuple[Array, Array]]:
        win = {name: torch.stack([torch.cat([e[name] for e in w]) for w in windows]) for name in WINDOW_INPUTS.values()}
        xf, xb = self.model.align(win, {name: torch.cat([r[name] for r in refs]) for name in REFERENCE_INPUTS})
        return list(zip(xf.split(1), xb.split(1), strict=True))

    @torch.inference_mode()
    def step_batch(self, direction: str, xs: Sequence[Array], hs: Sequence[Array], cs: Sequence[Array]) -> list[State]:
        h, c = self._step(direction, torch.cat(list(xs)), torch.cat(list(hs)), torch.cat(list(cs)))
        return list(zip(h.split(1), c.split(1), strict=True))

    @torch.inference_mode()
    def zero_state(self) -> State:
        shape = (1, self.config.hidden, *self.config.state_size)
        return (
            torch.zeros(shape, dtype=self.dtype, device=self.torch_device),
            torch.zeros(shape, dtype=torch.float32, device=self.torch_device),
        )

    @torch.inference_mode()
    def backward_window_batch(self, xss: Sequence[Sequence[Array]]) -> list[Array] | None:
        if len({len(xs) for xs in xss}) != 1:
            raise ValueError("backward_window_batch needs windows of one length")
        h, c = (torch.cat([z] * len(xss)) for z in self.zero_state())
        for k in range(len(xss[0]) - 1, -1, -1):
            h, c = self._step("bwd", torch.cat([xs[k] for xs in xss]), h, c)
        return list(h.split(1))

    @torch.inference_mode()
    def decode_batch(self, hfs: Sequence[Array], hbs: Sequence[Array]) -> list[np.ndarray]:
        maps = self.model.decode(torch.cat(list(hfs)), torch.cat(list(hbs)))[:, 0].float().cpu().numpy()
        return list(maps)

    def close(self) -> None:
        self.model = None
        super().close()
