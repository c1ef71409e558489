"""``esan-train prepare``: official download layouts (built here) -> the training layout, resumable."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.official_trees import HOLLYWOOD, STEP, UCF, dhf1k_tree, fixation_map, frame_folder_tree, saliency_map

from esan.train import prepare as prep
from esan.train.cli import main as esan_train
from esan.train.data import ClipDataset, read_fixations, read_map, scan_split
from esan.train.prepare_layouts import DATASETS


@pytest.fixture(scope="module")
def dhf1k(tmp_path_factory):
    return dhf1k_tree(tmp_path_factory.mktemp("dl") / "DHF1K")


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (symlinks resolved) with its content, markers without their source path."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name in (prep.MARKER, prep.REPORT):  # the same but for where it was written and when
                skip = ("source", "out", "already_prepared")
                data = json.dumps({k: v for k, v in json.loads(data).items() if k not in skip}).encode()
            out[str(p.relative_to(root))] = data
    return out


def test_dhf1k_frames_splits_pairs_and_report(dhf1k, tmp_path, capsys):
    out = tmp_path / "data"
    assert esan_train(["prepare", "dhf1k", "--src", str(dhf1k.root), "--out", str(out), "--jobs", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("DHF1K: 4 videos (training 2, val 1, test 1), 18 frames in")
    assert "1 video without annotations (not written), first: DHF1K/val/0602" in lines
    assert "1 frame without annotation (left out), first: DHF1K/training/0002/0006: no map, no fixation" in lines
    assert "1 annotation without a frame (left out), first: DHF1K/training/0001/0006: no frame" in lines
    assert any(line.startswith("1 annotation folder without a video, first: ") and line.endswith("0650")
               for line in lines)
    root = out / "DHF1K"
    assert sorted(p.name for p in (root / "training").iterdir()) == ["0001", "0002"]
    assert not (root / "val" / "0602").exists() and not (out / prep.TMP_DIR).exists()
    for v, split in ((1, "training"), (2, "training"), (601, "val"), (701, "test")):
        vdir = root / split / f"{v:04d}"
        n = dhf1k.frames[v] if split == "test" else len(set(dhf1k.annotated[v]) & set(range(1, dhf1k.frames[v] + 1)))
        frames = sorted((vdir / "images").iterdir())
        assert [p.name for p in frames] == [f"{k:04d}.png" for k in range(1, n + 1)], vdir
        for k, p in enumerate(frames, 1):  # frame k of the AVI under stem k: its brightness says which it is
            img = cv2.imread(str(p))
            assert abs(float(np.median(img)) - STEP * k) < 5, (p, np.median(img))
        if split == "test":
            assert sorted(p.name for p in vdir.iterdir()) == [prep.MARKER, "images"]
            continue
        for k in range(1, n + 1):
            assert np.abs(read_map(vdir / "maps" / f"{k:04d}.png") * 255 - saliency_map(k, v)).max() <= 0.5
            fix = sorted((vdir / "fixation" / "maps").glob(f"{k:04d}.*"))
            assert [p.suffix for p in fix] == ([".mat"] if v == 601 else [".png"])
            assert np.array_equal(read_fixations(fix[0]), fixation_map(k, v) > 0)
    report = json.loads((root / prep.REPORT).read_text())
    assert report["frames"] == 18 and report["splits"] == {"training": 2, "val": 1, "test": 1}
    videos = scan_split(out, "DHF1K", "training")  # the training reader takes the result as it is
    assert [len(v) for v in videos] == [5, 5]
    clip = ClipDataset(videos, clip_len=3, input_hw=(64, 96))[0]
    assert tuple(clip["frames"].shape) == (3, 3, 64, 96) and float(clip["fixations"].sum()) > 0
    assert [len(v) for v in scan_split(out, "DHF1K", "test", need_targets=False)] == [4]


@pytest.mark.parametrize("name,layout,link", [("hollywood2", HOLLYWOOD, True), ("ucf", UCF, False)])
def test_frame_folder_datasets(name, layout, link, tmp_path, capsys):
    src = frame_folder_tree(tmp_path / "dl", layout, ext=".jpg" if name == "ucf" else ".png")
    out = tmp_path / "data"
    argv = ["prepare", name, "--src", str(src), "--out", str(out)] + (["--link"] if link else [])
    assert esan_train(argv) == 0
    text = capsys.readouterr().out
    first_test = layout["testing"][0]
    assert f"1 frame without annotation (left out), first: {DATASETS[name]}/testing/{first_test}/" \
           f"{first_test}_00004: no fixation" in text
    ds = DATASETS[name]
    for split, videos in layout.items():
        for vname in videos:
            vdir = out / ds / split / vname
            images = sorted((vdir / "images").iterdir())
            n = 3 if (split, vname) == ("testing", first_test) else 4
            assert len(images) == n
            for p in images + sorted((vdir / "maps").iterdir()) + sorted((vdir / "fixation" / "maps").iterdir()):
                assert p.is_symlink() == link, p
                src_file = Path(os.path.realpath(p))
                assert src_file.is_relative_to(src) == link
                assert p.stat().st_size > 0
            assert images[0].suffix == (".jpg" if name == "ucf" else ".png")
        assert [v.name for v in scan_split(out, ds, split)] == sorted(videos)


def test_interrupted_run_resumes_to_the_same_tree(dhf1k, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    prep.prepare("dhf1k", dhf1k.root, whole, progress=False)
    part = tmp_path / "part"
    # a run killed earlier left a temp folder behind: it is rebuilt, never taken as complete
    stale = part / prep.TMP_DIR / "DHF1K" / "training" / "0001"
    (stale / "images").mkdir(parents=True)
    (stale / "images" / "0001.png").write_bytes(b"half")
    calls = []
    real_place = prep._place

    def flaky(src, dst, link):
        calls.append(dst)
        if len(calls) == 12:  # in the middle of the second video
            raise KeyboardInterrupt
        real_place(src, dst, link)

    monkeypatch.setattr(prep, "_place", flaky)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare("dhf1k", dhf1k.root, part, jobs=1, progress=False)
    present = [p for split in (part / "DHF1K").iterdir() for p in split.iterdir()]
    assert all((p / prep.MARKER).is_file() for p in present), "a video folder without its completeness marker"
    assert (part / "DHF1K" / "training" / "0001").is_dir() and not (part / "DHF1K" / "training" / "0002").exists()
    monkeypatch.setattr(prep, "_place", real_place)
    report = prep.prepare("dhf1k", dhf1k.root, part, jobs=2, progress=False)
    assert 1 <= report["already_prepared"] < 4
    assert _tree(part / "DHF1K") == _tree(whole / "DHF1K")
    again = prep.prepare("dhf1k", dhf1k.root, part, progress=False)  # nothing left to do
    assert again["already_prepared"] == 4 and again["frames"] == report["frames"]


def _one_line_error(argv, capsys) -> str:
    capsys.readouterr()
    assert esan_train(argv) == 2, argv
    err = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("prepare DHF1K:")]  # tqdm
    assert len(err) == 1 and err[0].startswith("esan-train: error: "), err
    return err[0]


def test_layout_errors_name_the_first_misfit(dhf1k, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(dhf1k.root, bad)
    (bad / "video" / "clip.mp4").write_bytes(b"x")
    msg = _one_line_error(["prepare", "dhf1k", "--src", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert str(bad / "video" / "clip.mp4") in msg and "001.AVI .. 1000.AVI" in msg
    (bad / "video" / "clip.mp4").unlink()
    (bad / "annotation" / "0002" / "maps" / "notes.txt").write_text("x")
    msg = _one_line_error(["prepare", "dhf1k", "--src", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert str(bad / "annotation" / "0002" / "maps" / "notes.txt") in msg
    assert not (tmp_path / "o").exists()  # nothing is written before the whole download is checked
    hw = frame_folder_tree(tmp_path / "hw", HOLLYWOOD)
    (hw / "training" / "actioncliptrain00002" / "frames").mkdir()
    msg = _one_line_error(["prepare", "hollywood2", "--src", str(hw), "--out", str(tmp_path / "o")], capsys)
    assert str(hw / "training" / "actioncliptrain00002" / "frames") in msg and "images/, maps/, fixation/" in msg
    assert "choose one of dhf1k, hollywood2, ucf" in _one_line_error(
        ["prepare", "diem", "--src", str(hw), "--out", str(tmp_path / "o")], capsys)
    assert "no training/ or testing/" in _one_line_error(
        ["prepare", "ucf", "--src", str(dhf1k.root / "video"), "--out", str(tmp_path / "o")], capsys)
    assert "has no video/ folder" in _one_line_error(
        ["prepare", "dhf1k", "--src", str(hw), "--out", str(tmp_path / "o")], capsys)
    foreign = tmp_path / "foreign" / "DHF1K" / "training" / "0001"
    foreign.mkdir(parents=True)
    msg = _one_line_error(["prepare", "dhf1k", "--src", str(dhf1k.root), "--out", str(tmp_path / "foreign")], capsys)
    assert str(foreign) in msg and "not written by esan-train prepare" in msg


def test_undecodable_video_is_named(tmp_path, capsys):
    src = dhf1k_tree(tmp_path / "dl")
    (src.root / "video" / "002.AVI").write_bytes(b"RIFF....not a video")
    msg = _one_line_error(["prepare", "dhf1k", "--src", str(src.root), "--out", str(tmp_path / "o"),
                           "--jobs", "1"], capsys)
    assert str(src.root / "video" / "002.AVI") in msg and "cannot decode" in msg


def test_jpg_frames_and_bad_options(dhf1k, tmp_path, capsys):
    report = prep.prepare("dhf1k", dhf1k.root, tmp_path / "j", frame_ext="jpg", jobs=3, progress=False)
    assert report["frames"] == 18
    video = scan_split(tmp_path / "j", "DHF1K", "val")[0]
    assert [p.name for p in video.frames] == ["0001.jpg", "0002.jpg", "0003.jpg", "0004.jpg"]
    assert abs(float(np.median(cv2.imread(str(video.frames[2])))) - 3 * STEP) < 5
    assert "--frame-ext must be one of png, jpg" in _one_line_error(
        ["prepare", "dhf1k", "--src", str(dhf1k.root), "--out", str(tmp_path / "k"), "--frame-ext", "bmp"], capsys)
    assert "--jobs must be >= 1" in _one_line_error(
        ["prepare", "dhf1k", "--src", str(dhf1k.root), "--out", str(tmp_path / "k"), "--jobs", "0"], capsys)
