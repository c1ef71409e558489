"""``esan-train prepare`` flushes a video's files to disk before renaming its folder into place."""

from __future__ import annotations

import os
from pathlib import Path

from support.official_trees import dhf1k_tree

from esan.train import prepare as prep


def test_every_file_is_flushed_before_its_folder_is_renamed(tmp_path, monkeypatch):
    src = dhf1k_tree(tmp_path / "dl" / "DHF1K")
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(a, b) -> None:
        events.append(("rename", str(a)))
        real_rename(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(prep.os, "rename", rename)
    out = tmp_path / "data"
    prep.prepare("dhf1k", src.root, out, jobs=1, progress=False)
    renames = [i for i, (kind, _) in enumerate(events) if kind == "rename"]
    assert len(renames) == 4  # four videos
    for i in renames:
        tmp = events[i][1]
        final = out / Path(tmp).relative_to(out / prep.TMP_DIR)
        files = {str(tmp / p.relative_to(final)) for p in final.rglob("*") if not p.is_symlink()}
        flushed = {path for kind, path in events[:i] if kind == "fsync"}
        assert files <= flushed, sorted(files - flushed)[:3]
