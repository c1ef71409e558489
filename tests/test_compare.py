"""``esan-rt compare`` on the tiny bundle prints one row per graph output and notes skipped backends."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from esan.runtime.cli import main  # noqa: E402


def test_compare_prints_table(tiny_bundle, tiny_checkpoint, capsys):
    rc = main(["compare", str(tiny_bundle), "--checkpoint", str(tiny_checkpoint), "--backends", "ort,trt"])
    out = capsys.readouterr().out
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["backend", "graph", "output", "max_abs", "corr", "ok"]
    rows = [line.split() for line in lines if line.startswith("ort ")]
    assert {r[1] for r in rows} == {"encoder", "aligner", "cell_fwd", "cell_bwd", "bwd_window", "decoder"}
    assert len(rows) == 10 + 2 + 2 + 2 + 1 + 1
    assert all(r[-1] == "yes" and float(r[3]) <= 1e-4 for r in rows)
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        assert "trt: skipped" in out and "TensorRT" in out


def test_compare_rejects_other_checkpoint(tiny_bundle, tmp_path, capsys):
    import torch

    from esan.train.checkpoint import save
    from esan.train.config import ESANConfig
    from esan.train.model import ESAN

    cfg = ESANConfig(input_size=(32, 64), vgg_widths=(8, 16, 24, 16, 16), nf=16, deform_groups=2, hidden=16)
    torch.manual_seed(0)
    other = save(tmp_path / "other.pt", ESAN(cfg))
    rc = main(["compare", str(tiny_bundle), "--checkpoint", str(other), "--backends", "ort"])
    assert rc == 2
    assert "another config" in capsys.readouterr().err
