"""Synthetic dataset: layout, both fixation formats, determinism, CLI."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from esan.train import data as D
from esan.train.cli import main as cli_main
from esan.train.synth import SynthSpec, make_video, parse_size, write_dataset

SPEC = SynthSpec(videos=2, test_videos=1, frames=4, size=(40, 56), seed=5)


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix == ".png":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_layout_and_readers(tmp_path):
    root = write_dataset(tmp_path, SPEC)
    train = D.scan_setting(root, "synth", "train")
    test = D.scan_setting(root, "synth", "val")
    assert len(train) == 2 and len(test) == 1 and all(len(v) == 4 for v in train + test)
    assert train[0].fixations[0].suffix == ".mat" and train[1].fixations[0].suffix == ".png"
    for v in train:
        for f, m, x in zip(v.frames, v.maps, v.fixations, strict=True):
            assert D.read_frame(f).shape == (40, 56, 3)
            smap, fix = D.read_map(m), D.read_fixations(x)
            assert smap.shape == fix.shape == (40, 56)
            assert fix.sum() >= 1 and set(np.unique(fix)) <= {0, 1}
            assert smap.max() == pytest.approx(1.0)
            # the map is the blurred fixations: it peaks near a fixation
            peak = np.unravel_index(np.argmax(smap), smap.shape)
            pts = np.argwhere(fix)
            assert np.min(np.abs(pts - np.array(peak)).sum(1)) <= 12


def test_deterministic_from_seed(tmp_path):
    a = _digest(write_dataset(tmp_path / "a", SPEC))
    b = _digest(write_dataset(tmp_path / "b", SPEC))
    c = _digest(write_dataset(tmp_path / "c", SynthSpec(videos=2, test_videos=1, frames=4, size=(40, 56), seed=6)))
    assert a == b and a != c


def test_fixations_follow_moving_objects():
    rng = np.random.default_rng(0)
    frames, fixes, _ = make_video(rng, 6, (60, 80), observers=40)
    # pixels that change between frames (moving discs) attract most fixations
    moving = np.abs(frames[1].astype(int) - frames[0].astype(int)).sum(-1) > 60
    moving = np.array(moving)
    near = 0
    pts = np.argwhere(fixes[0])
    ys, xs = np.nonzero(moving)
    for y, x in pts:
        if len(ys) and np.min(np.abs(ys - y) + np.abs(xs - x)) <= 10:
            near += 1
    assert near >= 0.6 * len(pts)


def test_parse_size():
    assert parse_size("120x160") == (120, 160)
    from esan.train.errors import UserError

    for bad in ("120", "ax3", "8x8", "1x2x3"):
        with pytest.raises(UserError):
            parse_size(bad)


def test_cli(tmp_path, capsys):
    assert cli_main(["synth", str(tmp_path / "s"), "--videos", "1", "--frames", "2", "--size", "32x48"]) == 0
    assert (tmp_path / "s" / "synth" / "training" / "vid000" / "images" / "0002.png").is_file()
    assert len(list((tmp_path / "s" / "synth" / "testing").iterdir())) == 2
    assert cli_main(["synth", str(tmp_path / "t"), "--size", "big"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("esan-train: error: --size")
