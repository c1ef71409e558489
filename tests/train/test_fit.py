"""Trainer: bit-for-bit resume, Ctrl-C checkpoint, backbone weights, schedules, CLI errors."""

from __future__ import annotations

import json

import pytest
import torch

from esan.train import checkpoint, fit_state
from esan.train.cli import main as cli_main
from esan.train.config import ESANConfig
from esan.train.errors import UserError
from esan.train.fit import FitOptions, train
from esan.train.layers import vgg16_features
from esan.train.model import ESAN
from esan.train.schedule import lr_factor
from esan.train.synth import SynthSpec, write_dataset

torch.set_num_threads(1)  # 2 shared cores: more threads only spin
MICRO = ESANConfig(input_size=(32, 64), vgg_widths=(4, 8, 8, 8, 8), nf=8, deform_groups=2, hidden=8)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("fit") / "d", SynthSpec(videos=2, test_videos=1, frames=6,
                                                                          size=(40, 56), seed=2))


def _opts(data, out, **kw):
    base = dict(data=str(data), setting="synth", out=str(out), preset="tiny", steps=4, lr=1e-2, batch_size=2,
                clip_len=3, val_every=0, val_videos=0, save_every=0, workers=0, seed=7, config=MICRO,
                schedule="constant")
    base.update(kw)
    return FitOptions(**base)


def _weights(run):
    return checkpoint.load(run / fit_state.LAST).state_dict()


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_is_bit_for_bit(data, tmp_path):
    straight = train(_opts(data, tmp_path / "a"), progress=False)
    assert straight["step"] == 4
    train(_opts(data, tmp_path / "b", steps=2), progress=False)
    resumed = train(_opts(data, tmp_path / "b", steps=4, resume=True), progress=False)
    assert resumed["step"] == 4 and [r["step"] for r in resumed["history"]] == [3, 4]
    _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert [r["loss"] for r in straight["history"][2:]] == [r["loss"] for r in resumed["history"]]
    state = torch.load(tmp_path / "b" / fit_state.STATE, weights_only=True)
    assert state["step"] == 4 and "optimizer" in state and "scheduler" in state


def test_ctrl_c_saves_usable_checkpoint(data, tmp_path):
    def interrupt(step):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_opts(data, tmp_path / "c", schedule="cosine"), on_step=interrupt, progress=False)
    assert checkpoint.load_meta(tmp_path / "c" / fit_state.LAST)["step"] == 2
    checkpoint.load(tmp_path / "c" / fit_state.LAST)  # a usable checkpoint
    train(_opts(data, tmp_path / "c", schedule="cosine", resume=True), progress=False)
    train(_opts(data, tmp_path / "d", schedule="cosine"), progress=False)
    _assert_same(_weights(tmp_path / "c"), _weights(tmp_path / "d"))


def test_validation_best_log_and_scratch_warning(data, tmp_path, capsys):
    res = train(_opts(data, tmp_path / "v", steps=2, val_every=1, val_videos=1, val_frames=3), progress=False)
    assert "trains from scratch" in capsys.readouterr().err
    assert set(res["val"]) == {"auc_j", "sim", "cc", "nss", "kld"}
    lines = [json.loads(x) for x in (tmp_path / "v" / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2] and all("val" in x for x in lines)
    assert (tmp_path / "v" / fit_state.BEST).is_file()


def test_backbone_weights(tmp_path, capsys):
    ref = vgg16_features(MICRO.vgg_widths)
    torch.manual_seed(3)
    sd = {f"features.{k}": torch.randn_like(v) for k, v in ref.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)  # full vgg16 files also hold the classifier
    torch.save(sd, tmp_path / "vgg.pth")
    model = ESAN(MICRO)
    assert fit_state.load_backbone(model, tmp_path / "vgg.pth") == 26
    assert torch.equal(model.base[28].weight, sd["features.28.weight"])
    assert torch.equal(model.base[0].bias, sd["features.0.bias"])
    sd["features.0.weight"] = torch.zeros(1, 3, 3, 3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="does not fit"):
        fit_state.load_backbone(ESAN(MICRO), tmp_path / "bad.pth")
    torch.save({"x": torch.zeros(1)}, tmp_path / "none.pth")
    with pytest.raises(UserError, match="features"):
        fit_state.load_backbone(ESAN(MICRO), tmp_path / "none.pth")


def test_backbone_matches_torchvision_layout():
    from torchvision.models.vgg import cfgs, make_layers

    tv = make_layers(cfgs["D"]).state_dict()
    own = vgg16_features((64, 128, 256, 512, 512)).state_dict()
    assert {k: tuple(v.shape) for k, v in tv.items()} == {k: tuple(v.shape) for k, v in own.items()}


def test_schedules():
    assert lr_factor("constant", 50, 100) == 1.0
    assert lr_factor("step", 60, 100) == 1.0 and lr_factor("step", 70, 100) == 0.1
    assert lr_factor("cosine", 0, 100) == pytest.approx(1.0) and lr_factor("cosine", 100, 100) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        lr_factor("linear", 0, 1)


def test_fit_cli_errors(data, tmp_path, capsys):
    cases = [
        ["fit", "--data", str(tmp_path / "nope"), "--setting", "synth", "--out", str(tmp_path / "r")],
        ["fit", "--data", str(data), "--setting", "i", "--out", str(tmp_path / "r")],
        ["fit", "--data", str(data), "--setting", "v", "--out", str(tmp_path / "r")],
        ["fit", "--data", str(data), "--setting", "synth", "--out", str(tmp_path / "r"), "--preset", "huge"],
        ["fit", "--data", str(data), "--setting", "synth", "--out", str(tmp_path / "r"), "--schedule", "linear"],
        ["fit", "--data", str(data), "--setting", "synth", "--out", str(tmp_path / "r2"), "--resume"],
        ["fit", "--data", str(data), "--setting", "synth", "--out", str(tmp_path / "r3"), "--steps", "0"],
    ]
    for args in cases:
        capsys.readouterr()
        assert cli_main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("esan-train: error: "), err


def test_fit_cli_runs(data, tmp_path, capsys):
    assert cli_main(["fit", "--data", str(data), "--setting", "synth", "--out", str(tmp_path / "t"),
                     "--preset", "tiny", "--steps", "1", "--batch-size", "1", "--clip-len", "2",
                     "--val-videos", "1", "--val-frames", "2", "--workers", "0", "--device", "cpu"]) == 0
    assert "done: step 1" in capsys.readouterr().out
    assert checkpoint.load(tmp_path / "t" / fit_state.LAST).cfg == ESANConfig.tiny()


def test_resume_refuses_inconsistent_state(data, tmp_path):
    train(_opts(data, tmp_path / "m", steps=1), progress=False)
    state = torch.load(tmp_path / "m" / fit_state.STATE, weights_only=True)
    state["step"] = 5
    torch.save(state, tmp_path / "m" / fit_state.STATE)
    with pytest.raises(UserError, match="disagree"):
        train(_opts(data, tmp_path / "m", steps=2, resume=True), progress=False)
