"""benchmarks/chunk_quality.py: C = 1 is the exact schedule (CC = 1), chunked maps stay close (tiny)."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import REPO

pytest.importorskip("torch")


def test_chunk_one_is_exact_and_json_is_written(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import chunk_quality

    out = tmp_path / "cq.json"
    argv = ["--preset", "tiny", "--clips", "1", "--frames", "10", "--lookahead", "2", "--chunks", "1,4"]
    argv += ["--out", str(out)]
    assert chunk_quality.main(argv) == 0
    result = json.loads(out.read_text())
    rows = {r["chunk"]: r for r in result["rows"]}
    assert rows[1]["mean_cc"] == 1.0 and rows[1]["max_abs"] == 0.0
    assert 0.9 < rows[4]["mean_cc"] <= 1.0 and rows[4]["frames"] == 10
    sys.modules.pop("chunk_quality", None)


def test_load_clips_natural_order_and_unreadable_frame(tmp_path):
    import cv2
    import numpy as np

    from esan.bench.chunk_quality import load_clips
    from esan.runtime.core.errors import UserError

    images = tmp_path / "v1" / "images"
    images.mkdir(parents=True)
    for i in (2, 10):  # text order would put 10.png first
        cv2.imwrite(str(images / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (clip,) = load_clips(str(tmp_path), clips=1, frames=5, seed=0)
    assert [int(f[0, 0, 0]) for f in clip] == [2, 10] and clip[0].shape == (8, 8, 3)
    (images / "11.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="11.png"):
        load_clips(str(tmp_path), clips=1, frames=5, seed=0)
