"""Checkpoints are never read with a torch whose ``weights_only=True`` can be bypassed (< 2.10)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from esan.train import checkpoint
from esan.train.errors import UserError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("version", ["2.4.0", "2.6.0+cu124", "2.9.1"])
def test_an_unsafe_torch_refuses_to_read_checkpoints(tmp_path, monkeypatch, version):
    path = tmp_path / "x.pt"
    torch.save({"format": "esan-rt-checkpoint"}, path)
    monkeypatch.setattr(torch, "__version__", version)
    with pytest.raises(UserError, match=rf"torch {re.escape(version)} can run code .*pip install 'torch>=2.10'"):
        checkpoint.read_file(path)


def test_a_safe_torch_reads_them(tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    torch.save({"a": torch.ones(2)}, path)
    for version in ("2.10.0", "2.14.1+cu130", "3.0.0a0"):
        monkeypatch.setattr(torch, "__version__", version)
        assert checkpoint.read_file(path)["a"].tolist() == [1.0, 1.0]


def test_the_train_extra_requires_a_safe_torch():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    found = [m for r in extra if (m := re.match(r"(torch|torchvision)>=([\d.]+)", r))]
    floors = {m[1]: tuple(int(x) for x in m[2].split(".")) for m in found}
    assert floors["torch"] >= (2, 10) and floors["torchvision"] >= (0, 25)  # torchvision 0.25 goes with torch 2.10
    assert any(r.startswith("torch>=") and "<=2.14.1" in r for r in extra)
