"""ESAN.forward against a deliberately naive, frame-at-a-time re-implementation of docs/design.md section 2.

The naive version uses plain concatenation convs (no cached halves), one frame and one window at a
time, and recomputes every backward window from scratch, so it checks the cached/batched forward.
"""

import pytest
import torch
import torch.nn.functional as F

from esan.train.config import ESANConfig
from esan.train.model import ESAN

torch.set_num_threads(2)


def randomised_tiny() -> ESAN:
    torch.manual_seed(0)
    model = ESAN(ESANConfig.tiny()).eval()
    with torch.no_grad():  # non-zero offsets and masks, so sampling positions really move
        for name, p in model.named_parameters():
            if "conv_offset_mask" in name:
                p.normal_(0.0, 0.05)
    return model


def naive_features(m: ESAN, x: torch.Tensor):
    taps, y = [], x
    for i, layer in enumerate(m.base):
        y = layer(y)
        if i in (16, 23, 30):
            taps.append(y)
    return m.L1_conv(taps[0]), taps[1], taps[2]


def naive_pcd(m: ESAN, s, t):
    p = m.pcd_align
    lr = lambda v: F.leaky_relu(v, 0.1)  # noqa: E731
    up = lambda v: F.interpolate(v, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
    o3 = lr(p.L3_offset_conv2(lr(p.L3_offset_conv1(torch.cat([s[2], t[2]], 1)))))
    a3 = lr(p.L3_dcnpack(s[2], o3))
    o2 = lr(p.L2_offset_conv1(torch.cat([s[1], t[1]], 1)))
    o2 = lr(p.L2_offset_conv3(lr(p.L2_offset_conv2(torch.cat([o2, up(o3) * 2], 1)))))
    a2 = lr(p.L2_fea_conv(torch.cat([p.L2_dcnpack(s[1], o2), up(a3)], 1)))
    o1 = lr(p.L1_offset_conv1(torch.cat([s[0], t[0]], 1)))
    o1 = lr(p.L1_offset_conv3(lr(p.L1_offset_conv2(torch.cat([o1, up(o2) * 2], 1)))))
    a1 = p.L1_fea_conv(torch.cat([p.L1_dcnpack(s[0], o1), up(a2)], 1))
    o = lr(p.cas_offset_conv2(lr(p.cas_offset_conv1(torch.cat([a1, t[0]], 1)))))
    return lr(p.cas_dcnpack(a1, o))


def naive_cell(conv, x, h, c):
    i, f, o, g = torch.chunk(conv(torch.cat([x, h], 1)), 4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def naive_forward(m: ESAN, frames: torch.Tensor, lookahead):
    n, T = frames.shape[0], m.cfg.radius
    feats = [naive_features(m, frames[i : i + 1]) for i in range(n)]
    fused = []
    for t in range(n):
        aligned = []
        for k in range(-T, T + 1):
            j = min(max(t + k, 0), n - 1)
            aligned.append(naive_pcd(m, feats[j], feats[t]))
        fused.append(m.sc_fusion(torch.cat(aligned, 1)))
    zeros = torch.zeros(1, m.cfg.hidden, *fused[0].shape[2:])
    fwd_conv, bwd_conv = m.lstm_forw.cell_list[0].conv, m.lstm_back.cell_list[0].conv
    h, c, hf = zeros, zeros, []
    for t in range(n):
        h, c = naive_cell(fwd_conv, fused[t], h, c)
        hf.append(h)
    maps = []
    for t in range(n):
        end = n - 1 if lookahead is None else min(t + lookahead, n - 1)
        h, c = zeros, zeros
        for j in range(end, t - 1, -1):
            h, c = naive_cell(bwd_conv, fused[j], h, c)
        y = m.final_conv(hf[t] + h)
        maps.append(torch.sigmoid(F.interpolate(y, scale_factor=4, mode="bilinear", align_corners=False)))
    return torch.cat(maps, 0)


@pytest.fixture(scope="module")
def model():
    return randomised_tiny()


@pytest.mark.parametrize("n", [1, 3, 8])
@pytest.mark.parametrize("lookahead", [0, 1, 3, None])
def test_forward_matches_naive_reference(model, n, lookahead):
    torch.manual_seed(n)
    frames = torch.randn(1, n, 3, *model.cfg.input_size)
    with torch.no_grad():
        fast = model(frames, lookahead=lookahead)[0]
        slow = naive_forward(model, frames[0], lookahead)
    assert (fast - slow).abs().max().item() <= 1e-5


def test_batch_elements_are_independent(model):
    torch.manual_seed(1)
    frames = torch.randn(2, 4, 3, *model.cfg.input_size)
    with torch.no_grad():
        both = model(frames, lookahead=1)
        second = model(frames[1:], lookahead=1)
    assert (both[1:] - second).abs().max().item() <= 1e-5


def test_lookahead_covering_the_clip_equals_full_bidirectional(model):
    torch.manual_seed(2)
    frames = torch.randn(1, 5, 3, *model.cfg.input_size)
    with torch.no_grad():
        assert torch.allclose(model(frames, lookahead=4), model(frames, lookahead=None), atol=1e-6)


@pytest.mark.parametrize("chunk", [2, 3])
def test_backward_chunks_share_one_run_from_chunk_end_plus_lookahead(model, chunk):
    """Chunked approximation: frames of a chunk share the backward run from min(chunk_end + L, N-1)."""
    torch.manual_seed(3)
    n, L = 7, 1
    frames = torch.randn(1, n, 3, *model.cfg.input_size)
    with torch.no_grad():
        got = model(frames, lookahead=L, backward_chunk=chunk)[0]
        xf, xb = model.align_clip(model.encode_clip(frames))
        hf = model.run_forward_cell(xf)[0]
        for t in range(n):
            start = min(min((t // chunk) * chunk + chunk - 1, n - 1) + L, n - 1)
            h, c = model.zero_state(xb[:, 0])
            for j in range(start, t - 1, -1):
                h, c = model.cell_step("bwd", xb[:, j], h, c)
            want = model.decode(hf[t : t + 1], h)[0]
            assert (got[t] - want).abs().max().item() <= 1e-5
