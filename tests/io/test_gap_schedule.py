"""A gap splits a stream exactly (DESIGN: gaps): the maps before it are those of the clip that ends there,
the maps after it those of a clip that starts there from zero state, against ``ESAN.forward`` (fp32 1e-4);
frame numbers count the lost frames; a second stream in the same scheduler is unaffected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import BUNDLE_LOOKAHEAD, make_clip, reference_maps

from esan.runtime.core.scheduler import MultiStreamScheduler
from esan.runtime.io.outputs import OutputOptions, Outputs
from esan.runtime.io.pipeline import Pipeline
from esan.runtime.io.reconnect import Gap
from esan.runtime.io.sources import FrameSource

TOL = 1e-4


class GapReader:
    """Frames of a clip; an outage of ``lost`` frames before frame ``at`` (as a reconnecting reader reports it)."""

    def __init__(self, frames: list[np.ndarray], at: int, lost: int) -> None:
        self.frames, self.at, self.lost, self.i = frames, at, lost, 0
        self._gap: Gap | None = None

    def __call__(self) -> np.ndarray | None:
        if self.i >= len(self.frames):
            return None
        if self.i == self.at:
            self._gap = Gap(100.0, 101.5, self.lost, "disconnected", 2)
        self.i += 1
        return self.frames[self.i - 1]

    def take_gap(self) -> Gap | None:
        gap, self._gap = self._gap, None
        return gap


def _maps(folder: Path) -> dict[int, np.ndarray]:
    return {int(p.stem): np.load(p) for p in folder.glob("*.npy")}


def test_maps_on_both_sides_of_a_gap_equal_two_separate_clips(tmp_path: Path, tiny_model, ort_backend) -> None:
    clip, other = make_clip(11, (50, 90), seed=3), make_clip(9, (70, 40), seed=4)
    at, lost = 6, 5
    sources = [FrameSource(GapReader(clip, at, lost), name="cam", kind="url", live=False, fps=25),
               FrameSource(GapReader(other, -1, 0), name="file", kind="video", live=False, fps=25)]
    outs = [Outputs(OutputOptions(maps=tmp_path / str(i)), {"backend": "ort"}, fps=25, stream_id=i) for i in range(2)]
    sched = MultiStreamScheduler(ort_backend, BUNDLE_LOOKAHEAD, 1)
    run = Pipeline(sched, list(zip(sources, outs, strict=True))).run()
    s0, s1 = run.streams
    assert s0.gaps == [{"start": 100.0, "end": 101.5, "seconds": 1.5, "frames_lost": lost, "reason": "disconnected",
                        "attempts": 2, "resumed_at_frame": at + lost}]
    got = _maps(tmp_path / "0")
    assert sorted(got) == [*range(at), *range(at + lost, len(clip) + lost)]  # numbers count the lost frames
    before = reference_maps(tiny_model, clip[:at], BUNDLE_LOOKAHEAD)
    after = reference_maps(tiny_model, clip[at:], BUNDLE_LOOKAHEAD)
    for i in range(at):
        assert float(np.abs(got[i] - before[i]).max()) <= TOL, i
    for j in range(len(clip) - at):
        assert float(np.abs(got[at + lost + j] - after[j]).max()) <= TOL, j
    # not what one unbroken clip gives: the schedule really restarted at the gap
    whole = reference_maps(tiny_model, clip, BUNDLE_LOOKAHEAD)
    assert float(np.abs(got[at + lost] - whole[at]).max()) > 10 * TOL
    assert s1.gaps == [] and sorted(_maps(tmp_path / "1")) == list(range(len(other)))
    ref1 = reference_maps(tiny_model, other, BUNDLE_LOOKAHEAD)
    assert max(float(np.abs(_maps(tmp_path / "1")[i] - ref1[i]).max()) for i in range(len(other))) <= TOL
    assert sched.streams == []  # both segments and the other stream were flushed and closed
