"""TensorRT glue hardened (issue 13, section 2), checked with TensorRT and CUDA simulated (tests/support/trt_fakes.py).

TrtBackend: a None execution context, a refused tensor address, close() after a sticky CUDA error, an
old driver named by its CUDA error, one process-wide logger. plugin_lib: the load-time-registration
build is dlopened RTLD_GLOBAL (a real shared library built here) and not handed to TensorRT again.
pyproject: the TensorRT wheel and cuda-python agree on the CUDA major version.
"""

from __future__ import annotations

import ctypes
import gc
import re
import shutil
import subprocess
import sys
import types
import weakref
from pathlib import Path

import pytest
from conftest import REPO, make_clip
from support.trt_fakes import CudaError, FakeCudart, bundle_with_engines, fake_tensorrt_module, install_cudart

from esan.runtime.backends import open_backend, plugin_lib
from esan.runtime.core import plugin_spec
from esan.runtime.core.bundle import load_bundle
from esan.runtime.core.errors import UserError
from esan.runtime.core.processor import StreamProcessor


@pytest.fixture
def sim(tiny_bundle, tmp_path, monkeypatch):
    """``open(**fake_options) -> (backend or exception, cudart)`` on a simulated GPU."""

    def open_sim(cudart: FakeCudart | None = None, **fake):
        cudart = cudart or FakeCudart()
        root = tmp_path / f"bundle{len(list(tmp_path.iterdir()))}"
        bundle_with_engines(tiny_bundle, root)
        trt = fake_tensorrt_module(load_bundle(root), **fake)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        install_cudart(monkeypatch, cudart)
        return root, trt, cudart

    return open_sim


def test_execution_context_none_is_one_line_and_releases_everything(sim):
    root, _, cudart = sim(context_fails="aligner")
    with pytest.raises(UserError, match="execution context for aligner") as exc:
        open_backend("trt", bundle_dir=root, device="cuda")
    assert "\n" not in str(exc.value) and "GPU memory" in str(exc.value)
    assert not cudart.buffers and cudart.streams_destroyed == 1


def test_refused_tensor_address_raises(sim):
    root, _, cudart = sim(refuse_address="encoder:valid")
    backend = open_backend("trt", bundle_dir=root, device="cuda", lookahead=2)
    with pytest.raises(RuntimeError, match="encoder:valid"):
        StreamProcessor(backend, 2).push(make_clip(1)[0])
    backend.close()
    assert not cudart.buffers


def test_close_after_a_sticky_cuda_error_releases_buffers_and_stream(sim):
    root, _, cudart = sim()
    backend = open_backend("trt", bundle_dir=root, device="cuda", lookahead=2)
    proc = StreamProcessor(backend, 2)
    frames = make_clip(6, seed=3)
    emitted = [r for f in frames[:5] for r in proc.push(f)]
    assert emitted, "the pipeline should have produced maps before the failure"
    allocated = set(cudart.buffers)
    cudart.sticky = CudaError.cudaErrorIllegalAddress  # from now on every CUDA call fails
    with pytest.raises(RuntimeError, match="cudaErrorIllegalAddress"):
        proc.push(frames[5])
    with pytest.warns(RuntimeWarning, match="cudaErrorIllegalAddress"):
        backend.close()
    assert not cudart.buffers and allocated <= set(cudart.freed)
    assert cudart.streams_destroyed == 1
    backend.close()  # a second close is harmless
    assert cudart.streams_destroyed == 1


def test_old_driver_is_named_not_no_gpu(sim):
    root, _, cudart = sim(FakeCudart(device_count_error=CudaError.cudaErrorInsufficientDriver))
    with pytest.raises(UserError) as exc:
        open_backend("trt", bundle_dir=root, device="cuda")
    msg = str(exc.value)
    assert "cudaErrorInsufficientDriver" in msg and "driver" in msg and "no CUDA GPU" not in msg
    assert not cudart.buffers and cudart.streams_destroyed == 0  # refused before anything was taken


def test_one_process_wide_logger_for_libnvinfer_plugins(sim):
    root, trt, _ = sim()
    for _ in range(2):
        backend = open_backend("trt", bundle_dir=root, device="cuda", lookahead=2)
        backend.close()
        del backend
    gc.collect()
    assert len(trt.plugin_inits) == 1  # registered once per process
    logger = weakref.ref(trt.plugin_inits[0])
    trt.plugin_inits.clear()
    gc.collect()
    assert logger() is not None and logger() is plugin_lib.trt_logger(trt)  # still alive: the library keeps it


