"""A backend that fails mid-stream, on the CPU: the pipeline closes every stream, finalises what each already
wrote (report, video) and re-raises the backend's error. A real (torch) backend, wrapped to fail on frame N."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from support.fakes import counter_reader

from esan.runtime.core.scheduler import MultiStreamScheduler
from esan.runtime.io.outputs import OutputOptions, Outputs
from esan.runtime.io.pipeline import Pipeline
from esan.runtime.io.sources import FrameSource

FAIL_AT = 16  # the 17th frame the backend encodes (over both streams) fails


class DeviceLost(RuntimeError):
    pass


def failing_on_frame(backend, n: int):
    """``backend`` whose ``encode_batch`` raises once it has encoded ``n`` frames in all (the rest is untouched)."""
    real, seen = backend.encode_batch, [0]

    def encode_batch(frames, valid):
        if seen[0] + len(frames) > n:
            raise DeviceLost(f"device lost at frame {n}")
        seen[0] += len(frames)
        return real(frames, valid)

    backend.encode_batch = encode_batch
    return backend


def test_backend_failure_closes_every_stream_finalises_outputs_and_reraises(tiny_checkpoint, tmp_path: Path):
    from esan.runtime.backends import open_backend

    backend = failing_on_frame(open_backend("torch", checkpoint=tiny_checkpoint, threads=1), FAIL_AT)
    sched = MultiStreamScheduler(backend, lookahead=2)
    lanes = []
    for i in range(2):
        src = FrameSource(counter_reader(30, (40, 60)), name=f"f{i}", kind="video", live=False, fps=25, queue_size=2)
        opts = OutputOptions(maps=tmp_path / f"maps{i}", maps_format="npy", video=tmp_path / f"v{i}.mp4")
        meta = {"backend": "torch", "lookahead": 2, "delay_frames": 2, "source_fps": 25.0, "source": f"s{i}"}
        lanes.append((src, Outputs(opts, meta, fps=25.0, stream_id=i)))
    pipe = Pipeline(sched, lanes, report=tmp_path / "r.json")
    with pytest.raises(DeviceLost, match="device lost at frame 16"):
        pipe.run()
    assert sched.streams == []  # every stream closed in the scheduler
    report = json.loads((tmp_path / "r.json").read_text())  # the report was still written
    assert len(report["streams"]) == 2
    total = 0
    for i, st in enumerate(report["streams"]):
        maps = sorted((tmp_path / f"maps{i}").glob("*.npy"))
        assert 0 < st["frames"] == len(maps)  # what was computed before the failure is on disk and counted
        assert [p.stem for p in maps] == [f"{k:06d}" for k in range(len(maps))]
        cap = cv2.VideoCapture(str(tmp_path / f"v{i}.mp4"))  # the video is finalised (readable), same frames
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(maps)
        cap.release()
        total += len(maps)
    assert 0 < total < FAIL_AT  # the lookahead holds back the last frames of each stream: not flushed
