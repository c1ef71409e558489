"""Whole-video inference (streaming and official protocols), eval JSON, predict outputs, CLI errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from esan.runtime.core.letterbox import map_box
from esan.train import checkpoint
from esan.train.cli import main as cli_main
from esan.train.config import ESANConfig
from esan.train.evaluate import centre_bias, format_row, postprocess
from esan.train.model import ESAN, window_indices
from esan.train.predict import predict_maps, to_original
from esan.train.synth import SynthSpec, write_dataset

torch.set_num_threads(1)  # 2 shared cores: more threads only spin
# smaller than the tiny preset (same topology) to keep these tests fast on 2 shared cores
MICRO = ESANConfig(input_size=(32, 64), vgg_widths=(4, 8, 8, 8, 8), nf=8, deform_groups=2, hidden=8)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = ESAN(MICRO).eval()
    with torch.no_grad():
        for p in m.parameters():  # non-zero offsets so the deformable path matters
            p.add_(0.02 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def setup(tmp_path_factory, model):
    tmp = tmp_path_factory.mktemp("ev")
    root = write_dataset(tmp / "data", SynthSpec(videos=1, test_videos=2, frames=7, size=(40, 56), seed=1))
    ckpt = checkpoint.save(tmp / "m.pt", model)
    return tmp, root, ckpt


@pytest.mark.parametrize("lookahead", [0, 2, None])
def test_chunked_streaming_equals_forward(model, lookahead):
    x = torch.randn(1, 8, 3, *model.cfg.input_size)
    with torch.no_grad():
        ref = model(x, lookahead=lookahead)[0, :, 0]
    for chunk in (3, 64):
        got = predict_maps(model, lambda idx: x[0, list(idx)], 8, lookahead, chunk=chunk)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_official_protocol_matches_definition(model):
    n, k = 7, model.cfg.window
    x = torch.randn(1, n, 3, *model.cfg.input_size)
    got = predict_maps(model, lambda idx: x[0, list(idx)], n, protocol="official", chunk=7)
    expect = torch.zeros_like(got)
    with torch.no_grad():
        for phase in range(k):
            h = c = None
            for t in range(phase, n, k):
                clip = x[:, window_indices(t, n, model.cfg.radius)]  # the window as a clip of its own
                xf, _ = model.align_clip(model.encode_clip(clip))
                xt = xf[:, model.cfg.radius]  # its centre frame sees exactly this window
                if h is None:
                    h, c = model.zero_state(xt)
                h, c = model.cell_step("fwd", xt, h, c)
                expect[t] = model.decode(h, h)[0, 0]  # decoder(2H)
    torch.testing.assert_close(got, expect, atol=1e-5, rtol=0)


def test_to_original_and_helpers():
    m = np.random.default_rng(0).random((32, 48)).astype(np.float32)
    assert to_original(m, (45, 80), (64, 96)).shape == (45, 80)
    box = map_box((45, 80), (64, 96), (32, 48))  # the picture's place on the output canvas
    m[:] = 0
    m[box.top : box.top + box.height, box.left : box.left + box.width] = 1
    assert box.top > 0 and np.allclose(to_original(m, (45, 80), (64, 96)), 1.0)
    cb = centre_bias((30, 50))
    peak = tuple(int(i) for i in np.unravel_index(np.argmax(cb), cb.shape))
    assert cb.shape == (30, 50) and peak in {(14, 24), (15, 25), (14, 25), (15, 24)}
    pp = postprocess(m, 7)
    assert pp.max() == 255 and pp.shape == m.shape
    assert "AUC-J" in format_row({}) and "nan" in format_row({})


def test_eval_json(setup, tmp_path):
    _, root, ckpt = setup
    out = tmp_path / "r.json"
    args = ["eval", "--checkpoint", str(ckpt), "--data", str(root), "--dataset", "synth", "--lookahead", "2",
            "--max-frames", "5", "--out", str(out), "--device", "cpu"]
    assert cli_main(args) == 0
    res = json.loads(out.read_text())  # strict JSON (NaN written as null)
    assert res["frames"] == 10 and res["videos"] == 2 and res["split"] == "testing"
    assert res["protocol"] == "streaming" and res["lookahead"] == 2 and res["blur_sigma"] == 7.0
    for key in ("raw", "blurred"):
        assert set(res[key]) == {"auc_j", "sim", "s_auc", "cc", "nss", "kld"}
        for v in res[key].values():
            assert set(v) == {"mean", "frames", "skipped"} and v["frames"] + v["skipped"] == 10
            assert v["mean"] is None or np.isfinite(v["mean"])
    assert 0.0 <= res["raw"]["auc_j"]["mean"] <= 1.0


def test_eval_official_and_no_blur(setup, tmp_path, capsys):
    _, root, ckpt = setup
    out = tmp_path / "o.json"
    assert cli_main(["eval", "--checkpoint", str(ckpt), "--data", str(root), "--dataset", "synth",
                     "--protocol", "official", "--max-videos", "1", "--blur-sigma", "0", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["blurred"] is None and res["frames"] == 7
    assert "AUC-J" in capsys.readouterr().out


def test_predict_frame_dir_and_video(setup, tmp_path):
    _, root, ckpt = setup
    frames = root / "synth" / "testing" / "vid000" / "images"
    out = tmp_path / "maps"
    assert cli_main(["predict", "--checkpoint", str(ckpt), "--source", str(frames), "--out", str(out),
                     "--lookahead", "1", "--chunk", "3"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in frames.iterdir())
    m = cv2.imread(str(out / names[0]), cv2.IMREAD_UNCHANGED)
    assert m.shape == (40, 56) and m.dtype == np.uint8
    video = tmp_path / "v.avi"
    wr = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (70, 30))
    for k in range(4):
        wr.write(np.full((30, 70, 3), 40 * k, np.uint8))
    wr.release()
    out2 = tmp_path / "vmaps"
    assert cli_main(["predict", "--checkpoint", str(ckpt), "--source", str(video), "--out", str(out2)]) == 0
    names = sorted(p.name for p in out2.iterdir())
    assert names == [f"{i:06d}.png" for i in range(4)]
    assert cv2.imread(str(out2 / names[0]), cv2.IMREAD_UNCHANGED).shape == (30, 70)


def test_cli_errors_are_one_line(setup, tmp_path, capsys):
    _, root, ckpt = setup
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    cases = [
        ["eval", "--checkpoint", str(ckpt), "--data", str(tmp_path / "none"), "--dataset", "synth"],
        ["eval", "--checkpoint", str(bad), "--data", str(root), "--dataset", "synth"],
        ["predict", "--checkpoint", str(ckpt), "--source", str(tmp_path / "missing.mp4"), "--out", str(tmp_path)],
        ["eval", "--checkpoint", str(ckpt), "--data", str(root), "--dataset", "DHF1K"],
        ["eval", "--checkpoint", str(ckpt), "--data", str(root), "--dataset", "synth", "--protocol", "x"],
        ["eval", "--checkpoint", str(ckpt), "--data", str(root), "--dataset", "synth", "--lookahead", "-1"],
        ["predict", "--checkpoint", str(ckpt), "--source", str(root), "--out", str(tmp_path), "--lookahead", "x"],
    ]
    for args in cases:
        capsys.readouterr()
        assert cli_main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("esan-train: error: "), err
