"""``--segment-seconds`` / ``--keep``: rolled outputs, every closed segment complete and playable; retention."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support.fakes import FakeScheduler, counter_reader
from support.viewtools import video_frames

from esan.runtime.core.errors import UserError
from esan.runtime.io.outputs import OutputOptions, Outputs, check_outputs
from esan.runtime.io.pipeline import run_stream
from esan.runtime.io.segments import Retention, SegmentRoller, parse_keep
from esan.runtime.io.sources import FrameSource


def test_rolled_segments_each_play_and_keep_bounds_them(tmp_path: Path) -> None:
    opts = OutputOptions(video=tmp_path / "out.mp4", maps=tmp_path / "maps", segment_seconds=0.5, keep="3")
    check_outputs(opts)
    src = FrameSource(counter_reader(120), name="cam", kind="video", live=True, fps=40, pace_fps=40, queue_size=64)
    outputs = Outputs(opts, {"backend": "fake", "live": True}, fps=40)
    summary = run_stream(src, FakeScheduler(delay=2), outputs)
    assert summary.frames == 120
    roller = outputs.roller
    assert len(roller.closed) >= 5  # ~3 s in 0.5 s segments: the oldest were deleted
    videos = sorted(tmp_path.glob("out-*.mp4"))
    maps = sorted(p for p in (tmp_path / "maps").iterdir())
    assert [v.name[4:-4] for v in videos] == [m.name for m in maps] == roller.closed[-3:]  # the newest 3 kept
    assert not [p for p in tmp_path.rglob(".*")]  # no partial (hidden) file or folder left
    indices = []
    for video, folder in zip(videos, maps, strict=True):
        got = sorted(int(p.stem) for p in folder.glob("*.npy"))
        rows = (tmp_path / f"{video.stem}.latency.csv").read_text().splitlines()
        assert rows[0] == "frame,capture_to_written_ms" and [int(r.split(",")[0]) for r in rows[1:]] == got
        assert video_frames(video) == len(got) > 0  # closed, so it plays to its last frame
        indices += got
    assert indices == list(range(indices[0], 120))  # the kept segments are the last maps, none missing


def test_a_segment_being_written_is_hidden_until_complete(tmp_path: Path) -> None:
    roller = SegmentRoller(60, None, tmp_path / "v.mp4", tmp_path / "maps")
    roller.open()
    assert roller.video_path.name.startswith(".") and roller.maps_dir.name.startswith(".")
    roller.record(0, 12.5)
    roller.video_path.write_bytes(b"x")
    assert roller.segments() == {}  # not a complete segment yet
    stamp = roller.stamp
    roller.close()
    assert sorted(p.name for p in roller.segments()[stamp]) == [stamp, f"v-{stamp}.latency.csv", f"v-{stamp}.mp4"]


def _fake_segment(roller: SegmentRoller, size: int, age_s: float = 0.0) -> str:
    roller.open()
    (roller.maps_dir / "000000.npy").write_bytes(b"x" * size)
    stamp = roller.stamp
    roller.keep, keep = None, roller.keep
    roller.close()
    roller.keep = keep
    past = time.time() - age_s
    for p in roller.segments()[stamp]:
        os.utime(p, (past, past))
    return stamp


@pytest.mark.parametrize("keep, kept", [("2", [3, 4]), ("2h", [2, 3, 4]), ("3KB", [3, 4]), ("1KB", [4])])
def test_keep_by_count_age_and_size(tmp_path: Path, keep: str, kept: list[int]) -> None:
    """Five segments of ~1040 bytes (a map and the latency log), 5 h, 3 h, 60 s, 30 s and 0 s old; the newest
    one is always kept."""
    roller = SegmentRoller(60, parse_keep(keep), None, tmp_path / "m")
    ages = [5 * 3600, 3 * 3600, 60, 30, 0]
    stamps = [_fake_segment(roller, 1000, age) for age in ages]
    roller.apply_keep()
    assert list(roller.segments()) == [stamps[i] for i in kept]


def test_bad_keep_and_segment_values_are_one_clear_error(tmp_path: Path) -> None:
    for bad in ("0", "soon", "-3h", "12x"):
        with pytest.raises(UserError, match="--keep must be"):
            parse_keep(bad)
    with pytest.raises(UserError, match="--segment-seconds must be > 0"):
        check_outputs(OutputOptions(maps=tmp_path / "m", segment_seconds=0))
    with pytest.raises(UserError, match="--keep applies to segments"):
        check_outputs(OutputOptions(maps=tmp_path / "m", keep="3"))
    assert parse_keep("20GB") == Retention(bytes=20 * 10**9) and parse_keep("90m") == Retention(age_s=5400)
