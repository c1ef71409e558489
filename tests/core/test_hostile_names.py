"""Credentials in URLs never reach a log line; odd frame-file names never end in a traceback."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from esan.runtime.core.framefiles import list_frames
from esan.runtime.io.sources import open_folder, redact_url


@pytest.mark.parametrize(("url", "secrets", "kept"), [
    ("rtsp://admin:p@ss@cam/live", ["p@ss", "admin", "ss@cam"], "rtsp://***@cam/live"),
    ("rtsp://a@b:c@d@10.0.0.5:554/x?fps=5", ["a@b", "c@d"], "rtsp://***@10.0.0.5:554/x?fps=5"),
    ("https://h/v.m3u8?access_token=T0K&w=1", ["T0K"], "https://h/v.m3u8?access_token=***&w=1"),
    ("https://h/v?api_key=K3Y&apikey=K4Y&passwd=PW", ["K3Y", "K4Y", "PW"], "https://h/v?api_key=***&apikey=***&passwd=***"),
    ("https://b.s3.amazonaws.com/c.mp4?X-Amz-Credential=AKIA1&X-Amz-Signature=5IG&X-Amz-Expires=60",
     ["AKIA1", "5IG"], "https://b.s3.amazonaws.com/c.mp4?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60"),
    ("http://h/cam#id_token=JWT", ["JWT"], "http://h/cam#id_token=***"),
    ("http://h/cgi?user=root&pwd=PWD&channel=2", ["root", "PWD"], "http://h/cgi?user=***&pwd=***&channel=2"),
])  # fmt: skip
def test_redaction_hides_every_secret_and_keeps_the_rest(url, secrets, kept):
    red = redact_url(url)
    assert red == kept and not any(s in red for s in secrets)


@pytest.mark.parametrize("url", ["http://h/path@x?fps=25&channel=1", "rtsp://10.0.0.5/a", "/data/1@2.mp4"])
def test_redaction_leaves_urls_without_secrets_alone(url):
    assert redact_url(url) == url


def test_frame_names_with_non_decimal_digits_sort_without_a_traceback(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    names = ["1²2.png", "10.png", "2.png", "01.png", "1.png", "٣.png", "frame③.png"]  # ² ③: digits, not decimal
    for n in names:
        assert cv2.imwrite(str(tmp_path / "x.png"), img)
        (tmp_path / "x.png").rename(tmp_path / n)
    order = [p.name for p in list_frames(tmp_path)]
    assert order == ["01.png", "1.png", "1²2.png", "2.png", "٣.png", "10.png", "frame③.png"]
    assert sum(1 for _ in open_folder(tmp_path)) == len(names)  # read to the end: its thread ends
