"""PyTorch backend: the model's own building blocks (``ESAN.encode/align/cell_step/decode``).

The reference for every other backend. torch is imported here only, so the rest of the runtime
imports without it. CPU or CUDA, fp32 or fp16 (weights and activations ``.half()``; the LSTM cell
state ``c``, the gate sum and its nonlinearities stay fp32, the hidden state ``h`` fed back is fp16,
the decoder runs in fp32 — the same casts as the fp16 ONNX graphs of ``esan.export.graphs``).
Normalisation is exactly ``esan.runtime.core.letterbox.normalize``: ``(x / 255 - mean) / std`` in fp32,
then zero on the padding (via the valid mask).
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

    @torch.inference_mode()
    def encode(self, frame: np.ndarray, valid: np.ndarray) -> Entry:
        x = normalize_uint8_frames(self._tensor(frame), self._tensor(valid), self._mean, self._std)
        return self.model.encode(x.to(self.dtype))

    @torch.inference_mode()
    def align(self, window: Sequence[Entry], ref: Entry) -> tuple[Array, Array]:
        win = {name: torch.stack([e[name][0] for e in window])[None] for name in WINDOW_INPUTS.values()}
        return self.model.align(win, {name: ref[name] for name in REFERENCE_INPUTS})

    @torch.inference_mode()
    def step(self, direction: str, x: Array, h: Array, c: Array) -> State:
        check_direction(direction)
        # fp32 x promotes the gate sum to fp32 (the recurrent conv on h runs in the compute dtype),
        # exactly like the fp16 ONNX cells; c stays fp32, h goes back to the compute dtype
        h_new, c_new = self.model.cell_step(direction, x.float(), h, c)
        return h_new.to(self.dtype), c_new.float()

    @torch.inference_mode()
    def zero_state(self) -> State:
        shape = (1, self.config.hidden, *self.config.state_size)
        return (
            torch.zeros(shape, dtype=self.dtype, device=self.torch_device),
            torch.zeros(shape, dtype=torch.float32, device=self.torch_device),
        )

    @torch.inference_mode()
    def backward_window(self, xs: Sequence[Array]) -> Array | None:
        h, c = self.zero_state()
        for x in reversed(xs):
            h, c = self.step("bwd", x, h, c)
        return h

    @torch.inference_mode()
    def decode(self, hf: Array, hb: Array) -> np.ndarray:
        return self.model.decode(hf, hb)[0, 0].float().cpu().numpy()

    def close(self) -> None:
        self.model = None
        super().close()
