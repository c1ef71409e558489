"""The CUDA launcher ``modulatedDeformConvKernel.cu``, unmodified, run on the CPU under a CUDA emulation.

``plugins/modulated_deform_conv/test/cuda_emu`` compiles the ``.cu`` as C++ with g++ against stand-in CUDA headers:
one ucontext fiber per CUDA thread with real ``__syncthreads()`` barriers, ``__shared__`` memory poisoned with NaN
per block, device buffers between guard pages and filled with NaN, launch limits, ``_Float16`` halves and a
reference cuBLAS with cuBLAS's argument rules, under UBSan when it links. The library exposes the real C entry
points, so everything here goes through ``plugin_lib``, and is compared with ``torchvision.ops.deform_conv2d``.
Select with ``pytest -k emulation``; skipped only without g++ (or binutils).
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from test_plugin_kernel import CASES, _make_case, _torchvision

from esan.runtime.backends import plugin_lib

REPO_ROOT = Path(__file__).resolve().parents[2]
EMU_DIR = REPO_ROOT / "plugins" / "modulated_deform_conv" / "test" / "cuda_emu"
SEED = 20240613
ORDERS = ("forward", "reverse", "random")
CUDA_ERROR_ILLEGAL_ADDRESS = 700
CUDA_ERROR_LAUNCH_FAILURE = 719


def _load_emu():
    spec = importlib.util.spec_from_file_location("esan_cuda_emu", EMU_DIR / "emu.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


emu = _load_emu()

# Same tuple layout as test_plugin_kernel.CASES: 5x2 kernel with groups and deformable groups 8; GEMM tile edges
# (Ho*Wo = 65 pixels, 65 output channels, K = 64, and the columns end exactly at the workspace end); K = 17.
EXTRA_CASES = [
    ("5x2_g8_dg8", 2, 16, 9, 7, 8, (5, 2), (1, 2), (2, 1), (1, 2), 8, 8, True, 2.0),
    ("gemm_tile_edges", 1, 16, 6, 14, 65, (2, 2), (1, 1), (0, 0), (1, 1), 1, 1, True, 1.5),
    ("k17_stride_2x1", 3, 17, 8, 9, 3, (1, 1), (2, 1), (1, 0), (1, 1), 1, 1, False, 1.0),
]
ALL_CASES = CASES + EXTRA_CASES


@dataclass
class Device:
    """One emulated library (``folder/libesan_dcn_kernels.so``) and its device memory / controls."""

    emu: object
    folder: Path


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory: pytest.TempPathFactory):
    if emu.compiler() is None:
        pytest.skip("g++ not found: the CUDA emulation build needs it")
    for tool in ("readelf", "objcopy"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} (binutils) not found: the CUDA emulation build needs it")
    return emu.prepare(tmp_path_factory.mktemp("cuda_emu"))


@pytest.fixture(scope="module")
def device(toolchain) -> Device:
    library = emu.build(toolchain, "kernel")
    return Device(emu.Emulator(library), library.parent)


def _activate(dev: Device, monkeypatch: pytest.MonkeyPatch) -> Device:
    monkeypatch.setenv(plugin_lib.ENV_PLUGIN_DIR, str(dev.folder))  # plugin_lib then loads the emulated library
    dev.emu.reset()
    return dev


@pytest.fixture
def dev(device: Device, monkeypatch: pytest.MonkeyPatch) -> Iterator[Device]:
    yield _activate(device, monkeypatch)
    device.emu.reset()


@pytest.fixture(autouse=True)
def _no_undefined_behaviour(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The emulated build runs under UBSan when it links: any report on stderr fails the test."""
    yield
    err = capfd.readouterr().err
    assert "runtime error:" not in err, err[-3000:]


def _params(arrays: dict, attrs: dict) -> plugin_lib.DcnParams:
    names = ("stride", "padding", "dilation", "groups", "deformable_groups")
    return plugin_lib.make_params(arrays["x"].shape, arrays["weight"].shape, *(attrs[k] for k in names))


