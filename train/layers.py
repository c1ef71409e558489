"""ESAN building blocks: VGG16 backbone, modulated DCN pack, PCD alignment, ConvLSTM cell.

Parameter names follow the authors' code so their checkpoints load by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

VGG_TAPS = {"pool3": 16, "pool4": 23, "pool5": 30}  # indices of max-pools in vgg16.features


def vgg16_features(widths: tuple[int, ...]) -> nn.Sequential:
    """VGG16 ``features`` with configurable stage widths (torchvision's layer indices)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for stage, n_convs in enumerate((2, 2, 3, 3, 3)):
        for _ in range(n_convs):
            layers += [nn.Conv2d(in_ch, widths[stage], 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = widths[stage]
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def split_conv(x: Tensor, conv: nn.Conv2d, start: int, stop: int, bias: bool) -> Tensor:
    """Apply the input-channel slice ``[start:stop]`` of ``conv`` to ``x``.

    ``conv(cat(a, b)) == split_conv(a, conv, 0, ca, False) + split_conv(b, conv, ca, ca + cb, True)``:
    the per-frame halves can be cached (docs/design.md section 2, exact saving 2).
    """
    weight = conv.weight[:, start:stop]
    return F.conv2d(x, weight, conv.bias if bias else None, conv.stride, conv.padding, conv.dilation)


class DCNPack(nn.Module):
    """Modulated deformable 3x3 conv whose offsets and mask come from a separate offset feature."""

    def __init__(self, channels: int, deform_groups: int, kernel: int = 3) -> None:
        super().__init__()
        self.deform_groups = deform_groups
        self.kernel = kernel
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.conv_offset_mask = nn.Conv2d(channels, 3 * deform_groups * kernel * kernel, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def offset_and_mask(self, offset_feature: Tensor) -> tuple[Tensor, Tensor]:
        """(offset, mask) in torchvision's layout: per group, per tap, (dy, dx) interleaved."""
        o1, o2, m = torch.chunk(self.conv_offset_mask(offset_feature), 3, dim=1)
        return torch.cat((o1, o2), dim=1), torch.sigmoid(m)

    def forward(self, x: Tensor, offset_feature: Tensor) -> Tensor:
        offset, mask = self.offset_and_mask(offset_feature)
        pad = self.kernel // 2
        return deform_conv2d(x, offset, self.weight, self.bias, padding=(pad, pad), mask=mask)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


def up2(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class PCDAlign(nn.Module):
    """Pyramid, cascading and deformable alignment (EDVR's PCD, the authors' variant).

    The first offset conv of each level and of the cascade acts on ``cat(neighbour, reference)``;
    ``neighbour_projections`` / ``reference_projections`` compute its two halves once per frame and
    ``forward`` consumes them.
    """

    def __init__(self, nf: int, deform_groups: int, slope: float) -> None:
        super().__init__()
        self.nf = nf
        self.slope = slope
        self.L3_offset_conv1 = _conv(2 * nf, nf)
        self.L3_offset_conv2 = _conv(nf, nf)
        self.L3_dcnpack = DCNPack(nf, deform_groups)
        for lvl in (2, 1):
            setattr(self, f"L{lvl}_offset_conv1", _conv(2 * nf, nf))
            setattr(self, f"L{lvl}_offset_conv2", _conv(2 * nf, nf))
            setattr(self, f"L{lvl}_offset_conv3", _conv(nf, nf))
            setattr(self, f"L{lvl}_dcnpack", DCNPack(nf, deform_groups))
            setattr(self, f"L{lvl}_fea_conv", _conv(2 * nf, nf))
        self.cas_offset_conv1 = _conv(2 * nf, nf)
        self.cas_offset_conv2 = _conv(nf, nf)
        self.cas_dcnpack = DCNPack(nf, deform_groups)

    def lrelu(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.slope)

    def neighbour_projections(self, feats: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Neighbour halves (no bias) of the level offset convs, levels 1..3."""
        nf = self.nf
        return tuple(
            split_conv(f, getattr(self, f"L{lvl}_offset_conv1"), 0, nf, bias=False)
            for lvl, f in zip((1, 2, 3), feats, strict=True)
        )

    def reference_projections(self, feats: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, ...]:
        """Reference halves (with bias) of the level offset convs (1..3) and of the cascade conv."""
        nf = self.nf
        levels = tuple(
            split_conv(f, getattr(self, f"L{lvl}_offset_conv1"), nf, 2 * nf, bias=True)
            for lvl, f in zip((1, 2, 3), feats, strict=True)
        )
        return levels + (split_conv(feats[0], self.cas_offset_conv1, nf, 2 * nf, bias=True),)

    def forward(
        self,
        nbr: tuple[Tensor, Tensor, Tensor],
        nbr_proj: tuple[Tensor, Tensor, Tensor],
        ref_proj: tuple[Tensor, Tensor, Tensor, Tensor],
    ) -> Tensor:
        """Align neighbour features (levels 1..3) to the reference; returns the L1 aligned feature."""
        s1, s2, s3 = nbr
        n1, n2, n3 = nbr_proj
        r1, r2, r3, rc = ref_proj
        lr = self.lrelu
        o3 = lr(self.L3_offset_conv2(lr(n3 + r3)))
        a3 = lr(self.L3_dcnpack(s3, o3))
        o2 = lr(n2 + r2)
        o2 = lr(self.L2_offset_conv3(lr(self.L2_offset_conv2(torch.cat((o2, 2 * up2(o3)), 1)))))
        a2 = lr(self.L2_fea_conv(torch.cat((self.L2_dcnpack(s2, o2), up2(a3)), 1)))
        o1 = lr(n1 + r1)
        o1 = lr(self.L1_offset_conv3(lr(self.L1_offset_conv2(torch.cat((o1, 2 * up2(o2)), 1)))))
        a1 = self.L1_fea_conv(torch.cat((self.L1_dcnpack(s1, o1), up2(a2)), 1))
        o = lr(self.cas_offset_conv2(lr(split_conv(a1, self.cas_offset_conv1, 0, self.nf, False) + rc)))
        return lr(self.cas_dcnpack(a1, o))


class ConvLSTMCell(nn.Module):
    """ConvLSTM cell: one 3x3 conv on ``cat(x, h)`` to 4 gates in the order i, f, o, g."""

    def __init__(self, in_ch: int, hidden: int) -> None:
        super().__init__()
        self.in_ch = in_ch
        self.hidden = hidden
        self.conv = nn.Conv2d(in_ch + hidden, 4 * hidden, 3, padding=1)

    def project_input(self, x: Tensor) -> Tensor:
        """The ``W_x * x + b`` part of the gates (docs/design.md section 2, exact saving 3)."""
        return split_conv(x, self.conv, 0, self.in_ch, bias=True)

    def step(self, x_proj: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step from a projected input and explicit state; returns the new ``(h, c)``."""
        gates = x_proj + split_conv(h, self.conv, self.in_ch, self.in_ch + self.hidden, bias=False)
        return self._update(gates, c)

    def first_step(self, x_proj: Tensor) -> tuple[Tensor, Tensor]:
        """``step`` from the zero state, without the recurrent conv on ``h = 0`` (bit-identical result).

        Exported graphs use it so the ``W_h * 0`` convolution is absent from the graph, whatever the batch
        axis (an exporter cannot fold it away when the zero state's shape depends on a dynamic batch).
        """
        return self._update(x_proj, None)

    @staticmethod
    def _update(gates: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor]:
        """The new ``(h, c)`` from the gate pre-activations; ``c = None``: the zero cell state."""
        i, f, o, g = torch.chunk(gates, 4, dim=1)
        if c is None:
            c_new = torch.sigmoid(i) * torch.tanh(g)
        else:
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return h_new, c_new


class ConvLSTM(nn.Module):
    """Holder matching the authors' ``lstm_*.cell_list.0`` key names."""

    def __init__(self, in_ch: int, hidden: int) -> None:
        super().__init__()
        self.cell_list = nn.ModuleList([ConvLSTMCell(in_ch, hidden)])

    @property
    def cell(self) -> ConvLSTMCell:
        return self.cell_list[0]
