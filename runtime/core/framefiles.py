"""Folders of frames: which files count as images and their order (natural: 2.png before 10.png)."""

from __future__ import annotations

import os
import re
from pathlib import Path

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def natural_key(text: str) -> tuple[list, str]:
    """Sort key that orders embedded numbers by value: ``frame2 < frame10``; ties (``01``/``1``) by name.

    The split alternates text and runs of decimal digits (any script's, all of which ``int`` reads); a
    character such as ``²`` is a digit to ``str.isdigit`` but not decimal, so it stays text.
    """
    parts = re.split(r"(\d+)", text)
    return [int(t) if i % 2 else t for i, t in enumerate(parts)], text


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """Image files of ``folder`` in natural order of their names."""
    files = (p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    return sorted(files, key=lambda p: natural_key(p.name))
