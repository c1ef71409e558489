"""The ESAN network and its streaming reference (docs/design.md sections 1 and 2).

``forward`` is written in terms of the public building blocks the runtime also uses:
``encode`` (one frame -> cached features and projections), ``align`` (one window -> projected
``A_t`` for both cells), ``cell_step`` (explicit state in and out) and ``decode``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from esan.train.config import ESANConfig
from esan.train.layers import VGG_TAPS, ConvLSTM, ConvLSTMCell, PCDAlign, vgg16_features

FEATURE_NAMES = ("f1", "f2", "f3", "nbr_p1", "nbr_p2", "nbr_p3", "ref_p1", "ref_p2", "ref_p3", "ref_pc")
WINDOW_NAMES = ("f1", "f2", "f3", "nbr_p1", "nbr_p2", "nbr_p3")
REFERENCE_NAMES = ("ref_p1", "ref_p2", "ref_p3", "ref_pc")
DIRECTIONS = ("fwd", "bwd")


def normalize_uint8_frames(frame: Tensor, valid: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """In-graph twin of ``esan.runtime.core.letterbox.normalize``: uint8 NHWC ``frame`` and ``valid`` ->
    float32 NCHW ``(x/255 - mean)/std``, zero on the padding. ``mean``/``std``: float32 ``[3]``.
    """
    # NCHW first: the per-channel constants then broadcast over contiguous H*W spans, which ONNX Runtime
    # runs ~10x faster than a broadcast over the last (size-3) axis; the values are bit-identical.
    x = frame.permute(0, 3, 1, 2).to(torch.float32)
    m, s, v = mean.view(-1, 1, 1), std.view(-1, 1, 1), valid.permute(0, 3, 1, 2).to(torch.float32)
    return (x / 255.0 - m) / s * v


def window_indices(t: int, n: int, radius: int) -> list[int]:
    """Frame indices of the window around ``t``, edge frames replicated (``clamp``)."""
    return [min(max(t + k, 0), n - 1) for k in range(-radius, radius + 1)]


def backward_start(t: int, n: int, lookahead: int | None, chunk: int = 1) -> int:
    """First frame (highest index) the backward cell reads for output ``t``.

    ``chunk > 1`` is the optional chunked approximation: frames of one chunk share the run that
    starts at ``min(chunk_end + L, N - 1)``.
    """
    if lookahead is None:
        return n - 1
    chunk_end = min((t // chunk) * chunk + chunk - 1, n - 1)
    return min(chunk_end + lookahead, n - 1)


class ESAN(nn.Module):
    """Spatiotemporal feature alignment network for video saliency prediction."""

    def __init__(self, cfg: ESANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        nf = cfg.nf
        self.base = vgg16_features(cfg.vgg_widths)
        self.L1_conv = nn.Sequential(nn.Conv2d(cfg.vgg_widths[2], nf, 1))
        self.pcd_align = PCDAlign(nf, cfg.deform_groups, cfg.lrelu_slope)
        self.sc_fusion = nn.Conv2d(cfg.window * nf, nf, 1)
        self.lstm_forw = ConvLSTM(nf, cfg.hidden)
        self.lstm_back = ConvLSTM(nf, cfg.hidden)
        self.final_conv = nn.Sequential(nn.Conv2d(cfg.hidden, 1, 3, padding=1))

    # -- building blocks -------------------------------------------------------------------------
    def backbone(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """VGG16 features tapped after pool3, pool4 and pool5."""
        taps = []
        for i, layer in enumerate(self.base):
            x = layer(x)
            if i in VGG_TAPS.values():
                taps.append(x)
        return taps[0], taps[1], taps[2]

    def encode(self, x: Tensor) -> dict[str, Tensor]:
        """Per-frame cache entry: level features and both halves of the concat convs."""
        p3, p4, p5 = self.backbone(x)
        feats = (self.L1_conv(p3), p4, p5)
        nbr = self.pcd_align.neighbour_projections(feats)
        ref = self.pcd_align.reference_projections(feats)
        return dict(zip(FEATURE_NAMES, feats + nbr + ref, strict=True))

    def align(self, win: dict[str, Tensor], ref: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Align a window to its reference frame and project ``A_t`` into both cells' gates.

        ``win[name]`` is ``[B, K, C, h, w]`` in window order t-T..t+T; ``ref[name]`` is ``[B, C, h, w]``.
        Returns ``(xf, xb)``, each ``[B, 4*hidden, h1, w1]`` with the gate bias included.
        """
        b, k = win["f1"].shape[:2]
        flat = {n: win[n].flatten(0, 1) for n in WINDOW_NAMES}
        # each reference projection serves all K pairs: a broadcast view (no copy) when B == 1
        refs = tuple(ref[n].unsqueeze(1).expand(-1, k, *ref[n].shape[1:]).reshape(-1, *ref[n].shape[1:])
                     for n in REFERENCE_NAMES)
        aligned = self.pcd_align(
            (flat["f1"], flat["f2"], flat["f3"]), (flat["nbr_p1"], flat["nbr_p2"], flat["nbr_p3"]), refs
        )
        fused = self.sc_fusion(aligned.reshape(b, k * aligned.shape[1], *aligned.shape[2:]))
        return self.lstm_forw.cell.project_input(fused), self.lstm_back.cell.project_input(fused)

    def cell_step(self, direction: str, x_proj: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One ConvLSTM step of the ``"fwd"`` or ``"bwd"`` cell with explicit state."""
        return self.cell(direction).step(x_proj, h, c)

    def cell_first_step(self, direction: str, x_proj: Tensor) -> tuple[Tensor, Tensor]:
        """``cell_step`` from the zero state (``zero_state``), without the recurrent conv on zeros."""
        return self.cell(direction).first_step(x_proj)

    def cell(self, direction: str) -> ConvLSTMCell:
        """The ``"fwd"`` or ``"bwd"`` ConvLSTM cell."""
        return {"fwd": self.lstm_forw, "bwd": self.lstm_back}[direction].cell

    def zero_state(self, x_proj: Tensor) -> tuple[Tensor, Tensor]:
        """Zero ``(h, c)`` matching a projected input's batch, size, device and dtype."""
        shape = (x_proj.shape[0], self.cfg.hidden, *x_proj.shape[2:])
        z = x_proj.new_zeros(shape)
        return z, z.clone()

    def decode(self, hf: Tensor, hb: Tensor) -> Tensor:
        """Saliency map ``[B, 1, H/2, W/2]`` in (0, 1) from both hidden states.

        Runs in the decoder's own dtype, so an fp16 model with an fp32 decoder decodes in fp32.
        """
        dtype = self.final_conv[0].weight.dtype
        y = self.final_conv[0](hf.to(dtype) + hb.to(dtype))
        return torch.sigmoid(F.interpolate(y, scale_factor=4, mode="bilinear", align_corners=False))

    # -- whole clips -----------------------------------------------------------------------------
    def encode_clip(self, frames: Tensor) -> dict[str, Tensor]:
        """``encode`` every frame of ``[B, N, 3, H, W]``; entries are ``[B, N, C, h, w]``."""
        b, n = frames.shape[:2]
        enc = self.encode(frames.flatten(0, 1))
        return {k: v.unflatten(0, (b, n)) for k, v in enc.items()}

    def align_clip(self, enc: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Projected ``A_t`` for every frame: ``(xf, xb)``, each ``[B, N, G, h1, w1]``."""
        b, n = enc["f1"].shape[:2]
        idx = torch.tensor([window_indices(t, n, self.cfg.radius) for t in range(n)], device=enc["f1"].device)
        win = {name: enc[name][:, idx].flatten(0, 1) for name in WINDOW_NAMES}
        ref = {name: enc[name].flatten(0, 1) for name in REFERENCE_NAMES}
        xf, xb = self.align(win, ref)
        return xf.unflatten(0, (b, n)), xb.unflatten(0, (b, n))

    def run_forward_cell(self, xf: Tensor) -> Tensor:
        """Forward hidden states ``[B, N, hidden, h1, w1]`` from zero state."""
        h, c = self.zero_state(xf[:, 0])
        hs = []
        for t in range(xf.shape[1]):
            h, c = self.cell_step("fwd", xf[:, t], h, c)
            hs.append(h)
        return torch.stack(hs, 1)

    def run_backward_cell(self, xb: Tensor, lookahead: int | None, chunk: int = 1) -> Tensor:
        """Backward hidden states: for each t, the cell from zero over ``x_start(t) .. x_t``."""
        b, n = xb.shape[:2]
        if lookahead is None:
            h, c = self.zero_state(xb[:, 0])
            hs = [h] * n
            for t in range(n - 1, -1, -1):
                h, c = self.cell_step("bwd", xb[:, t], h, c)
                hs[t] = h
            return torch.stack(hs, 1)
        if lookahead < 0 or chunk < 1:
            raise ValueError(f"lookahead must be >= 0 or None and chunk >= 1, got {lookahead}, {chunk}")
        # All outputs run their own window at once: step j reads frame t + j where that is inside
        # the window of t; outputs whose window has not started yet keep their zero state.
        span = torch.tensor([backward_start(t, n, lookahead, chunk) - t for t in range(n)], device=xb.device)
        h, c = self.zero_state(xb.flatten(0, 1))
        for j in range(int(span.max()), -1, -1):
            frames = torch.clamp(torch.arange(n, device=xb.device) + j, max=n - 1)
            h_new, c_new = self.cell_step("bwd", xb[:, frames].flatten(0, 1), h, c)
            live = (j <= span).repeat(b).view(-1, 1, 1, 1)
            h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
        return h.unflatten(0, (b, n))

    def forward(self, frames: Tensor, lookahead: int | None = None, backward_chunk: int = 1) -> Tensor:
        """Saliency maps ``[B, N, 1, H/2, W/2]`` for normalised frames ``[B, N, 3, H, W]``.

        ``lookahead=None`` is full bidirectional over the clip (training); an integer ``L`` limits
        the backward cell to ``t .. min(t+L, N-1)``, exactly what the streaming runtime computes.
        """
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be [B, N, 3, H, W], got {tuple(frames.shape)}")
        if tuple(frames.shape[-2:]) != tuple(self.cfg.input_size):
            raise ValueError(f"frames are {tuple(frames.shape[-2:])}, the model expects {self.cfg.input_size}")
        b, n = frames.shape[:2]
        xf, xb = self.align_clip(self.encode_clip(frames))
        hf = self.run_forward_cell(xf)
        hb = self.run_backward_cell(xb, lookahead, backward_chunk)
        maps = self.decode(hf.flatten(0, 1), hb.flatten(0, 1))
        return maps.unflatten(0, (b, n))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
