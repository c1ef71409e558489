"""DCN pack: offset/mask layout checked independently of torchvision's own docs.

With a zero-initialised offset conv the pack is a plain 3x3 conv scaled by mask = sigmoid(0) = 0.5;
with constant non-zero offsets every output equals a hand-computed bilinear sum.
"""

import numpy as np
import torch
import torch.nn.functional as F

from esan.train.layers import DCNPack


def bilinear_zero_outside(img: np.ndarray, y: float, x: float) -> float:
    """Bilinear sample of a 2-D image; neighbours outside the image count as zero."""
    h, w = img.shape
    if y <= -1 or y >= h or x <= -1 or x >= w:
        return 0.0
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    total = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                total += wy * wx * img[yy, xx]
    return total


def test_zero_offsets_make_a_plain_conv_times_half_mask():
    torch.manual_seed(0)
    pack = DCNPack(channels=6, deform_groups=3)
    x, feat = torch.randn(2, 6, 5, 9), torch.randn(2, 6, 5, 9)
    want = 0.5 * F.conv2d(x, pack.weight, None, padding=1) + pack.bias.view(1, -1, 1, 1)
    assert (pack(x, feat) - want).abs().max().item() <= 1e-5


def test_constant_offsets_match_hand_computed_bilinear_samples():
    torch.manual_seed(1)
    c, g, h, w = 4, 2, 5, 7
    pack = DCNPack(channels=c, deform_groups=g)
    rng = np.random.default_rng(0)
    dy = rng.uniform(-2.5, 2.5, (g, 9))  # some taps land outside the image
    dx = rng.uniform(-2.5, 2.5, (g, 9))
    logits = rng.normal(0, 1, (g, 9))
    offset = np.stack([dy, dx], axis=-1).reshape(-1)  # per group, per tap, (dy, dx)
    with torch.no_grad():
        bias = np.concatenate([offset, logits.reshape(-1)])
        pack.conv_offset_mask.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    x = torch.randn(1, c, h, w)
    got = pack(x, torch.zeros(1, c, h, w)).detach().numpy()[0]

    xn, wt, b = x.numpy()[0], pack.weight.detach().numpy(), pack.bias.detach().numpy()
    mask = 1 / (1 + np.exp(-logits))
    per_group = c // g
    want = np.zeros((c, h, w))
    for o in range(c):
        for yy in range(h):
            for xx in range(w):
                acc = b[o]
                for ci in range(c):
                    grp = ci // per_group
                    for k in range(9):
                        ki, kj = divmod(k, 3)
                        v = bilinear_zero_outside(xn[ci], yy - 1 + ki + dy[grp, k], xx - 1 + kj + dx[grp, k])
                        acc += wt[o, ci, ki, kj] * mask[grp, k] * v
                want[o, yy, xx] = acc
    assert np.abs(got - want).max() <= 1e-4
