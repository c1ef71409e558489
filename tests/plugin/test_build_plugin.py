"""``esan-rt build-plugin`` and the runtime's default library search, exercised as a user runs them.

Nothing is patched: the command runs in a subprocess with its own ``HOME`` (so the per-user folder is a
temporary one) and without ``ESAN_PLUGIN_DIR``, and a second process finds and calls the library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from esan.runtime.backends import plugin_lib

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != plugin_lib.ENV_PLUGIN_DIR}
    return {**env, "HOME": str(home), **extra}


def _esan_rt(args: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esan.runtime.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_default_search_names_the_checkout_build_folder() -> None:
    """``cmake -S plugins -B build`` at the repository root writes to ``build/``: that folder is searched."""
    dirs = plugin_lib.search_dirs()
    assert REPO_ROOT / "build" in dirs
    assert plugin_lib.PLUGIN_SOURCES == REPO_ROOT / "plugins"
    assert (plugin_lib.PLUGIN_SOURCES / "CMakeLists.txt").is_file()
    assert dirs[-1] == Path.home() / ".cache" / "esan-rt" / "plugins"
    assert "esan-rt build-plugin" in plugin_lib.BUILD_HINT and "cmake -S plugins -B build" in plugin_lib.BUILD_HINT


def test_missing_cmake_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = _esan_rt(["build-plugin"], _env(tmp_path, PATH=str(empty)), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "cmake not found" in proc.stderr and "pip install cmake" in proc.stderr
    assert not (tmp_path / ".cache" / "esan-rt" / "plugins" / "libesan_dcn_kernels.so").exists()


def test_bad_tensorrt_root_is_one_line(tmp_path: Path) -> None:
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found on PATH")
    proc = _esan_rt(["build-plugin", "--tensorrt-root", str(tmp_path), "--no-cuda"], _env(tmp_path), timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "has no include/NvInfer.h" in proc.stderr


_FIND_AND_CALL = """
import numpy as np
from esan.runtime.backends import plugin_lib
lib = plugin_lib.load_kernel_library()
print(plugin_lib.find_library("esan_dcn_kernels"))
print(lib.esan_dcn_has_cuda())
rng = np.random.default_rng(0)
x = rng.standard_normal((1, 3, 5, 7)).astype(np.float32)
w = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
b = rng.standard_normal(4).astype(np.float32)
off = np.zeros((1, 2, 5, 7), np.float32)  # zero offsets, unit mask: a plain 1x1 convolution
got = plugin_lib.deform_conv2d_host(x, off, None, w, b)
want = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x) + b[None, :, None, None]
print(float(np.abs(got - want).max()))
"""


@pytest.mark.slow
def test_build_plugin_is_found_by_the_default_search(tmp_path: Path) -> None:
    """Build with the installed command (CUDA launcher when nvcc exists), then find and call it unpatched."""
    if shutil.which("cmake") is None or not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        pytest.skip("cmake or a C++ compiler is missing")
    from esan.runtime.cli.build_plugin import find_nvcc, local_cuda_arch

    nvcc = find_nvcc()
    args = ["build-plugin", "--jobs", "2"] + (["--cuda-arch", local_cuda_arch() or "90"] if nvcc else [])
    env = _env(tmp_path)
    proc = _esan_rt(args, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    user_dir = tmp_path / ".cache" / "esan-rt" / "plugins"
    built = user_dir / plugin_lib.library_filename("esan_dcn_kernels")
    assert f"built {built}" in proc.stdout
    assert "[1/3] configuring" in proc.stdout and "[3/3] installing" in proc.stdout

    found = subprocess.run([sys.executable, "-c", _FIND_AND_CALL], env=env, capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)  # fmt: skip
    assert found.returncode == 0, found.stderr
    path, has_cuda, err = found.stdout.split()
    checkout_lib = REPO_ROOT / "build" / built.name
    assert Path(path) == (checkout_lib if checkout_lib.is_file() else built)  # a checkout build comes first
    if Path(path) == built:
        assert int(has_cuda) == (1 if nvcc else 0)
    assert float(err) < 1e-4
