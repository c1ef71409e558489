"""The naive schedule (what the authors' code does), for the latency benchmark.

Per aligned frame ``t`` (once frame ``t+T`` has arrived): the ``2T+1`` frames of its window are
encoded again from scratch (backbone + L1 conv, no cached halves), all ``2T+1`` pairs are aligned
with the *plain* concat convs, fused to ``A_t``, and the forward cell runs its plain conv on
``cat(A_t, h)``. Per output ``u`` (once ``A_{u+L}`` exists): the backward window is recomputed from
zero, ``L+1`` plain-conv steps on ``cat(A_j, h)`` (the ``A_j`` are kept from earlier frames).

Nothing is cached except raw frames, ``A_j`` and ``Hf_j``; results equal the cached schedule's
(``esan.runtime.processor``) up to float rounding. The torch modules below are also what the ONNX
"naive" graphs export (``esan.runtime.bench_naive_onnx``). torch is imported lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from esan.runtime.letterbox import letterbox, valid_mask
from esan.runtime.processor import StreamResult, _Frame, _Timer

NAIVE_GRAPHS = ("naive_encoder", "naive_aligner", "naive_cell_fwd", "naive_cell_bwd", "decoder")


class NaiveEngine(Protocol):
    """What ``NaiveProcessor`` drives (torch: ``TorchNaiveEngine``; ORT: ``bench_naive_onnx.OrtNaiveEngine``)."""

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
            x = (frame.to(torch.float32) / 255.0 - self.mean) / self.std * valid.to(torch.float32)
            p3, p4, p5 = self.model.backbone(x.permute(0, 3, 1, 2).to(dt))
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
            lstm = {"fwd": m.lstm_forw, "bwd": m.lstm_back}[direction]
            self.conv = lstm.cell.conv

        def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
            gates = self.conv(torch.cat((x, h), 1)).to(torch.float32)
            i, f, o, g = torch.chunk(gates, 4, dim=1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            return h_new.to(dt), c_new

    class Decoder(nn.Module):
        """``(hf, hb) -> map [1,1,H/2,W/2]`` in fp32 (as the bundle's decoder)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model32

        def forward(self, hf: Tensor, hb: Tensor) -> Tensor:
            return self.model.decode(hf.to(torch.float32), hb.to(torch.float32))

    mods = {
        "naive_encoder": NaiveEncoder(),
        "naive_aligner": NaiveAligner(),
        "naive_cell_fwd": NaiveCell("fwd"),
        "naive_cell_bwd": NaiveCell("bwd"),
        "decoder": Decoder(),
    }
    return {k: v.eval() for k, v in mods.items()}


class TorchNaiveEngine:
    """The naive modules run eagerly with PyTorch (``inference_mode``); CPU or CUDA, fp32 or fp16."""

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


class NaiveProcessor:
    """Streams frames through a ``NaiveEngine`` with the naive schedule (module docstring).

    Same interface and output timing as ``StreamProcessor`` with ``backward_chunk=1``: ``push``
    returns the maps that became ready (output ``u`` once frame ``u+L+T`` arrived), ``finish``
    flushes the tail with clamped neighbours. ``timings_ms`` use the same stage names.
    """

    def __init__(
        self, engine: NaiveEngine, radius: int, lookahead: int, input_size: tuple[int, int],
        output_size: tuple[int, int],
    ) -> None:  # fmt: skip
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, got {lookahead}")
        self.engine, self.radius, self.lookahead = engine, radius, lookahead
        self.input_size, self.output_size = tuple(input_size), tuple(output_size)
        self.reset()

    @property
    def delay_frames(self) -> int:
        return self.lookahead + self.radius

    def reset(self) -> None:
        self._n = 0
        self._aligned = 0
        self._next_out = 0
        self._raw: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._frames: dict[int, _Frame] = {}
        self._a: dict[int, Any] = {}
        self._hf: dict[int, Any] = {}
        self._state = self.engine.zero_state()

    def push(self, frame: np.ndarray, payload: Any = None) -> list[StreamResult]:
        """Add an RGB ``uint8 [h, w, 3]`` frame; returns the maps that became ready (0 or 1)."""
        timer = _Timer()
        with timer.stage("preprocess"):
            canvas, box = letterbox(frame, self.input_size)
            valid = valid_mask(box, self.input_size)
        self._raw[self._n] = (canvas[None], valid[None])
        out_box = box.scaled(self.output_size[0] / self.input_size[0])
        self._frames[self._n] = _Frame(out_box, (int(frame.shape[0]), int(frame.shape[1])), payload)
        self._n += 1
        return self._advance(timer, final=False)

    def finish(self) -> list[StreamResult]:
        """End of clip: flush the remaining maps, then reset."""
        if self._n == 0:
            return []
        out = self._advance(_Timer(), final=True)
        self.reset()
        return out

    def _advance(self, timer: _Timer, final: bool) -> list[StreamResult]:
        last = self._n - 1
        while self._aligned < self._n and (final or self._aligned + self.radius <= last):
            self._align_next(timer, last)
        ready: list[tuple[int, np.ndarray]] = []
        while self._next_out < self._aligned:
            u = self._next_out
            end = min(u + self.lookahead, last) if final else u + self.lookahead
            if end >= self._aligned:
                break
            ready.append((u, self._emit(timer, u, end)))
        timings = timer.as_ms()
        out = []
        for u, sal in ready:
            meta = self._frames.pop(u)
            out.append(StreamResult(u, sal, meta.box, dict(timings), meta.payload, meta.source_hw))
        return out

    def _align_next(self, timer: _Timer, last: int) -> None:
        t = self._aligned
        idx = [min(max(t + k, 0), last) for k in range(-self.radius, self.radius + 1)]
        with timer.stage("encode"):  # no cache: every window encodes its 2T+1 frames again
            feats = [self.engine.encode(*self._raw[i]) for i in idx]
        with timer.stage("align"):
            a = self.engine.align(feats)
        with timer.stage("forward"):
            self._state = self.engine.step("fwd", a, *self._state)
        self._a[t], self._hf[t] = a, self._state[0]
        self._aligned = t + 1
        for i in [i for i in self._raw if i < self._aligned - self.radius]:
            del self._raw[i]

    def _emit(self, timer: _Timer, u: int, end: int) -> np.ndarray:
        with timer.stage("backward"):  # from scratch: L+1 plain-conv steps
            h, c = self.engine.zero_state()
            for j in range(end, u - 1, -1):
                h, c = self.engine.step("bwd", self._a[j], h, c)
        with timer.stage("decode"):
            sal = self.engine.decode(self._hf.pop(u), h)
        del self._a[u]
        self._next_out = u + 1
        return sal
