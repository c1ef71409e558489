"""The authors' ``.pth`` is taken wherever a checkpoint is (detected by its keys, converted in memory),
and ``--backbone-weights imagenet|FILE`` (torchvision's VGG16 weights, from the hub cache or a file)."""

from __future__ import annotations

import urllib.error

import cv2
import numpy as np
import pytest
import torch
from test_convert_official import authors_state_dict

from esan.train import backbone, checkpoint
from esan.train.cli import main as esan_train
from esan.train.config import ESANConfig
from esan.train.errors import UserError
from esan.train.layers import vgg16_features
from esan.train.model import ESAN

torch.set_num_threads(1)
SMALL = {"widths": (8, 16, 24, 16, 16), "g": 2, "hidden": 12}  # the authors' layout at small widths
SMALL_CFG = ESANConfig(vgg_widths=(8, 16, 24, 16, 16), nf=16, deform_groups=2, hidden=12)


@pytest.fixture(scope="module")
def authors_pth(tmp_path_factory):
    sd = authors_state_dict(seed=1, **SMALL)
    sd["final_conv.0.weight"] *= 200  # spread the maps over (0, 1) so the comparisons below mean something
    path = tmp_path_factory.mktemp("official") / "ESAN-epoch_18.pth"
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope="module")
def converted_pt(authors_pth, tmp_path_factory):
    dst = tmp_path_factory.mktemp("converted") / "esan_official.pt"
    assert esan_train(["convert-official", str(authors_pth[0]), str(dst)]) == 0
    return dst


def _frames(folder, n=4, hw=(45, 70)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:04d}.png"), rng.integers(0, 256, (*hw, 3), dtype=np.uint8))
    return folder


def test_load_converts_the_authors_file_in_memory(authors_pth, converted_pt, capsys):
    path, sd = authors_pth
    capsys.readouterr()
    model = checkpoint.load(path)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "authors' ESAN-VSP weights" in err[0] and "convert-official" in err[0], err
    assert model.cfg == SMALL_CFG and not model.training
    ref = checkpoint.load(converted_pt)  # the same code path as convert-official
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert torch.equal(model.state_dict()["lstm_back.cell_list.0.conv.weight"], sd["lstm_forw.cell_list.0.conv.weight"])
    assert checkpoint.load_meta(path)["converted_from"] == "ESAN-VSP official"


def test_load_refuses_an_incomplete_authors_file(authors_pth, tmp_path):
    _, sd = authors_pth
    broken = {k: v for k, v in sd.items() if not k.startswith("pcd_align.L2")}
    torch.save({"state_dict": {f"module.{k}": v for k, v in broken.items()}}, tmp_path / "broken.pth")
    with pytest.raises(UserError, match="missing .*authors' ESAN-VSP"):
        checkpoint.load(tmp_path / "broken.pth")


def test_predict_takes_the_authors_file(authors_pth, converted_pt, tmp_path):
    src = _frames(tmp_path / "frames")
    assert esan_train(["predict", "--checkpoint", str(authors_pth[0]), "--source", str(src),
                       "--out", str(tmp_path / "a"), "--device", "cpu"]) == 0
    assert esan_train(["predict", "--checkpoint", str(converted_pt), "--source", str(src),
                       "--out", str(tmp_path / "b"), "--device", "cpu"]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [f"{i:04d}.png" for i in range(4)]
    for name in names:
        a = cv2.imread(str(tmp_path / "a" / name), cv2.IMREAD_GRAYSCALE)
        assert a.std() > 0 and np.array_equal(a, cv2.imread(str(tmp_path / "b" / name), cv2.IMREAD_GRAYSCALE))


def test_stream_torch_backend_takes_the_authors_file(authors_pth, converted_pt, tmp_path):
    from esan.runtime.cli import main as esan_rt

    src = _frames(tmp_path / "frames", n=5)
    for name, ckpt in (("a", authors_pth[0]), ("b", converted_pt)):
        assert esan_rt(["stream", "--source", str(src), "--checkpoint", str(ckpt), "--backend", "torch",
                        "--lookahead", "1", "--save-maps", str(tmp_path / name)]) == 0
    a = sorted((tmp_path / "a").glob("*.npy"))
    assert len(a) == 5
    for p in a:
        assert np.array_equal(np.load(p), np.load(tmp_path / "b" / p.name))


def test_bundle_cache_exports_the_authors_file(authors_pth, tmp_path, monkeypatch):
    """``esan-rt stream --checkpoint X.pth`` with ort/trt: runtime.cache -> export.onnx_export -> checkpoint.load."""
    pytest.importorskip("onnx")
    from esan.export.bundle_cache import ENV_VAR, ensure_bundle
    from esan.runtime.core.bundle import load_bundle

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "cache"))
    out = ensure_bundle(authors_pth[0], lookahead=1, log=lambda msg: None)
    assert load_bundle(out, verify_hashes=True).config["nf"] == 16


