"""The naive schedule (what the authors' code does), for the latency benchmark.

Per aligned frame ``t`` (once frame ``t+T`` has arrived): the ``2T+1`` frames of its window are
encoded again from scratch (backbone + L1 conv, no cached halves), all ``2T+1`` pairs are aligned
with the *plain* concat convs, fused to ``A_t``, and the forward cell runs its plain conv on
``cat(A_t, h)``. Per output ``u`` (once ``A_{u+L}`` exists): the backward window is recomputed from
zero, ``L+1`` plain-conv steps on ``cat(A_j, h)`` (the ``A_j`` are kept from earlier frames).

The schedule itself is ``esan.runtime.core.processor.StreamProcessor`` (``backward_chunk=1``) on a
``NaiveBackend``: its ``encode`` only keeps the letterboxed frame, its ``align`` re-encodes the
window and runs the naive aligner, returning ``(A_t, A_t)``, and it has no ``backward_window`` (so
the processor runs ``L+1`` steps). A ``NaiveBackend`` drives a ``NaiveEngine`` (torch:
``TorchNaiveEngine``; ONNX Runtime: ``esan.bench.naive_onnx.OrtNaiveEngine``), whose calls
are the naive schedule's stages (``encode`` is one frame, run ``2T+1`` times per ``align``).

Nothing is cached except raw frames, ``A_j`` and ``Hf_j``; results equal the cached schedule's up to
float rounding. The torch modules below are also what the ONNX "naive" graphs export
(``esan.bench.naive_onnx``). torch is imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from esan.runtime.core.backend_api import Array, Backend, BackendConfig, Entry, State, check_direction

NAIVE_GRAPHS = ("naive_encoder", "naive_aligner", "naive_cell_fwd", "naive_cell_bwd", "decoder")


class NaiveEngine(Protocol):
    """The naive stages (torch: ``TorchNaiveEngine``; ORT: ``bench_naive_onnx.OrtNaiveEngine``)."""

    def encode(self, frame: np.ndarray, valid: np.ndarray) -> Any: ...
    def align(self, window: Sequence[Any]) -> Any: ...
    def step(self, direction: str, x: Any, h: Any, c: Any) -> tuple[Any, Any]: ...
    def zero_state(self) -> tuple[Any, Any]: ...
    def decode(self, hf: Any, hb: Any) -> np.ndarray: ...


def build_naive_modules(model: Any, precision: str = "fp32") -> dict[str, Any]:
    """``{graph name: nn.Module}`` of the naive schedule (fp16: a half copy of ``model``)."""
    import copy

    import torch
    from torch import Tensor, nn
    from torch.nn import functional as F

    from esan.export.graphs import DecoderGraph
    from esan.train.model import normalize_uint8_frames

    dt = {"fp32": torch.float32, "fp16": torch.float16}[precision]
    model32 = model.eval()
    m = model32 if dt == torch.float32 else copy.deepcopy(model32).to(dt).eval()
    slope = m.cfg.lrelu_slope
    radius = m.cfg.radius

    def lr(v: Tensor) -> Tensor:
        return F.leaky_relu(v, slope)

    def up(v: Tensor) -> Tensor:
        return F.interpolate(v, scale_factor=2, mode="bilinear", align_corners=False)

    class NaiveEncoder(nn.Module):
        """``(frame uint8 [1,H,W,3], valid uint8 [1,H,W,1]) -> (f1, f2, f3)``: backbone + L1 conv only."""

        def __init__(self) -> None:
            super().__init__()
            self.model = m
            self.register_buffer("mean", torch.tensor(m.cfg.mean, dtype=torch.float32), persistent=False)
            self.register_buffer("std", torch.tensor(m.cfg.std, dtype=torch.float32), persistent=False)

        def forward(self, frame: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            p3, p4, p5 = self.model.backbone(normalize_uint8_frames(frame, valid, self.mean, self.std).to(dt))
            return self.model.L1_conv(p3), p4, p5

    class NaiveAligner(nn.Module):
        """Raw window features ``[K,C,h,w]`` (order t-T..t+T) -> ``A_t`` with the plain concat convs."""

        def __init__(self) -> None:
            super().__init__()
            self.model = m

        def forward(self, win_f1: Tensor, win_f2: Tensor, win_f3: Tensor) -> Tensor:
            p = self.model.pcd_align
            k = win_f1.shape[0]
            s = (win_f1, win_f2, win_f3)
            t = tuple(w[radius : radius + 1].expand_as(w) for w in s)
            o3 = lr(p.L3_offset_conv2(lr(p.L3_offset_conv1(torch.cat((s[2], t[2]), 1)))))
            a3 = lr(p.L3_dcnpack(s[2], o3))
            o2 = lr(p.L2_offset_conv1(torch.cat((s[1], t[1]), 1)))
            o2 = lr(p.L2_offset_conv3(lr(p.L2_offset_conv2(torch.cat((o2, 2 * up(o3)), 1)))))
            a2 = lr(p.L2_fea_conv(torch.cat((p.L2_dcnpack(s[1], o2), up(a3)), 1)))
            o1 = lr(p.L1_offset_conv1(torch.cat((s[0], t[0]), 1)))
            o1 = lr(p.L1_offset_conv3(lr(p.L1_offset_conv2(torch.cat((o1, 2 * up(o2)), 1)))))
            a1 = p.L1_fea_conv(torch.cat((p.L1_dcnpack(s[0], o1), up(a2)), 1))
            o = lr(p.cas_offset_conv2(lr(p.cas_offset_conv1(torch.cat((a1, t[0]), 1)))))
            aligned = lr(p.cas_dcnpack(a1, o))
            return self.model.sc_fusion(aligned.reshape(1, k * aligned.shape[1], *aligned.shape[2:]))

    class NaiveCell(nn.Module):
        """``(x = A, h, c) -> (h_out, c_out)``: the plain conv on ``cat(A, h)``; gates and ``c`` in fp32."""

        def __init__(self, direction: str) -> None:
            super().__init__()
            self.conv = m.cell(direction).conv

        def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
            gates = self.conv(torch.cat((x, h), 1)).to(torch.float32)
            i, f, o, g = torch.chunk(gates, 4, dim=1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            return h_new.to(dt), c_new

    mods = {
        "naive_encoder": NaiveEncoder(),
        "naive_aligner": NaiveAligner(),
        "naive_cell_fwd": NaiveCell("fwd"),
        "naive_cell_bwd": NaiveCell("bwd"),
        "decoder": DecoderGraph(model32),  # the bundle's decoder: ESAN.decode in fp32
    }
    return {k: v.eval() for k, v in mods.items()}


class TorchNaiveEngine:
    """The naive modules run eagerly with PyTorch (``inference_mode``); CPU or CUDA, fp32 or fp16.

    Takes ownership of ``model`` (moved to ``device`` in place; the caller copies it if it needs it).
    """

    def __init__(self, model: Any, device: str = "cpu", precision: str = "fp32", channels_last: bool = False) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
        self.channels_last = channels_last
        self.cfg = model.cfg
        mods = build_naive_modules(model, precision)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.mods = {k: v.to(self.device, memory_format=fmt) for k, v in mods.items()}
        h1, w1 = model.cfg.level_size(1)
        self._state_shape = (1, model.cfg.hidden, h1, w1)

    def _t(self, a: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def _fmt(self, x: Any) -> Any:
        return x.contiguous(memory_format=self.torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def encode(self, frame: np.ndarray, valid: np.ndarray) -> tuple[Any, ...]:
        with self.torch.inference_mode():
            return self.mods["naive_encoder"](self._t(frame), self._t(valid))

    def align(self, window: Sequence[tuple[Any, ...]]) -> Any:
        with self.torch.inference_mode():
            wins = [self._fmt(self.torch.cat([e[i] for e in window])) for i in range(3)]
            return self.mods["naive_aligner"](*wins)

    def step(self, direction: str, x: Any, h: Any, c: Any) -> tuple[Any, Any]:
        with self.torch.inference_mode():
            return self.mods[f"naive_cell_{direction}"](x, h, c)

    def zero_state(self) -> tuple[Any, Any]:
        z = self.torch.zeros(self._state_shape, device=self.device)
        return z.to(self.dtype), z

    def decode(self, hf: Any, hb: Any) -> np.ndarray:
        with self.torch.inference_mode():
            return self.mods["decoder"](hf, hb)[0, 0].float().cpu().numpy()

    def close(self) -> None:
        self.mods = {}


def naive_config(cfg: Any) -> BackendConfig:
    """The ``BackendConfig`` of an ``ESANConfig`` (what ``StreamProcessor`` needs to know)."""
    return BackendConfig(
        input_size=tuple(cfg.input_size), output_size=tuple(cfg.output_size), radius=cfg.radius,
        hidden=cfg.hidden, state_size=tuple(cfg.level_size(1)), mean=tuple(cfg.mean), std=tuple(cfg.std),
    )  # fmt: skip


class NaiveBackend(Backend):
    """A ``NaiveEngine`` as a ``Backend``, so ``StreamProcessor(backend, L)`` runs the naive schedule.

    ``encode_batch`` keeps the letterboxed frames and masks (no compute); ``align_batch`` re-encodes all
    ``2T+1`` window frames with the engine and runs the naive aligner, returning ``(A_t, A_t)`` (the plain
    fused feature: the naive cells take ``A`` with their plain concat conv on ``cat(A, h)``); there is no
    ``backward_window_batch``, so the processor runs ``L+1`` naive backward steps. The
    processor's own ``timings_ms`` therefore count the re-encoding under ``align``; the engine's calls
    are the naive stages (the benchmark times those).
    """

    name = "naive"

    def __init__(self, engine: NaiveEngine, cfg: Any, *, device: str = "cpu", precision: str = "fp32") -> None:
        super().__init__(naive_config(cfg), device=device, precision=precision)
        self.engine = engine

    # the naive engine serves one stream per call: each stage loops over the streams
    def encode_batch(self, frames: np.ndarray, valid: np.ndarray) -> list[Entry]:
        return [{"frame": frames[i:i + 1], "valid": valid[i:i + 1]} for i in range(len(frames))]

    def align_batch(self, windows: Sequence[Sequence[Entry]], refs: Sequence[Entry]) -> list[tuple[Array, Array]]:
        out = []
        for window in windows:
            a = self.engine.align([self.engine.encode(e["frame"], e["valid"]) for e in window])  # 2T+1 encodes
            out.append((a, a))
        return out

    def step_batch(self, direction: str, xs: Sequence[Array], hs: Sequence[Array], cs: Sequence[Array]) -> list[State]:
        check_direction(direction)
        return [self.engine.step(direction, x, h, c) for x, h, c in zip(xs, hs, cs, strict=True)]

    def zero_state(self) -> State:
        return self.engine.zero_state()

    def decode_batch(self, hfs: Sequence[Array], hbs: Sequence[Array]) -> list[np.ndarray]:
        return [self.engine.decode(hf, hb) for hf, hb in zip(hfs, hbs, strict=True)]

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()
        super().close()
