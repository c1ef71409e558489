"""Tests of the DCNv2 kernel library and TensorRT plugin glue (plugins/modulated_deform_conv).

A module fixture builds ``plugins/`` with cmake into a temporary folder. Set ``TENSORRT_ROOT`` (a folder with
include/NvInfer.h, e.g. the TensorRT OSS ``include/``) to also build the plugin and run esan_dcn_glue_check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from esan.runtime.backends import plugin_lib
from esan.runtime.cli.build_plugin import find_nvcc, pip_cublas_root
from esan.runtime.core import plugin_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO_ROOT / "plugins" / "modulated_deform_conv"
INFO_HEADER = PLUGIN_DIR / "modulatedDeformConvPluginInfo.h"


def _gpu_arch() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return f"{major}{minor}"


@dataclass
class Build:
    folder: Path
    log: str
    with_cuda: bool
    trt_root: str | None


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    """Configure and build plugins/ (kernel library; plugin too when TENSORRT_ROOT is set)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found on PATH")
    if not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        pytest.skip("no C++ compiler (c++/g++/clang++) on PATH")
    folder = tmp_path_factory.mktemp("esan_plugins_build")
    args = ["cmake", "-S", str(REPO_ROOT / "plugins"), "-B", str(folder), "-DCMAKE_BUILD_TYPE=Release"]
    nvcc = find_nvcc()
    if nvcc:
        args.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
        arch = _gpu_arch()
        if arch:  # only the local GPU's architecture: a lighter build
            args.append(f"-DESAN_CUDA_ARCHITECTURES={arch}")
    else:
        args.append("-DESAN_DCN_WITH_CUDA=OFF")
    cublas = pip_cublas_root()
    if cublas:
        args.append(f"-DESAN_CUBLAS_ROOT={cublas}")
    trt_root = os.environ.get("TENSORRT_ROOT")
    if trt_root:
        args.append(f"-DTENSORRT_ROOT={trt_root}")
    logs = []
    for cmd in (args, ["cmake", "--build", str(folder), "-j2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        logs.append(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{logs[-1][-4000:]}")
    mp = pytest.MonkeyPatch()
    mp.setenv(plugin_lib.ENV_PLUGIN_DIR, str(folder))
    yield Build(folder, "\n".join(logs), nvcc is not None, trt_root)
    mp.undo()


# ----------------------------------------------------------------------------- build


def test_kernel_library_compiles_with_nvcc(build: Build) -> None:
    if not build.with_cuda:
        pytest.skip("nvcc not found: only the host reference was built")
    assert "Building CUDA object" in build.log
    lib = plugin_lib.load_kernel_library()
    assert lib.esan_dcn_has_cuda() == 1


def test_missing_library_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(plugin_lib.ENV_PLUGIN_DIR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="esan-rt build-plugin") as err:
        plugin_lib.find_library("esan_does_not_exist")
    assert str(tmp_path) in str(err.value) and "cmake -S plugins -B build" in str(err.value)


# ----------------------------------------------------------------------------- host reference vs torchvision

# (name, N, C, H, W, Cout, (kh, kw), stride, padding, dilation, groups, deformable_groups, bias, offset scale)
CASES = [
    ("3x3_basic", 2, 8, 9, 13, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True, 2.0),
    ("3x3_asym_s_p_d_g2_dg4", 3, 8, 11, 7, 4, (3, 3), (2, 1), (1, 2), (2, 1), 2, 4, False, 4.0),
    ("3x1_g4_dg2", 2, 8, 10, 6, 8, (3, 1), (1, 2), (2, 0), (1, 1), 4, 2, True, 3.0),
    ("1x3_dg8_dil3", 2, 8, 5, 12, 6, (1, 3), (2, 2), (0, 3), (1, 3), 1, 8, True, 2.5),
    ("3x3_far_outside", 2, 4, 6, 9, 5, (3, 3), (1, 2), (1, 1), (1, 1), 1, 2, True, 12.0),
    ("2x3_half_pixel_offsets", 2, 6, 7, 8, 3, (2, 3), (1, 1), (1, 0), (2, 1), 3, 3, False, -1.0),
    ("paper_like_small", 1, 16, 8, 10, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1, 8, True, 2.0),
]


def _make_case(case: tuple, seed: int = 0) -> tuple[dict, dict]:
    _, n, c, h, w, cout, (kh, kw), s, p, d, g, dg, bias, scale = case
    rng = np.random.default_rng(seed)
    ho = (h + 2 * p[0] - d[0] * (kh - 1) - 1) // s[0] + 1
    wo = (w + 2 * p[1] - d[1] * (kw - 1) - 1) // s[1] + 1
    if scale < 0:  # multiples of 0.5 up to +-3: samples on grid lines and exactly on the image border
        offset = rng.integers(-6, 7, size=(n, 2 * dg * kh * kw, ho, wo)) / 2.0
    else:
        offset = rng.standard_normal((n, 2 * dg * kh * kw, ho, wo)) * scale
    arrays = {
        "x": rng.standard_normal((n, c, h, w)),
        "offset": offset,
        "mask": rng.random((n, dg * kh * kw, ho, wo)),
        "weight": rng.standard_normal((cout, c // g, kh, kw)),
        "bias": rng.standard_normal(cout) if bias else None,
    }
    arrays = {k: (v.astype(np.float32) if v is not None else None) for k, v in arrays.items()}
    attrs = {"stride": s, "padding": p, "dilation": d, "groups": g, "deformable_groups": dg}
    return arrays, attrs


def _torchvision(arrays: dict, attrs: dict, device: str = "cpu", dtype=None):
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    dtype = dtype or torch.float32
    t = {k: (torch.from_numpy(v).to(device=device, dtype=dtype) if v is not None else None) for k, v in arrays.items()}
    return ops.deform_conv2d(
        t["x"],
        t["offset"],
        t["weight"],
        t["bias"],
        stride=attrs["stride"],
        padding=attrs["padding"],
        dilation=attrs["dilation"],
        mask=t["mask"],
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_host_matches_torchvision(build: Build, case: tuple) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    arrays, attrs = _make_case(case)
    out = plugin_lib.deform_conv2d_host(
        arrays["x"], arrays["offset"], arrays["mask"], arrays["weight"], arrays["bias"], **attrs
    )
    ref = _torchvision(arrays, attrs).numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4


def test_host_samples_outside_image_are_zero(build: Build) -> None:
    arrays, attrs = _make_case(CASES[0])
    arrays["offset"][:] = 1000.0  # every sample far outside the image
    out = plugin_lib.deform_conv2d_host(
        arrays["x"], arrays["offset"], arrays["mask"], arrays["weight"], arrays["bias"], **attrs
    )
    np.testing.assert_allclose(out, np.broadcast_to(arrays["bias"][None, :, None, None], out.shape), atol=1e-6)


def test_host_nan_offsets_propagate(build: Build) -> None:
    """A NaN offset gives NaN (torchvision's CUDA behaviour), never an out-of-bounds read via a NaN-to-int cast."""
    arrays, attrs = _make_case(CASES[1])  # groups 2, deformable groups 4
    offset = arrays["offset"].copy()
    offset[0, 0, 0, 0] = np.nan  # dy of image 0, deformable group 0, tap 0, output pixel (0, 0)
    out = plugin_lib.deform_conv2d_host(arrays["x"], offset, arrays["mask"], arrays["weight"], None, **attrs)
    # Deformable group 0 feeds input channels 0-1, i.e. weight group 0: output channels 0-1 at that pixel only.
    nan = np.isnan(out)
    assert nan[0, :2, 0, 0].all() and nan.sum() == 2


def test_host_validation_errors(build: Build) -> None:
    arrays, attrs = _make_case(CASES[1])
    args = [arrays["x"], arrays["offset"], arrays["mask"], arrays["weight"], None]
    with pytest.raises(ValueError, match="mask must have shape"):
        plugin_lib.deform_conv2d_host(*args[:2], arrays["mask"][:, :-1], *args[3:], **attrs)
    with pytest.raises(ValueError, match="offset must have shape"):
        plugin_lib.deform_conv2d_host(arrays["x"], arrays["offset"][..., :-1], *args[2:], **attrs)
    with pytest.raises(ValueError, match="groups"):
        plugin_lib.deform_conv2d_host(*args, **{**attrs, "groups": 3})
    with pytest.raises(ValueError, match="stride"):
        plugin_lib.deform_conv2d_host(*args, **{**attrs, "stride": (1, 2, 3)})
    with pytest.raises(ValueError, match="4-D"):
        plugin_lib.deform_conv2d_host(arrays["x"][0], *args[1:], **attrs)
    with pytest.raises(ValueError, match="bias must have shape"):
        plugin_lib.deform_conv2d_host(*args[:4], np.zeros(3, np.float32), **attrs)


def test_forward_cuda_reaches_the_c_entry_point(build: Build) -> None:
    """The ctypes signature of esan_dcn_forward_cuda matches the C one (no GPU needed: null pointers are refused)."""
    params = plugin_lib.make_params((1, 4, 5, 5), (4, 4, 3, 3), 1, 1, 1)
    lib = plugin_lib.load_kernel_library()
    assert len(lib.esan_dcn_forward_cuda.argtypes) == 12
    with pytest.raises(RuntimeError, match="esan_dcn_forward_cuda failed"):
        plugin_lib.forward_cuda(params, plugin_lib.FLOAT32, [None] * 6, 0, 0)


# ----------------------------------------------------------------------------- plugin identity


def _header_defines() -> dict[str, str]:
    text = INFO_HEADER.read_text()
    return dict(re.findall(r'#define\s+(ESAN_DCN_\w+)\s+"([^"]*)"', text))


def test_plugin_identity_matches_spec() -> None:
    defs = _header_defines()
    assert defs["ESAN_DCN_PLUGIN_NAME"] == plugin_spec.PLUGIN_NAME
    assert defs["ESAN_DCN_PLUGIN_VERSION"] == plugin_spec.PLUGIN_VERSION
    assert defs["ESAN_DCN_PLUGIN_NAMESPACE"] == plugin_spec.PLUGIN_NAMESPACE
    attrs = {v for k, v in defs.items() if k.startswith("ESAN_DCN_ATTR_")}
    assert attrs == set(plugin_spec.PAIR_ATTRS) | set(plugin_spec.INT_ATTRS)
    cmake = (REPO_ROOT / "plugins" / "CMakeLists.txt").read_text()
    assert f"add_library({plugin_spec.KERNEL_LIBRARY_BASENAME} SHARED" in cmake
    assert f"add_library({plugin_spec.PLUGIN_LIBRARY_BASENAME} SHARED" in cmake


def test_plugin_glue_check(build: Build) -> None:
    """Drive the built plugin through getCreators() with TensorRT headers only (esan_dcn_glue_check)."""
    if not build.trt_root:
        pytest.skip("TENSORRT_ROOT not set: the TensorRT plugin was not built")
    lib = build.folder / plugin_lib.library_filename(plugin_spec.PLUGIN_LIBRARY_BASENAME)
    exe = build.folder / "esan_dcn_glue_check"
    assert lib.is_file() and exe.is_file(), build.log[-3000:]
    run = subprocess.run([str(exe), str(lib)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    expected = (
        f"name={plugin_spec.PLUGIN_NAME} version={plugin_spec.PLUGIN_VERSION} namespace={plugin_spec.PLUGIN_NAMESPACE}"
    )
    assert expected in run.stdout
    assert "ALL OK" in run.stdout


# ----------------------------------------------------------------------------- GPU parity and timing


def _benchmark_module():
    import importlib.util

    path = REPO_ROOT / "benchmarks" / "dcn_kernel.py"
    spec = importlib.util.spec_from_file_location("esan_bench_dcn_kernel", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cuda_build(build: Build):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (torch.cuda.is_available() is False)")
    if not build.with_cuda:
        pytest.skip("kernel library built without nvcc")
    return build


@pytest.mark.gpu
@pytest.mark.parametrize("use_cublas", [True, False], ids=["cublas", "builtin_gemm"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_gpu_matches_torchvision(cuda_build: Build, case: tuple, use_cublas: bool) -> None:
    import torch

    bench = _benchmark_module()
    runner = bench.EsanDcn(use_cublas=use_cublas)
    if use_cublas and runner.handle is None:
        pytest.skip("kernel library built without cuBLAS")
    try:
        arrays, attrs = _make_case(case)
        inp = {k: (torch.from_numpy(v).cuda() if v is not None else None) for k, v in arrays.items()}
        inp.update(
            stride=attrs["stride"],
            padding=attrs["padding"],
            dilation=attrs["dilation"],
            groups=attrs["groups"],
            dg=attrs["deformable_groups"],
        )
        ref = _torchvision(arrays, attrs, device="cuda")
        out = runner(inp)
        torch.cuda.synchronize()
        assert (out - ref).abs().max().item() <= 1e-4
        half = {k: (v.half() if torch.is_tensor(v) else v) for k, v in inp.items()}
        out16 = runner(half)
        ref32 = bench.torchvision_dcn({k: (v.float() if torch.is_tensor(v) else v) for k, v in half.items()})
        _, rel = bench.errors(out16, ref32)
        assert out16.dtype == torch.float16 and rel <= 2e-3
    finally:
        runner.close()


@pytest.mark.gpu
def test_gpu_paper_shapes_parity_and_timing(cuda_build: Build) -> None:
    bench = _benchmark_module()
    rows = bench.benchmark_rows(iters=20)
    print("\n" + bench.format_rows(rows))
    for row in rows:
        for key in ("cublas_err", "builtin_err"):
            if key in row:
                max_abs, rel = row[key]
                if row["dtype"] == "float32":
                    assert max_abs <= 1e-4, (key, row)
                else:
                    assert rel <= 2e-3, (key, row)