def _workspace(dev: Device, p, dtype: int, cublas: bool, mode) -> tuple[int, int]:
    """(pointer, bytes): "default" (workspace_size), "unaligned" (+3 bytes), "tight" (columns end at the guard
    page, up to the 256-byte alignment), an int k (room for k images: chunking) or ("bytes", n)."""
    full = plugin_lib.workspace_size(p, dtype, cublas)
    reserved = full - plugin_lib.workspace_size(p, dtype, False)  # the cuBLAS scratch
    per_image = p.inChannels * p.kernelH * p.kernelW * p.outH * p.outW * (2 if dtype == plugin_lib.FLOAT16 else 4)
    if mode == "default":
        return dev.emu.malloc(full), full
    if mode == "unaligned":
        return dev.emu.malloc(full + 3) + 3, full
    if mode == "tight":
        need = reserved + p.batch * per_image
        end = dev.emu.malloc(need + 256) + need + 256
        start = (end - need) // 256 * 256
        return start, end - start
    if isinstance(mode, int):
        size = reserved + mode * per_image + 256
        return dev.emu.malloc(size), size
    return dev.emu.malloc(max(mode[1], 1)), mode[1]


def _forward(dev: Device, arrays: dict, attrs: dict, *, half=False, cublas=True, order="forward", workspace="default",
             before=None):
    """Runs esan_dcn_forward_cuda on fresh device buffers (``before(dev)`` just ahead of it); returns the float32
    output and raises RuntimeError on a failed status."""
    dev.emu.reset()
    dev.emu.set_order(order, SEED)
    p = _params(arrays, attrs)
    dtype = plugin_lib.FLOAT16 if half else plugin_lib.FLOAT32
    np_type = np.float16 if half else np.float32
    names = ("x", "offset", "mask", "weight", "bias")
    ptrs = [dev.emu.upload(arrays[k].astype(np_type)) if arrays[k] is not None else None for k in names]
    shape = (p.batch, p.outChannels, p.outH, p.outW)
    out = dev.emu.malloc(int(np.prod(shape)) * np.dtype(np_type).itemsize)
    ws, ws_bytes = _workspace(dev, p, dtype, cublas, workspace)
    handle = plugin_lib.create_cublas_handle() if cublas else None
    assert not cublas or handle, "the emulated library is built with cuBLAS"
    try:
        if before is not None:
            before(dev)
        plugin_lib.forward_cuda(p, dtype, [*ptrs, out], ws, ws_bytes, handle, 0)
    finally:
        plugin_lib.destroy_cublas_handle(handle)
    return dev.emu.download(out, shape, np_type).astype(np.float32)


def _half_inputs(arrays: dict) -> dict:
    return {k: (v.astype(np.float16).astype(np.float32) if v is not None else None) for k, v in arrays.items()}


def _rel_l2(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm((out - ref).ravel()) / np.linalg.norm(ref.ravel()))


# ----------------------------------------------------------------------------- parity with torchvision


