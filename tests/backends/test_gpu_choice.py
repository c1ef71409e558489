"""GPU probes that name CUDA errors, and ``--backend auto`` / ``--device auto`` in each faked environment."""

from __future__ import annotations

import json
import re
import sys
import types

import cv2
import numpy as np
import onnxruntime
import pytest
from support.trt_fakes import CudaError, FakeCudart, bundle_with_engines, install_cudart

from esan.runtime.backends import cuda_probe
from esan.runtime.backends.select import choose_backend
from esan.runtime.core.errors import UserError


class FakeDriver:
    """libcuda as ctypes sees it: each ``cu*`` returns a CUresult and writes through its byref arguments."""

    NAMES = {100: "CUDA_ERROR_NO_DEVICE", 46: "CUDA_ERROR_DEVICE_UNAVAILABLE", 803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH"}

    def __init__(self, count: int = 1, init: int = 0, retain: int = 0) -> None:
        self.count, self.init, self.retain = count, init, retain
        self.retained = self.released = 0

    def cuInit(self, flags):  # noqa: N802
        return self.init

    def cuDeviceGetCount(self, count):  # noqa: N802
        count._obj.value = self.count
        return 0

    def cuDeviceGet(self, dev, ordinal):  # noqa: N802
        dev._obj.value = ordinal
        return 0

    def cuDevicePrimaryCtxRetain(self, ctx, dev):  # noqa: N802
        self.retained += self.retain == 0
        return self.retain

    def cuDevicePrimaryCtxRelease(self, dev):  # noqa: N802
        self.released += 1
        return 0

    def cuGetErrorName(self, code, text):  # noqa: N802
        text._obj.value = self.NAMES[code].encode()
        return 0

    def cuDeviceGetName(self, buf, size, dev):  # noqa: N802
        buf.value = b"NVIDIA Fake Driver"
        return 0

    def cuDeviceGetAttribute(self, value, attr, dev):  # noqa: N802
        value._obj.value = {75: 8, 76: 6}[attr]
        return 0


# -- probes -------------------------------------------------------------------------------------------
def test_runtime_probe_names_the_cuda_error():
    ok = cuda_probe.probe_runtime(FakeCudart())
    assert ok.ok and (ok.name, ok.compute_capability) == ("NVIDIA Fake", "9.0") and ok.message == "NVIDIA Fake (sm 9.0)"
    old = cuda_probe.probe_runtime(FakeCudart(device_count_error=CudaError.cudaErrorInsufficientDriver))
    assert not old.ok and old.error == "cudaErrorInsufficientDriver"
    assert "driver is older" in old.message and "no CUDA GPU" not in old.message
    none = cuda_probe.probe_runtime(FakeCudart(devices=0))
    assert not none.ok and none.error == "cudaErrorNoDevice" and "no CUDA GPU" in none.message


def test_runtime_probe_without_cuda_python(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    status = cuda_probe.probe_runtime()
    assert not status.ok and "cuda-python is not installed" in status.message and "esan-rt[trt]" in status.message


def test_driver_probe_finds_device_and_releases_the_context():
    driver = FakeDriver()
    status = cuda_probe.probe_driver(driver)
    assert status.ok and status.message == "NVIDIA Fake Driver (sm 8.6)"
    assert driver.retained == driver.released == 1


@pytest.mark.parametrize(
    ("driver", "error", "words"),
    [(FakeDriver(count=0), "CUDA_ERROR_NO_DEVICE", "no CUDA GPU"),
     (FakeDriver(retain=46), "CUDA_ERROR_DEVICE_UNAVAILABLE", "cannot be used now"),
     (FakeDriver(init=803), "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "kernel module")],
)  # fmt: skip
def test_driver_probe_names_the_cuda_error(driver, error, words):
    status = cuda_probe.probe_driver(driver)
    assert not status.ok and status.error == error and error in status.message and words in status.message


def test_driver_probe_on_this_machine():
    status = cuda_probe.probe_driver()
    if cuda_probe.load_driver() is None:
        assert not status.ok and "no NVIDIA driver" in status.message
    elif status.ok:  # a machine with the NVIDIA driver and a device: its name and compute capability
        assert status.name and status.name in status.message
        assert re.fullmatch(r"\d+\.\d+", status.compute_capability) and status.error is None
    else:  # a driver without a usable device: the CUDA error by name, in the message
        assert status.error and status.error.startswith("CUDA_ERROR_") and status.error in status.message


# -- choose_backend, one faked environment at a time -----------------------------------------------------
@pytest.fixture
def env(monkeypatch):
    """``setup(tensorrt=, cudart=, ort_cuda=, driver=)``: fake what choose_backend looks at."""

    def setup(*, tensorrt: str | None, cudart: FakeCudart | None, ort_cuda: bool, driver: FakeDriver | None):
        if tensorrt is None:
            monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails even where TensorRT exists
        else:
            monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=tensorrt))
        if cudart is None:
            monkeypatch.setitem(sys.modules, "cuda", None)
            monkeypatch.setitem(sys.modules, "cuda.bindings", None)
        else:
            install_cudart(monkeypatch, cudart)
        providers = (["CUDAExecutionProvider"] if ort_cuda else []) + ["CPUExecutionProvider"]
        monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: providers)
        monkeypatch.setattr(cuda_probe, "load_driver", lambda: driver)

    return setup


def test_auto_picks_tensorrt_with_a_gpu(env):
    env(tensorrt="10.13.0", cudart=FakeCudart(), ort_cuda=True, driver=FakeDriver())
    choice = choose_backend("auto", "auto")
    assert (choice.backend, choice.device) == ("trt", "cuda")
    assert choice.reason == "TensorRT 10.13.0 and NVIDIA Fake (sm 9.0)"
    assert choice.line() == "backend trt on cuda: TensorRT 10.13.0 and NVIDIA Fake (sm 9.0)"


def test_auto_old_driver_for_tensorrt_falls_back_to_ort_cuda_and_says_why(env):
    env(tensorrt="10.13.0", cudart=FakeCudart(device_count_error=CudaError.cudaErrorInsufficientDriver),
        ort_cuda=True, driver=FakeDriver())  # fmt: skip
    backend, device, reason = choose_backend()
    assert (backend, device) == ("ort", "cuda")
    assert "cudaErrorInsufficientDriver" in reason and "onnxruntime-gpu and NVIDIA Fake Driver" in reason
    assert "no CUDA GPU" not in reason


def test_auto_ort_cuda_needs_a_usable_device_not_just_the_provider(env):
    env(tensorrt=None, cudart=None, ort_cuda=True, driver=FakeDriver(count=0))
    backend, device, reason = choose_backend()
    assert (backend, device) == ("ort", "cpu")
    assert "TensorRT not installed" in reason and "CUDA_ERROR_NO_DEVICE" in reason
    env(tensorrt=None, cudart=None, ort_cuda=True, driver=None)
    assert choose_backend()[:2] == ("ort", "cpu") and "no NVIDIA driver" in choose_backend().reason


def test_auto_cpu_only_machine(env):
    env(tensorrt=None, cudart=None, ort_cuda=False, driver=None)
    choice = choose_backend()
    assert choice == ("ort", "cpu", "TensorRT not installed; ONNX Runtime has no CUDA provider (onnxruntime-gpu is "
                                    "not installed)")  # fmt: skip


def test_auto_with_a_bundle_needs_its_engines(env, tiny_bundle, tmp_path):
    env(tensorrt="10.13.0", cudart=FakeCudart(), ort_cuda=True, driver=FakeDriver())
    no_engines = choose_backend(bundle=tiny_bundle)
    assert no_engines[:2] == ("ort", "cuda") and "has no TensorRT engines" in no_engines.reason
    other = bundle_with_engines(tiny_bundle, tmp_path / "other", tensorrt_version="10.9.0")
    stale = choose_backend(bundle=other)
    assert stale[:2] == ("ort", "cuda") and "10.9.0" in stale.reason
    fits = bundle_with_engines(tiny_bundle, tmp_path / "fits", tensorrt_version="10.13.0")
    assert choose_backend(bundle=fits)[:2] == ("trt", "cuda")


def test_explicit_choices_are_kept(env, monkeypatch):
    env(tensorrt=None, cudart=None, ort_cuda=False, driver=None)
    assert choose_backend("ort", "cpu") == ("ort", "cpu", "as requested")
    assert choose_backend("trt", "auto")[:2] == ("trt", "cuda")
    assert choose_backend("auto", "cpu")[:2] == ("ort", "cpu")
    assert choose_backend("auto", "cuda")[:2] == ("ort", "cuda")  # asked for: opening it says what is missing
    assert choose_backend("ort", "auto")[:2] == ("ort", "cpu")
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA Fake")
    assert choose_backend("torch", "auto") == ("torch", "cuda", "torch sees NVIDIA Fake")
    with pytest.raises(UserError, match="unknown backend"):
        choose_backend("tflite", "auto")
    with pytest.raises(UserError, match="unknown device"):
        choose_backend("auto", "gpu")


# -- the choice on the command line -------------------------------------------------------------------
def test_stream_prints_and_reports_the_choice(tiny_bundle, tmp_path, capfd):
    from esan.runtime.cli import main

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(frames / f"{i:04d}.png"), rng.integers(0, 256, (40, 70, 3), dtype=np.uint8))
    expected = choose_backend("auto", "auto", bundle=tiny_bundle)  # this machine, as it is
    report = tmp_path / "r.json"
    rc = main(["stream", "--source", str(frames), "--bundle", str(tiny_bundle), "--lookahead", "2",
               "--report", str(report)])  # fmt: skip
    err = capfd.readouterr().err
    assert rc == 0, err
    assert [line for line in err.splitlines() if "backend " in line and " on " in line][0] == \
        f"esan-rt: {expected.line()}"  # fmt: skip
    r = json.loads(report.read_text())
    assert r["backend_choice"] == {"requested_backend": "auto", "requested_device": "auto", **expected._asdict()}
    assert (r["backend"], r["device"]) == (expected.backend, expected.device) and r["frames"] == 4