# -- plugin library loading -------------------------------------------------------------------------
def _shared_library(tmp_path: Path, symbol: str, load_time_registration: bool) -> Path:
    """A real shared library exporting ``int <symbol>``; with a constructor setting it to 1 when asked."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the test library")
    ctor = f"__attribute__((constructor)) static void reg(void) {{ {symbol} = 1; }}" if load_time_registration else ""
    src = tmp_path / f"{symbol}.c"
    src.write_text(f"int {symbol} = 0;\n{ctor}\n")
    lib = tmp_path / f"lib{symbol}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, timeout=60)
    return lib


class FakeRegistry:
    """TensorRT's plugin registry: the creator counts as registered once the library's symbol reads 1
    through the *global* symbol scope, which only an RTLD_GLOBAL load reaches."""

    def __init__(self, symbol: str) -> None:
        self.symbol, self.load_calls, self.loaded = symbol, [], False

    def get_creator(self, name, version, namespace):
        assert (name, version, namespace) == (plugin_spec.PLUGIN_NAME, plugin_spec.PLUGIN_VERSION,
                                              plugin_spec.PLUGIN_NAMESPACE)  # fmt: skip
        try:
            flag = ctypes.c_int.in_dll(ctypes.CDLL(None), self.symbol).value
        except ValueError:  # not in the global scope
            flag = 0
        return "creator" if flag or self.loaded else None

    def load_library(self, path):
        self.load_calls.append(path)
        if self.get_creator(plugin_spec.PLUGIN_NAME, plugin_spec.PLUGIN_VERSION, plugin_spec.PLUGIN_NAMESPACE):
            return None  # TensorRT refuses to register a creator twice
        self.loaded = True
        return "trt-library-handle"


def _fake_trt_with(monkeypatch, registry: FakeRegistry) -> None:
    trt = types.ModuleType("tensorrt")
    trt.get_plugin_registry = lambda: registry
    monkeypatch.setitem(sys.modules, "tensorrt", trt)


def test_load_time_registration_build_is_dlopened_global_and_kept(tmp_path, monkeypatch):
    symbol = f"esan_static_{tmp_path.name.replace('-', '_')}"
    lib = _shared_library(tmp_path, symbol, load_time_registration=True)
    registry = FakeRegistry(symbol)
    _fake_trt_with(monkeypatch, registry)
    handle = plugin_lib.load_plugin_library(lib)
    assert isinstance(handle, ctypes.CDLL) and registry.load_calls == []  # never handed to load_library
    assert ctypes.c_int.in_dll(ctypes.CDLL(None), symbol).value == 1  # loaded RTLD_GLOBAL, constructor ran
    assert plugin_lib.load_plugin_library(lib) is handle and registry.load_calls == []


def test_get_creators_build_goes_to_load_library_once(tmp_path, monkeypatch):
    symbol = f"esan_dyn_{tmp_path.name.replace('-', '_')}"
    lib = _shared_library(tmp_path, symbol, load_time_registration=False)
    registry = FakeRegistry(symbol)
    _fake_trt_with(monkeypatch, registry)
    assert plugin_lib.load_plugin_library(lib) == "trt-library-handle"
    assert plugin_lib.load_plugin_library(lib) == "trt-library-handle"
    assert registry.load_calls == [str(lib)]


def test_plugin_library_tensorrt_refuses(tmp_path, monkeypatch):
    symbol = f"esan_bad_{tmp_path.name.replace('-', '_')}"
    lib = _shared_library(tmp_path, symbol, load_time_registration=False)
    registry = FakeRegistry(symbol)
    registry.load_library = lambda path: None
    _fake_trt_with(monkeypatch, registry)
    with pytest.raises(RuntimeError, match="could not load the plugin library"):
        plugin_lib.load_plugin_library(lib)


# -- packaging ----------------------------------------------------------------------------------------
def test_trt_extras_pin_one_cuda_major():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    checked = 0
    for name, reqs in extras.items():
        wheel = [m for r in reqs if (m := re.fullmatch(r"tensorrt-cu(\d+)(.*)", r))]
        if not wheel:
            continue
        major = int(wheel[0].group(1))
        cuda_python = next(r for r in reqs if r.startswith("cuda-python"))
        assert cuda_python == f"cuda-python>={major}.0,<{major + 1}", (name, cuda_python)
        assert any(r.startswith("polygraphy") for r in reqs), name
        checked += 1
    assert checked >= 1 and not any(r.startswith("tensorrt>") for reqs in extras.values() for r in reqs)
