"""The README's Python API example runs as written (model and clip paths swapped for test ones) and its
maps equal ``ESAN.forward`` on the decoded clip."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, make_clip, reference_maps

pytestmark = pytest.mark.usefixtures("shared_cache")  # the checkpoint's bundle is exported once per session


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("### Python API", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.+?)\n```", section, re.S)
    assert len(blocks) == 1, "the Python API section should hold exactly one python example"
    return blocks[0]


def test_readme_example_is_short_and_names_the_placeholders() -> None:
    code = readme_example()
    assert len(code.splitlines()) <= 14 and '"ckpt.pt"' in code and '"clip.mp4"' in code


def test_readme_example_streams_a_video_into_exact_maps(tmp_path: Path, tiny_model, tiny_checkpoint: Path) -> None:
    video = tmp_path / "clip.avi"
    hw = (48, 80)  # another aspect than the tiny model's 64x96 input: letterboxed
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (hw[1], hw[0]))
    for f in make_clip(13, hw, seed=5):
        writer.write(f)
    writer.release()
    code = readme_example().replace('"ckpt.pt"', repr(str(tiny_checkpoint))).replace('"clip.mp4"', repr(str(video)))
    scope: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), scope)  # noqa: S102 - our own README, the point of the test

    cap, decoded = cv2.VideoCapture(str(video)), []
    while (frame := cap.read()[1]) is not None:
        decoded.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    maps = scope["maps"]
    assert [m.index for m in maps] == list(range(len(decoded))) and len(decoded) == 13
    assert all(s.shape == hw and s.dtype == np.float32 for s in scope["saliency"])
    ref = reference_maps(tiny_model, decoded, 8)
    got = np.stack([m.saliency for m in maps])
    assert got.shape == ref.shape and float(np.abs(got - ref).max()) <= 1e-4
