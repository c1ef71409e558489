"""Dataset readers: matching by stem, clear mismatch errors, clip sampling and padding."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.io import savemat

from esan.train import data as D
from esan.train.errors import UserError

torch.set_num_threads(1)


def _write_video(folder: Path, stems, size=(24, 40), fmt="mat"):
    for sub in ("images", "maps", "fixation/maps"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for k, stem in enumerate(stems):
        img = np.full((*size, 3), 10 * (k + 1), np.uint8)
        cv2.imwrite(str(folder / "images" / f"{stem}.png"), img)
        cv2.imwrite(str(folder / "maps" / f"{stem}.png"), np.full(size, 10 * (k + 1), np.uint8))
        fix = np.zeros(size, np.uint8)
        fix[k % size[0], (3 * k) % size[1]] = 1
        if fmt == "mat":
            savemat(str(folder / "fixation" / "maps" / f"{stem}.mat"), {"I": fix})
        else:
            cv2.imwrite(str(folder / "fixation" / "maps" / f"{stem}.png"), fix * 255)


@pytest.fixture()
def root(tmp_path):
    _write_video(tmp_path / "DHF1K" / "training" / "001", ["1", "2", "10"])
    _write_video(tmp_path / "DHF1K" / "training" / "002", [f"{i:04d}" for i in range(1, 4)], fmt="png")
    _write_video(tmp_path / "DHF1K" / "val" / "700", ["a1", "a2"])
    return tmp_path


def test_settings_and_splits():
    assert D.datasets_of("iv") == ("DHF1K", "Hollywood-2", "UCF")
    assert D.datasets_of("i") == ("DHF1K",) and D.datasets_of("synth") == ("synth",)
    assert D.splits_of("DHF1K") == ("training", "val") and D.splits_of("UCF") == ("training", "testing")
    with pytest.raises(UserError, match="unknown setting"):
        D.datasets_of("v")


def test_match_by_stem_natural_order(root):
    vids = D.scan_split(root, "DHF1K", "training")
    assert [v.name for v in vids] == ["001", "002"]
    v = vids[0]
    assert v.stems == ["1", "2", "10"]  # natural order, not "1", "10", "2"
    for k, (f, m, x) in enumerate(zip(v.frames, v.maps, v.fixations, strict=True)):
        assert f.stem == m.stem == x.stem
        assert D.read_frame(f)[0, 0, 0] == 10 * (k + 1)
        assert D.read_map(m)[0, 0] == pytest.approx(10 * (k + 1) / 255)
        assert D.read_fixations(x).sum() == 1
    assert vids[1].fixations[0].suffix == ".png" and D.read_fixations(vids[1].fixations[0]).sum() == 1
    assert len(D.scan_setting(root, "i", "val")) == 1


def test_mismatch_names_video(root):
    (root / "DHF1K" / "training" / "002" / "maps" / "0002.png").unlink()
    with pytest.raises(UserError, match=r"002.*1 frame\(s\) without a maps/ file \(first: 0002\)"):
        D.scan_split(root, "DHF1K", "training")


def test_extra_fixation_file_is_an_error(root):
    fdir = root / "DHF1K" / "training" / "001" / "fixation" / "maps"
    (fdir / "10.mat").rename(fdir / "11.mat")
    with pytest.raises(UserError, match=r"video .*001.*first: 10\).*without a frame \(first: 11\)"):
        D.scan_split(root, "DHF1K", "training")


def test_bad_paths(root, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        D.scan_split(tmp_path / "nope", "DHF1K", "training")
    with pytest.raises(UserError, match="datasets under .*DHF1K"):
        D.scan_split(root, "UCF", "training")
    (root / "DHF1K" / "val" / "empty" / "images").mkdir(parents=True)
    with pytest.raises(UserError, match="no frames"):
        D.scan_split(root, "DHF1K", "val")


def test_mat_without_key(tmp_path):
    p = tmp_path / "x.mat"
    savemat(str(p), {"J": np.ones((2, 2))})
    with pytest.raises(UserError, match="no variable 'I'"):
        D.read_fixations(p)


def test_clip_indices_pad_with_last_frame():
    assert D.clip_indices(3, 0, 5) == [0, 1, 2, 2, 2]
    assert D.clip_indices(10, 4, 3) == [4, 5, 6]


def test_clip_dataset_shapes_padding_and_determinism(root):
    vids = D.scan_split(root, "DHF1K", "training")
    ds = D.ClipDataset(vids, clip_len=5, input_hw=(32, 64), seed=3)
    item = ds[0]
    assert item["frames"].shape == (5, 3, 32, 64)
    assert item["maps"].shape == item["fixations"].shape == (5, 1, 16, 32)
    assert torch.equal(item["frames"][2], item["frames"][4])  # padded by repeating the last frame
    assert all(ds.sample(i)[1] == 0 for i in range(20))  # 3-frame videos: the clip always starts at 0
    again = D.ClipDataset(vids, clip_len=5, input_hw=(32, 64), seed=3)
    assert all(ds.sample(i) == again.sample(i) for i in range(50))
    other = D.ClipDataset(vids, clip_len=2, input_hw=(32, 64), seed=4)
    mine = D.ClipDataset(vids, clip_len=2, input_hw=(32, 64), seed=3)
    assert [other.sample(i) for i in range(30)] != [mine.sample(i) for i in range(30)]
    # fixations stay single points inside the letterbox
    assert item["fixations"].sum(dim=(1, 2, 3)).tolist() == [1.0] * 5
    # letterbox: 24x40 frame in 32x64 -> picture 32x53 centred, zero (normalised) padding
    assert float(item["frames"][0, :, :, :5].abs().max()) == 0.0


def test_letterbox_fixations_keeps_points():
    fix = np.zeros((30, 50), np.uint8)
    fix[0, 0] = fix[29, 49] = fix[15, 25] = 1
    out, box = D.letterbox_fixations(fix, (20, 20))
    assert out.sum() == 3 and box.height < 20
    ys, xs = np.nonzero(out)
    assert ys.min() >= box.top and ys.max() < box.top + box.height


def test_step_sampler_resume_sees_same_batches(root):
    vids = D.scan_split(root, "DHF1K", "training")
    ds = D.ClipDataset(vids, clip_len=2, input_hw=(32, 64), seed=0)
    full = list(D.make_loader(ds, 2, 0, 4))
    tail = list(D.make_loader(ds, 2, 2, 4))
    assert len(full) == 4 and len(tail) == 2
    for a, b in zip(full[2:], tail, strict=True):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["maps"], b["maps"])
