"""Shapes, dtypes and size of the ESAN network for both presets."""

import torch

from esan.train.config import ESANConfig
from esan.train.model import ESAN, FEATURE_NAMES, count_parameters


def test_paper_parameter_count_matches_the_paper():
    n = count_parameters(ESAN(ESANConfig.paper()))
    assert abs(n - 114.5e6) / 114.5e6 < 0.005, n


def test_tiny_forward_shapes_dtype_and_range():
    torch.manual_seed(0)
    cfg = ESANConfig.tiny()
    model = ESAN(cfg).eval()
    x = torch.randn(2, 6, 3, *cfg.input_size)
    with torch.no_grad():
        y = model(x, lookahead=2)
    assert y.shape == (2, 6, 1, *cfg.output_size) and y.dtype == torch.float32
    assert torch.all((y > 0) & (y < 1))


def test_tiny_building_block_shapes():
    cfg = ESANConfig.tiny()
    model = ESAN(cfg).eval()
    with torch.no_grad():
        enc = model.encode(torch.randn(1, 3, *cfg.input_size))
        assert tuple(enc) == FEATURE_NAMES
        for name, lvl in (("f1", 1), ("f2", 2), ("f3", 3), ("nbr_p2", 2), ("ref_p3", 3), ("ref_pc", 1)):
            assert enc[name].shape == (1, cfg.nf, *cfg.level_size(lvl)), name
        win = {k: torch.stack([enc[k][0]] * cfg.window)[None] for k in ("f1", "f2", "f3", "nbr_p1", "nbr_p2", "nbr_p3")}
        xf, xb = model.align(win, enc)
        assert xf.shape == xb.shape == (1, 4 * cfg.hidden, *cfg.level_size(1))
        h, c = model.cell_step("fwd", xf, *model.zero_state(xf))
        assert h.shape == c.shape == (1, cfg.hidden, *cfg.level_size(1))
        assert model.decode(h, h).shape == (1, 1, *cfg.output_size)


def test_paper_forward_at_reduced_batch():
    torch.manual_seed(0)
    cfg = ESANConfig.paper()
    model = ESAN(cfg).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 2, 3, *cfg.input_size), lookahead=1)
    assert y.shape == (1, 2, 1, 128, 160) and torch.isfinite(y).all()


def test_first_step_from_zero_equals_a_full_step_bit_for_bit():
    torch.manual_seed(3)
    model = ESAN(ESANConfig.tiny()).eval()
    x = torch.randn(2, 4 * model.cfg.hidden, 5, 7) * 3
    h0, c0 = model.zero_state(x)
    for direction in ("fwd", "bwd"):
        with torch.no_grad():
            full = model.cell_step(direction, x, h0, c0)
            first = model.cell_first_step(direction, x)
        assert all(torch.equal(a, b) for a, b in zip(full, first, strict=True)), direction
