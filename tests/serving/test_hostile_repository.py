"""``esan-rt serve --model-repository DIR`` replaces only a model folder it wrote itself."""

from __future__ import annotations

import pytest

from esan.runtime.core.errors import UserError
from esan.runtime.serving import repository as R
from esan.runtime.serving.repository import ServeOptions, write_repository
from tests.core.test_bundle import make_bundle


def test_foreign_esan_folder_is_refused_and_kept(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    repo = tmp_path / "repo"
    (repo / "esan").mkdir(parents=True)
    (repo / "esan" / "precious.txt").write_text("someone's work")
    with pytest.raises(UserError, match=r"esan exists and was not written by esan-rt serve"):
        write_repository(bundle, repo, ServeOptions())
    assert (repo / "esan" / "precious.txt").read_text() == "someone's work"
    assert sorted(p.name for p in repo.iterdir()) == ["esan"]  # no temporary folder left behind


def test_foreign_file_and_symlink_are_refused(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / R.MARKER).write_text("")  # even a marked folder is not followed through a symlink
    makers = (lambda p: p.write_text("x"), lambda p: p.symlink_to(elsewhere))
    for repo, make in zip((tmp_path / "r1", tmp_path / "r2"), makers, strict=True):
        repo.mkdir()
        make(repo / "esan")
        with pytest.raises(UserError, match="was not written by esan-rt serve"):
            write_repository(bundle, repo, ServeOptions())
    assert (elsewhere / R.MARKER).is_file() and (tmp_path / "r1" / "esan").read_text() == "x"


def test_own_folder_is_replaced_whole(tmp_path):
    bundle = make_bundle(tmp_path / "b")
    repo = tmp_path / "repo"
    model = write_repository(bundle, repo, ServeOptions())
    assert (model / R.MARKER).is_file()
    (model / "stale.txt").write_text("from the last write")
    assert write_repository(bundle, repo, ServeOptions(max_streams=3)) == model
    assert not (model / "stale.txt").exists() and "max_batch_size: 3" in (model / "config.pbtxt").read_text()
    assert sorted(p.name for p in repo.iterdir()) == ["esan"]
