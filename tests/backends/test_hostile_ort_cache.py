"""The ORT TensorRT-provider engine cache is keyed by the bundle's content and lies under the cache root."""

from __future__ import annotations

import json
import shutil

import onnxruntime

from esan.runtime.backends.ort_backend import providers_for
from esan.runtime.core.bundle import load_bundle
from tests.core.test_bundle import make_bundle


def _engine_cache(bundle_dir, monkeypatch) -> str:
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    trt, *_ = providers_for("tensorrt", load_bundle(bundle_dir), None)
    assert trt[0] == "TensorrtExecutionProvider"
    assert trt[1]["trt_timing_cache_path"] == trt[1]["trt_engine_cache_path"]
    return trt[1]["trt_engine_cache_path"]


def test_re_export_to_the_same_folder_gets_a_fresh_engine_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ESAN_CACHE_DIR", str(cache))
    bundle = make_bundle(tmp_path / "b", lookahead=2)
    first = _engine_cache(bundle, monkeypatch)
    assert first.startswith(str(cache / "ort-trt") + "/")  # under the cache root, not next to it
    shutil.rmtree(bundle)
    make_bundle(bundle, lookahead=3)  # another export, same path
    assert _engine_cache(bundle, monkeypatch) != first
    copy = tmp_path / "elsewhere"
    shutil.copytree(bundle, copy)  # the same content elsewhere shares its engines
    assert _engine_cache(copy, monkeypatch) == _engine_cache(bundle, monkeypatch)
    assert json.loads((copy / "manifest.json").read_text())["lookahead"] == 3