# ----------------------------------------------------------------------------- backbone weights


def _small_vgg_file(path, widths=(4, 8, 8, 8, 8), seed=3):
    torch.manual_seed(seed)
    sd = {f"features.{k}": torch.randn_like(v) for k, v in vgg16_features(widths).state_dict().items()}
    torch.save(sd, path)
    return sd


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    """torch's hub cache in a temp dir; downloads fail like a machine without network."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, dst):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(backbone, "_download", offline)
    return tmp_path / "hub"


def test_imagenet_weights_come_from_torchvisions_weights_api(hub):
    url = backbone.imagenet_weights().url
    assert url.endswith("vgg16-397923af.pth") and backbone.hub_file(url) == hub / "checkpoints" / "vgg16-397923af.pth"


def test_imagenet_without_network_says_how_to_get_them(hub):
    with pytest.raises(UserError) as info:
        backbone.imagenet_vgg16_file()
    msg = str(info.value)
    assert "\n" not in msg and "name resolution" in msg and "--backbone-weights /path/to/vgg16-397923af.pth" in msg
    assert str(hub / "checkpoints" / "vgg16-397923af.pth") in msg


def test_imagenet_uses_the_hub_cache_and_a_download(hub, monkeypatch):
    cached = backbone.hub_file(backbone.imagenet_weights().url)
    cached.parent.mkdir(parents=True)
    _small_vgg_file(cached)
    assert backbone.imagenet_vgg16_file() == cached  # no download attempted (it would fail)
    cached.unlink()
    monkeypatch.setattr(backbone, "_download", lambda url, dst: _small_vgg_file(dst, seed=4))
    assert backbone.imagenet_vgg16_file() == cached and cached.is_file()


def test_backbone_from_a_local_file_and_imagenet_refused_for_tiny(hub, tmp_path, capsys):
    cfg = ESANConfig(input_size=(32, 64), vgg_widths=(4, 8, 8, 8, 8), nf=8, deform_groups=2, hidden=8)
    sd = _small_vgg_file(tmp_path / "vgg.pth")
    model = ESAN(cfg)
    assert backbone.load_backbone(model, tmp_path / "vgg.pth") == 26
    assert torch.equal(model.base[17].weight, sd["features.17.weight"])
    with pytest.raises(UserError, match="--preset paper"):
        backbone.load_backbone(ESAN(cfg), "imagenet")  # refused before any download
    with pytest.raises(UserError, match="does not exist"):
        backbone.load_backbone(ESAN(cfg), tmp_path / "nope.pth")
    from esan.train.synth import SynthSpec, write_dataset

    data = write_dataset(tmp_path / "d", SynthSpec(videos=1, test_videos=1, frames=3, size=(40, 56)))
    capsys.readouterr()
    assert esan_train(["fit", "--data", str(data), "--setting", "synth", "--out", str(tmp_path / "r"),
                       "--preset", "tiny", "--backbone-weights", "imagenet", "--workers", "0"]) == 2
    assert "use --preset paper" in capsys.readouterr().err
