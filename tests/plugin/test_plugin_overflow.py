"""Extreme parameters of the DCN kernel library: the checks themselves never overflow, and the launcher refuses
what it cannot launch before any work. Runs on the CUDA emulation (``test_plugin_emulation``; UBSan when it links)."""

# ruff: noqa: F811  (pytest fixtures imported from test_plugin_emulation)

from __future__ import annotations

import pytest
from test_plugin_emulation import _no_undefined_behaviour, dev, device, toolchain  # noqa: F401 (fixtures)

from esan.runtime.backends import plugin_lib

BIG = 2**31 - 1
FAKE = 1 << 40  # device pointers of a dry run: launches are checked and logged, never executed


def test_output_plane_product_past_int64_is_refused(dev) -> None:
    # oh = ow = 2 + 2 * (2^31 - 1) = 2^32: oh * ow is 2^64 (0 once wrapped)
    with pytest.raises(ValueError, match="invalid deformable convolution"):
        plugin_lib.make_params((1, 1, 2, 2), (1, 1, 1, 1), padding=(BIG, BIG))


def test_column_rows_product_past_int64_is_refused(dev) -> None:
    # C * kh * kw = 2^30 * 2^30 * 16 = 2^64 (0 once wrapped); the output plane itself is tiny (1 x 2)
    with pytest.raises(ValueError, match="invalid deformable convolution"):
        plugin_lib.make_params((1, 2**30, 1, 1), (1, 2**30, 2**30, 16), stride=(BIG, 1), padding=(2**30, 8))


def _dry_forward(dev, p, cublas: bool, workspace: int | None = None) -> None:
    dev.emu.lib.cuda_emu_set_dry_run(1)
    handle = plugin_lib.create_cublas_handle() if cublas else None
    try:
        ws = workspace or plugin_lib.workspace_size(p, plugin_lib.FLOAT32, cublas)
        plugin_lib.forward_cuda(p, plugin_lib.FLOAT32, [FAKE] * 4 + [None, FAKE], FAKE, ws, handle, 0)
    finally:
        plugin_lib.destroy_cublas_handle(handle)


def test_grid_limit_is_checked_before_any_launch(dev) -> None:
    """groups = 65536 puts 65536 blocks in the built-in GEMM's gridDim.z (at most 65535): refused up front."""
    p = plugin_lib.make_params((1, 65536, 1, 1), (65536, 1, 1, 1), groups=65536)
    with pytest.raises(RuntimeError, match="esan_dcn_forward_cuda failed"):
        _dry_forward(dev, p, cublas=False)
    assert dev.emu.launches() == []  # not even the first im2col


def test_batch_chunks_near_int32_max_end(dev) -> None:
    """batch 2^31 - 1 in chunks of 2^30 + 1 images: the chunk start passes INT32_MAX on the last step."""
    p = plugin_lib.make_params((BIG, 1, 1, 1), (1, 1, 1, 1))
    reserved = plugin_lib.workspace_size(p, plugin_lib.FLOAT32, True) - plugin_lib.workspace_size(p, plugin_lib.FLOAT32,
                                                                                                   False)
    _dry_forward(dev, p, cublas=True, workspace=reserved + 4 * (2**30 + 1) + 256)
    im2col = [grid for name, grid, _ in dev.emu.launches() if name.startswith("deformIm2col")]
    assert len(im2col) == 2  # 2^30 + 1 images, then the remaining 2^30 - 2