@pytest.mark.parametrize("case", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_emulation_matches_torchvision(dev: Device, case: tuple) -> None:
    """Both GEMM paths, fp32 and fp16, three execution orders with bit-identical outputs."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    arrays, attrs = _make_case(case)
    ref32 = _torchvision(arrays, attrs).numpy()
    half = _half_inputs(arrays)
    ref16 = _torchvision(half, attrs).numpy()
    for cublas, workspace in ((True, "unaligned"), (False, "tight")):
        outs = [_forward(dev, arrays, attrs, cublas=cublas, order=o, workspace=workspace) for o in ORDERS]
        for o, out in zip(ORDERS, outs, strict=True):
            assert np.array_equal(out, outs[0]), f"cublas={cublas}: {o} order differs from forward (a race)"
        assert np.abs(outs[0] - ref32).max() <= 1e-4, f"cublas={cublas}"
        outs16 = [_forward(dev, half, attrs, half=True, cublas=cublas, order=o, workspace=workspace) for o in ORDERS]
        assert all(np.array_equal(out, outs16[0]) for out in outs16), f"fp16 cublas={cublas}: orders differ"
        assert _rel_l2(outs16[0], ref16) <= 2e-3, f"fp16 cublas={cublas}"
    assert dev.emu.fault_count() == 0, dev.emu.last_fault()


def test_emulation_nan_offsets_propagate(dev: Device) -> None:
    arrays, attrs = _make_case(CASES[1])  # groups 2, deformable groups 4
    arrays["offset"][0, 0, 0, 0] = np.nan  # image 0, deformable group 0 (channels 0-1: weight group 0), tap 0
    for cublas in (True, False):
        nan = np.isnan(_forward(dev, arrays, attrs, cublas=cublas))
        assert nan[0, :2, 0, 0].all() and nan.sum() == 2, f"cublas={cublas}"


@pytest.mark.parametrize("cublas", [True, False], ids=["cublas", "builtin_gemm"])
def test_emulation_workspace_chunking(dev: Device, cublas: bool) -> None:
    """A workspace for 2 of 5 images: three chunks (2, 2, 1), still torchvision's result, with 256-byte
    aligned cudaMalloc (as on a GPU) instead of the emulator's tight placement."""
    case = ("chunked", 5, 4, 7, 6, 5, (3, 2), (1, 1), (1, 0), (1, 2), 1, 2, True, 2.0)
    arrays, attrs = _make_case(case)
    assert dev.emu.lib.cuda_emu_set_alignment(256) == 0
    try:
        out = _forward(dev, arrays, attrs, cublas=cublas, workspace=2)
    finally:
        dev.emu.lib.cuda_emu_set_alignment(1)
    assert np.abs(out - _torchvision(arrays, attrs).numpy()).max() <= 1e-4
    im2col = [grid for name, grid, _ in dev.emu.launches() if name.startswith("deformIm2colKernel")]
    p = _params(arrays, attrs)
    per_pixel = p.inChannels * p.outH * p.outW
    assert im2col == [(-(-n * per_pixel // 256), 1, 1) for n in (2, 2, 1)]
    if cublas:
        assert [g[2] for n, g, _ in dev.emu.launches() if n.startswith("cublas")] == [2, 2, 1]
    else:
        assert [g[2] for n, g, _ in dev.emu.launches() if n.startswith("groupedGemmKernel")] == [2, 2, 1]


def test_emulation_workspace_too_small(dev: Device) -> None:
    arrays, attrs = _make_case(CASES[0])
    p = _params(arrays, attrs)
    one_image = p.inChannels * p.kernelH * p.kernelW * p.outH * p.outW * 4
    for cublas, size in ((False, one_image - 1), (True, one_image + 256)):  # cuBLAS also needs its 8 MiB
        with pytest.raises(RuntimeError, match="workspace too small"):
            _forward(dev, arrays, attrs, cublas=cublas, workspace=("bytes", size))
        assert dev.emu.launches() == []


# ----------------------------------------------------------------------------- launch errors, faults, overflow


@pytest.mark.parametrize("cublas", [True, False], ids=["cublas", "builtin_gemm"])
def test_emulation_launch_errors_checked_per_launch(dev: Device, cublas: bool) -> None:
    """An error left by an earlier, unrelated launch is neither reported as ours nor consumed; a failing launch
    of ours is reported at once and nothing is launched after it."""
    arrays, attrs = _make_case(CASES[0])
    out = _forward(dev, arrays, attrs, cublas=cublas, before=lambda d: d.emu.lib.cuda_emu_set_last_error(719))
    assert np.abs(out - _torchvision(arrays, attrs).numpy()).max() <= 1e-4
    assert dev.emu.lib.cudaPeekAtLastError() == CUDA_ERROR_LAUNCH_FAILURE  # still there for its owner
    kernels = [name for name, _, _ in dev.emu.launches() if not name.startswith("cublas")]
    assert len(kernels) == 2  # fillBias + im2col (+ the cuBLAS GEMM) | im2col + GEMM kernel
    for index in range(len(kernels)):
        fail = lambda d, i=index: d.emu.lib.cuda_emu_fail_launch(i, 701)  # noqa: E731 - launch i fails
        with pytest.raises(RuntimeError, match="CUDA error"):
            _forward(dev, arrays, attrs, cublas=cublas, before=fail)
        assert [name for name, _, _ in dev.emu.launches()] == kernels[:index]


@pytest.mark.parametrize("cublas", [True, False], ids=["cublas", "builtin_gemm"])
def test_emulation_grid_for_planes_near_2_31(dev: Device, cublas: bool) -> None:
    """Ho*Wo = 2^31 - 1 (check_params allows it): the GEMM grid is computed without int32 overflow (dry run:
    launches are checked and logged, not executed; UBSan would report an overflow)."""
    n = 2**31 - 1
    p = plugin_lib.make_params((1, 1, 1, n), (1, 1, 1, 1))
    dev.emu.lib.cuda_emu_set_dry_run(1)
    fake = 1 << 40  # never dereferenced in a dry run
    handle = plugin_lib.create_cublas_handle() if cublas else None
    try:
        ws_bytes = plugin_lib.workspace_size(p, plugin_lib.FLOAT32, cublas)
        plugin_lib.forward_cuda(p, plugin_lib.FLOAT32, [fake] * 4 + [None, fake], fake, ws_bytes, handle, 0)
    finally:
        plugin_lib.destroy_cublas_handle(handle)
    (im2col, grid, block), (gemm, gemm_grid, gemm_block) = dev.emu.launches()
    assert im2col == "deformIm2colKernel<float>" and grid == (65535 * 16, 1, 1) and block == (256, 1, 1)
    if cublas:
        assert gemm == "cublasGemmStridedBatchedEx" and gemm_grid == (n, 1, 1) and gemm_block == (1, 1, 1)
    else:
        assert gemm == "groupedGemmKernel<float>" and gemm_grid == (2**25, 1, 1) and gemm_block == (256, 1, 1)


def test_emulation_large_stride_and_padding(dev: Device) -> None:
    """The issue's UBSan case (H=1, 1x1 kernel, stride 1e9, padding 1.5e9): sample rows oy*1e9 - 1.5e9 are far
    outside, the offsets bring them back to row 0; 64-bit coordinates give torchvision's result, UBSan-clean."""
    rng = np.random.default_rng(3)
    ho, wo = 4, 3
    x = rng.standard_normal((2, 2, 1, 3)).astype(np.float32)
    offset = np.zeros((2, 2, ho, wo), np.float32)
    offset[:, 0] = -(np.arange(ho, dtype=np.float64) * 1e9 - 1.5e9).astype(np.float32)[:, None]
    offset[:, 1] = rng.uniform(-0.5, 0.5, (2, ho, wo))
    arrays = {"x": x, "offset": offset, "mask": rng.random((2, 1, ho, wo)).astype(np.float32)}
    arrays |= {"weight": rng.standard_normal((3, 2, 1, 1)).astype(np.float32), "bias": None}
    attrs = {"stride": (10**9, 1), "padding": (15 * 10**8, 0), "dilation": (1, 1), "groups": 1, "deformable_groups": 1}
    ref = _torchvision(arrays, attrs).numpy()
    assert np.abs(ref).max() > 0.1  # the samples really land in the image
    host = plugin_lib.deform_conv2d_host(arrays["x"], offset, arrays["mask"], arrays["weight"], None, **attrs)
    assert np.abs(host - ref).max() <= 1e-5
    for cublas in (True, False):
        assert np.abs(_forward(dev, arrays, attrs, cublas=cublas) - ref).max() <= 1e-5


def test_emulation_fault_names_kernel_block_thread(dev: Device) -> None:
    """A mask buffer one element short (a caller bug): the read past its end hits the guard page; the fault
    names the kernel, block and thread, and the error is sticky like a GPU fault."""
    arrays, attrs = _make_case(CASES[1])
    short = dict(arrays, mask=arrays["mask"].ravel()[:-1])
    with pytest.raises(RuntimeError, match="CUDA error"):
        _forward(dev, short, attrs, cublas=False)
    fault = dev.emu.last_fault()
    assert "(read)" in fault and "past its end" in fault and "deformIm2colKernel<float>" in fault, fault
    assert re.search(r"block \(\d+,0,0\), thread \(\d+,0,0\)", fault), fault
    for _ in range(2):
        assert dev.emu.lib.cudaGetLastError() == CUDA_ERROR_ILLEGAL_ADDRESS


def test_emulated_cublas_applies_argument_rules(dev: Device) -> None:
    """The reference GEMM (column-major, both transpositions, beta = 0 ignores NaN in C) and cuBLAS's rules."""
    lib, c = dev.emu.lib, ctypes
    vp, i32, i64 = c.c_void_p, c.c_int, c.c_longlong
    lib.cublasGemmStridedBatchedEx.argtypes = [vp, i32, i32, i32, i32, i32, vp, vp, i32, i32, i64, vp, i32, i32, i64]
    lib.cublasGemmStridedBatchedEx.argtypes += [vp, vp, i32, i32, i64, i32, i32, i32]
    lib.cublasSetWorkspace.argtypes = [vp, vp, c.c_size_t]
    f32, f16, compute32, compute16 = 0, 2, 68, 64
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 4, 3)).astype(np.float32), rng.standard_normal((2, 4, 5)).astype(np.float32)
    pa, pb = dev.emu.upload(a), dev.emu.upload(b)  # row-major [4,3] == column-major A^T (lda 3), B^T (ldb 5)
    pc = dev.emu.upload(np.full((2, 3, 5), np.nan, np.float32))
    one, zero = c.c_float(1.0), c.c_float(0.0)
    handle = vp(plugin_lib.create_cublas_handle())

    def gemm(m=5, n=3, k=4, lda=5, ldb=3, ldc=5, atype=f32, btype=f32, compute=compute32, stride_c=15, ptr_c=pc):
        # Row-major c[3x5] = a^T @ b per batch is column-major c^T[5x3] = b^T (stored b, op N) x a (stored a^T, op T).
        return lib.cublasGemmStridedBatchedEx(handle, 0, 1, m, n, k, c.byref(one), pb, atype, lda, 20, pa, btype,
                                              ldb, 12, c.byref(zero), ptr_c, f32, ldc, stride_c, 2, compute, -1)

    try:
        assert gemm() == 0
        expected = np.einsum("bki,bkj->bij", a, b)
        assert np.abs(dev.emu.download(pc, (2, 3, 5), np.float32) - expected).max() <= 1e-5
        assert gemm(lda=4) == 7 and gemm(ldb=2) == 7 and gemm(ldc=4) == 7 and gemm(m=-1) == 7  # leading dims
        assert gemm(stride_c=10) == 7  # the two outputs would overlap
        assert gemm(atype=f16) == 15 and gemm(compute=compute16) == 15  # A/B types differ; 16F compute, 32F data
        assert lib.cublasSetWorkspace(handle, dev.emu.malloc(4096) + 8, 4096) == 7  # not 256-byte aligned
        assert gemm(ptr_c=pc + 4) == 13  # C runs past its allocation: an illegal address, sticky
        assert "matrix C" in dev.emu.last_fault() and lib.cudaPeekAtLastError() == CUDA_ERROR_ILLEGAL_ADDRESS
    finally:
        plugin_lib.destroy_cublas_handle(handle.value)


def test_emulation_checks_launch_limits(dev: Device) -> None:
    """Grid and block limits of a launch (an empty kernel of the emulator; valid ones in a dry run)."""
    launch = dev.emu.lib.cuda_emu_launch_noop
    launch.argtypes = [ctypes.c_uint] * 6 + [ctypes.c_size_t]
    bad = [(1, 65536, 1, 1, 1, 1, 0), (1, 1, 65536, 1, 1, 1, 0), (2**31, 1, 1, 1, 1, 1, 0), (1, 1, 1, 1025, 1, 1, 0)]
    bad += [(1, 1, 1, 32, 32, 2, 0), (1, 1, 1, 1, 1, 65, 0), (1, 1, 1, 0, 1, 1, 0), (1, 1, 1, 32, 1, 1, 48 * 1024)]
    for config in bad:
        assert launch(*config) == 9, config  # cudaErrorInvalidConfiguration
        assert dev.emu.lib.cudaGetLastError() == 9 and dev.emu.lib.cudaGetLastError() == 0  # not sticky
    dev.emu.lib.cuda_emu_set_dry_run(1)
    assert launch(2**31 - 1, 65535, 65535, 1024, 1, 1, 0) == 0 and launch(1, 1, 1, 4, 4, 64, 1024) == 0
    assert [grid for _, grid, _ in dev.emu.launches()] == [(2**31 - 1, 65535, 65535), (1, 1, 1)]


def test_emulation_rewrites_triple_chevron_launches() -> None:
    source = "k<T><<<grid, 256,\n 0, s>>>(a, b);\nother<<<1, 2>>>();"
    rewritten = emu.rewrite_launches(source)
    assert rewritten == "::cuda_emu::chevron(k<T>, grid, 256,\n 0, s)(a, b);\n::cuda_emu::chevron(other, 1, 2)();"


# ----------------------------------------------------------------------------- mutation check

# name: (text of the .cu, replacement, regex one of the findings must match). "with NaN": the poisoned shared memory
# was read.
MUTANTS = {
    "barrier_after_tile_load_dropped": ("__syncthreads();\n#pragma unroll", "\n#pragma unroll", "mismatch with NaN"),
    "barrier_after_tile_use_dropped": ("__syncthreads();\n    }\n#pragma", "\n    }\n#pragma", "mismatch"),
    "epilogue_col_le_n": ("            if (col < n)\n", "            if (col <= n)\n", r"\(write\).*past its end"),
    "tile_b_col_le_n": ("tileB[kk][cc] = (col < n &&", "tileB[kk][cc] = (col <= n &&", r"\(read\).*past its end"),
    "wrong_deformable_group": ("const dg = c / channelsPerDg;", "const dg = c % deformableGroups;", "mismatch"),
    "early_return_before_barrier": (
        "    float acc[4][4] = {};\n",
        "    float acc[4][4] = {};\n    if (rowBase + ty >= m)\n    {\n        return;\n    }\n",
        r"__syncthreads\(\) at .* exited without it",
    ),
    "block_of_2048_threads": ("kIm2colThreads = 256;", "kIm2colThreads = 2048;", "exceeds 1024 threads"),
}


@pytest.fixture(scope="module")
def mutants(toolchain) -> dict[str, Device]:
    source = emu.KERNEL_SOURCE.read_text()
    variants = {}
    for name, (old, new, _) in MUTANTS.items():
        assert source.count(old) == 1, f"mutant {name}: the .cu changed, update MUTANTS"
        variants[name] = source.replace(old, new)
    libraries = emu.build_variants(toolchain, variants)
    return {name: Device(emu.Emulator(lib), lib.parent) for name, lib in libraries.items()}


@pytest.mark.parametrize("name", list(MUTANTS))
def test_emulation_catches_mutant(mutants, name: str, monkeypatch: pytest.MonkeyPatch, capfd) -> None:
    """A known bug injected into a copy of the .cu is caught: fault (naming kernel, block and thread), flag,
    launch error, mismatch with torchvision or outputs that depend on the execution order."""
    dev = _activate(mutants[name], monkeypatch)
    findings = []
    for case in (CASES[1], EXTRA_CASES[1]):  # K = 36 (3 K-tiles), 4 deformable groups; tile edges, tight workspace
        arrays, attrs = _make_case(case)
        ref = _torchvision(arrays, attrs).numpy()
        for cublas, workspace in ((True, "unaligned"), (False, "tight")):
            outs = []
            for order in ORDERS:
                try:
                    outs.append(_forward(dev, arrays, attrs, cublas=cublas, order=order, workspace=workspace))
                except RuntimeError:
                    findings.append(f"fault: {dev.emu.last_fault()}")
                    continue
                if not np.abs(outs[-1] - ref).max() <= 1e-4:
                    nan = " with NaN" if np.isnan(outs[-1]).any() else ""
                    findings.append(f"mismatch{nan} ({case[0]}, cublas={cublas}, {order})")
            if any(not np.array_equal(o, outs[0], equal_nan=True) for o in outs):
                findings.append(f"orders differ ({case[0]}, cublas={cublas})")
    findings += [f"ubsan: {line}" for line in capfd.readouterr().err.splitlines() if "runtime error:" in line]
    print(f"\nmutant {name}: {len(findings)} finding(s); first: {findings[:1]}")
    assert any(re.search(MUTANTS[name][2], f) for f in findings), findings
    if any(f.startswith("fault: illegal") for f in findings):
        assert any(re.search(r"groupedGemmKernel<\w+>, block \(\d+,\d+,\d+\), thread \(\d+,0,0\)", f) for f in findings)
