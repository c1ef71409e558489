"""Counted FLOPs per frame of the naive and the cached schedule (steady state), per stage.

The real modules run once per stage on ``meta`` tensors (no memory, no compute) under
``torch.utils.flop_counter.FlopCounterMode``, which counts convolutions and matmuls as
``2 * MACs`` (bias adds, activations, interpolation and the ConvLSTM's element-wise gate math are
not counted). ``torchvision::deform_conv2d`` is invisible to it, so it gets an explicit formula:
``2*Cout*(Cin/groups)*kh*kw*Ho*Wo`` per sample for the convolution plus ``BILINEAR_FLOPS`` per
sampled input value (``Cin*kh*kw*Ho*Wo`` values per sample).
"""

from __future__ import annotations

from typing import Any

# per sampled value: 4 weighted taps (4 mul + 3 add) and the modulation mask (1 mul)
BILINEAR_FLOPS = 8
STAGES = ("encode", "align", "forward", "backward", "decode")


def dcn_flops(
    input_shape: Any, weight_shape: Any, offset_shape: Any, mask_shape: Any, bias_shape: Any, *args: Any,
    out_shape: Any = None, **kwargs: Any,
) -> int:  # fmt: skip
    """FLOPs of one ``torchvision::deform_conv2d`` call (shapes as given by FlopCounterMode)."""
    b, cin = int(input_shape[0]), int(input_shape[1])
    cout, cin_g, kh, kw = (int(v) for v in weight_shape)
    ho, wo = int(out_shape[2]), int(out_shape[3])
    conv = 2 * b * cout * cin_g * kh * kw * ho * wo
    sampling = BILINEAR_FLOPS * b * cin * kh * kw * ho * wo
    return conv + sampling


def counter() -> Any:
    """A silent ``FlopCounterMode`` that also counts ``deform_conv2d``."""
    import torch
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)
    from torch.utils.flop_counter import FlopCounterMode

    return FlopCounterMode(display=False, custom_mapping={torch.ops.torchvision.deform_conv2d: dcn_flops})


def count(fn: Any, *args: Any, **kwargs: Any) -> int:
    """FLOPs of ``fn(*args, **kwargs)`` (convs, matmuls and deform_conv2d)."""
    import torch

    with torch.no_grad(), counter() as fc:
        fn(*args, **kwargs)
    return int(fc.get_total_flops())


def stage_flops(cfg: Any, device: str = "meta") -> dict[str, dict[str, int]]:
    """FLOPs of one call of each engine of both schedules for the network ``cfg``.

    ``{"cached": {encode, align, cell_fwd, cell_bwd, decode}, "naive": {encode, align, cell_fwd,
    cell_bwd, decode}}``; the naive ``encode`` is one frame (the schedule runs it ``2T+1`` times).
    """
    import torch

    from esan.bench.naive_torch import build_naive_modules
    from esan.train.model import ESAN, FEATURE_NAMES, REFERENCE_NAMES, WINDOW_NAMES

    dev = torch.device(device)
    with dev:
        model = ESAN(cfg).eval()
    naive = {n: m.to(dev) for n, m in build_naive_modules(model, "fp32").items()}
    k, nf, hid = cfg.window, cfg.nf, cfg.hidden
    h, w = cfg.input_size
    lv = [cfg.level_size(i) for i in (1, 2, 3)]
    x = torch.zeros(1, 3, h, w, device=dev)
    with torch.no_grad():
        entry = model.encode(x)
    win = {n: entry[n].unsqueeze(1).expand(1, k, *entry[n].shape[1:]) for n in WINDOW_NAMES}
    ref = {n: entry[n] for n in REFERENCE_NAMES}
    g = torch.zeros(1, 4 * hid, *lv[0], device=dev)
    hs = torch.zeros(1, hid, *lv[0], device=dev)
    a = torch.zeros(1, nf, *lv[0], device=dev)
    wins = [torch.zeros(k, nf, *lv[i], device=dev) for i in range(3)]
    frame = torch.zeros(1, h, w, 3, dtype=torch.uint8, device=dev)
    valid = torch.ones(1, h, w, 1, dtype=torch.uint8, device=dev)
    assert len(entry) == len(FEATURE_NAMES)
    return {
        "cached": {
            "encode": count(model.encode, x),
            "align": count(model.align, win, ref),
            "cell_fwd": count(model.cell_step, "fwd", g, hs, hs),
            "cell_bwd": count(model.cell_step, "bwd", g, hs, hs),
            "decode": count(model.decode, hs, hs),
        },
        "naive": {
            "encode": count(naive["naive_encoder"], frame, valid),
            "align": count(naive["naive_aligner"], *wins),
            "cell_fwd": count(naive["naive_cell_fwd"], a, hs, hs),
            "cell_bwd": count(naive["naive_cell_bwd"], a, hs, hs),
            "decode": count(naive["decoder"], hs, hs),
        },
    }


def per_frame(calls: dict[str, int], radius: int, lookahead: int, backward_chunk: int, naive: bool) -> dict[str, float]:
    """Steady-state FLOPs per frame by stage (``STAGES``) plus ``total``.

    Naive: ``2T+1`` encodes, one align, one forward step, ``L+1`` backward steps, one decode.
    Cached: one of each, and ``(C+L)/C`` backward steps (``L+1`` for ``C=1``).
    """
    window = 2 * radius + 1
    bwd_steps = lookahead + 1 if naive else (backward_chunk + lookahead) / backward_chunk
    out = {
        "encode": calls["encode"] * (window if naive else 1),
        "align": calls["align"],
        "forward": calls["cell_fwd"],
        "backward": calls["cell_bwd"] * bwd_steps,
        "decode": calls["decode"],
    }
    out["total"] = sum(out.values())
    return {k: float(v) for k, v in out.items()}


def schedule_gflops(cfg: Any, lookahead: int, backward_chunk: int = 1) -> dict[str, dict[str, float]]:
    """``{"naive": {stage: GFLOPs/frame, "total": ...}, "cached": {...}}`` (naive is always C=1)."""
    calls = stage_flops(cfg)
    naive = per_frame(calls["naive"], cfg.radius, lookahead, 1, naive=True)
    cached = per_frame(calls["cached"], cfg.radius, lookahead, backward_chunk, naive=False)
    return {
        "naive": {k: round(v / 1e9, 4) for k, v in naive.items()},
        "cached": {k: round(v / 1e9, 4) for k, v in cached.items()},
    }
