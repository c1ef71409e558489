"""A hostile bundle cannot make the runtime read files outside its folder or load a native library."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest

from esan.runtime.core.bundle import load_bundle, sha256_file
from esan.runtime.core.errors import UserError
from tests.core.test_bundle import make_bundle


def _point(root: Path, graph: str, target: str, kind: str = "graphs") -> None:
    """Make the manifest name ``target`` for ``graph`` with a matching sha256 (as an attacker would)."""
    man = json.loads((root / "manifest.json").read_text())
    entry = man[kind][graph] if kind == "graphs" else man["engines"]["files"][graph]
    entry["file"] = target
    resolved = target if os.path.isabs(target) else root / target
    entry["sha256"] = sha256_file(resolved)
    (root / "manifest.json").write_text(json.dumps(man))


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("not part of any bundle")
    return path


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "symlinked_dir"])
def test_graph_file_outside_the_bundle_is_refused(tmp_path, secret, how):
    root = make_bundle(tmp_path / "b")
    if how == "absolute":
        target = str(secret)
    elif how == "dotdot":
        target = "../secret.txt"
    elif how == "symlink":
        (root / "link.onnx").symlink_to(secret)
        target = "link.onnx"
    else:
        (root / "sub").symlink_to(tmp_path)
        target = "sub/secret.txt"
    _point(root, "decoder", target)
    with pytest.raises(UserError, match=r"decoder file .* lies outside the bundle folder"):
        load_bundle(root)


def test_engine_file_outside_the_bundle_is_refused(tmp_path, secret):
    root = make_bundle(tmp_path / "b", engines=True)
    _point(root, "encoder", "../secret.txt", kind="engines")
    with pytest.raises(UserError, match=r"engine encoder file .* lies outside the bundle folder"):
        load_bundle(root)


@pytest.mark.parametrize("name", [None, 7, "", ["a"]])
def test_graph_file_that_is_not_a_name_is_refused(tmp_path, name):
    root = make_bundle(tmp_path / "b")
    man = json.loads((root / "manifest.json").read_text())
    man["graphs"]["cell_fwd"]["file"] = name
    (root / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(UserError, match="graph cell_fwd names no file"):
        load_bundle(root)


def test_symlink_inside_the_bundle_is_fine(tmp_path):
    root = make_bundle(tmp_path / "b")
    (root / "sub").mkdir()
    (root / "encoder.onnx").rename(root / "sub" / "real.onnx")
    (root / "encoder.onnx").symlink_to(root / "sub" / "real.onnx")
    assert load_bundle(root).graph_path("encoder") == root / "encoder.onnx"


def test_compare_never_loads_the_manifest_plugin_library(tmp_path, monkeypatch):
    """``engines.plugin_library`` in a manifest is ignored: the loader gets no path (its own search)."""
    from esan.export import compare
    from esan.runtime.backends import plugin_lib

    root = make_bundle(tmp_path / "b", dcn="plugin", engines=True)
    evil = tmp_path / "libevil.so"
    evil.write_bytes(b"\x7fELF not really")
    man = json.loads((root / "manifest.json").read_text())
    man["engines"]["plugin_library"] = str(evil)
    (root / "manifest.json").write_text(json.dumps(man))
    asked: list = []
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.9.0"))
    monkeypatch.setattr(plugin_lib, "load_plugin_library", lambda path=None: asked.append(path))
    compare._prepare_trt(load_bundle(root))
    assert asked == [None]
