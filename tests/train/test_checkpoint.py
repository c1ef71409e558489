"""Checkpoint round trip, atomic writes and the one-line errors for bad files."""

import subprocess
import sys

import pytest
import torch

from esan.train import checkpoint
from esan.train.config import ESANConfig
from esan.train.errors import UserError
from esan.train.model import ESAN


@pytest.fixture()
def tiny(tmp_path):
    torch.manual_seed(0)
    model = ESAN(ESANConfig.tiny()).eval()
    path = checkpoint.save(tmp_path / "tiny.pt", model, steps=7, setting="synth")
    return model, path


def test_round_trip_restores_weights_config_and_meta(tiny):
    model, path = tiny
    loaded = checkpoint.load(path)
    assert loaded.cfg == model.cfg and not loaded.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    meta = checkpoint.load_meta(path)
    assert meta["steps"] == 7 and meta["setting"] == "synth" and "created_at" in meta and "package_version" in meta


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.pt")


def test_truncated_file(tiny, tmp_path):
    _, path = tiny
    bad = tmp_path / "bad.pt"
    bad.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        checkpoint.load(bad)


def test_file_from_another_program(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"epoch": 3, "weights": torch.zeros(2)}, other)
    with pytest.raises(UserError, match="not an esan-rt checkpoint"):
        checkpoint.load(other)
    authors = tmp_path / "authors.pth"
    torch.save({"base.0.weight": torch.zeros(1)}, authors)
    with pytest.raises(UserError, match="convert-official"):
        checkpoint.load(authors)


def test_weights_that_do_not_fit_the_config(tiny, tmp_path):
    _, path = tiny
    payload = torch.load(path, weights_only=True)
    payload["config"]["hidden"] = 8
    bad = tmp_path / "mismatch.pt"
    torch.save(payload, bad)
    with pytest.raises(UserError, match="do not fit the stored config"):
        checkpoint.load(bad)


def test_a_failed_save_keeps_the_previous_file(tiny, monkeypatch):
    model, path = tiny
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError):
        checkpoint.save(path, model)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name], "temporary file left behind"


def test_cli_turns_a_bad_checkpoint_into_one_line_and_nonzero_exit(tmp_path):
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint at all")
    proc = subprocess.run(
        [sys.executable, "-m", "esan.train.cli", "convert-official", str(bad), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a readable checkpoint" in lines[0]
    assert not (tmp_path / "out.pt").exists()
