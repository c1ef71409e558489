"""Export edges that need no export run: argument checks (nothing written) and re-export over a bundle."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxscript")

from esan.export import bundle_files  # noqa: E402
from esan.export.onnx_export import MIN_OPSET, export_bundle  # noqa: E402
from esan.runtime.core.errors import UserError  # noqa: E402


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"opset": MIN_OPSET - 1}, f"--opset {MIN_OPSET - 1} is too old: DeformConv needs opset >= {MIN_OPSET}"),
        ({"lookahead": -1}, "--lookahead must be >= 0, got -1"),
        ({"dcn": "fast"}, "--dcn must be one of"),
        ({"precision": "int4"}, "--precision one of"),
        ({"batch": 4}, "--batch must be 'dynamic' or 1, got 4"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kwargs, message):
    out = tmp_path / "bundle"
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export_bundle(tmp_path / "never-read.pt", out, **kwargs)
    assert list(tmp_path.iterdir()) == []


def _bundle_dir(path, marker: str):
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"marker": marker}))
    (path / f"{marker}.onnx").write_bytes(marker.encode())
    return path


def test_reexport_replaces_an_existing_bundle_whole(tmp_path):
    out = _bundle_dir(tmp_path / "bundle", "old")
    bundle_files.prepare_target(out)  # an existing bundle may be replaced
    new = _bundle_dir(tmp_path / ".bundle.tmp-1", "new")
    new.chmod(0o700)
    bundle_files.install_bundle(new, out)
    assert json.loads((out / "manifest.json").read_text()) == {"marker": "new"}
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "new.onnx"]  # no stale file of the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # neither the temp dir nor the old copy left
    assert out.stat().st_mode & 0o777 != 0o700  # as readable as other outputs (umask), not mkdtemp's 0700


@pytest.mark.parametrize("what", ["file", "foreign_dir"])
def test_target_that_is_not_a_bundle_is_refused(tmp_path, what):
    out = tmp_path / "out"
    if what == "file":
        out.write_text("data")
    else:
        out.mkdir()
        (out / "mine.txt").write_text("x")
    with pytest.raises(UserError, match="exists and is not a bundle directory; choose another --out or empty it"):
        bundle_files.prepare_target(out)
    bundle_files.prepare_target(tmp_path / "new")  # absent: fine
    (tmp_path / "empty").mkdir()
    bundle_files.prepare_target(tmp_path / "empty")  # empty: fine
