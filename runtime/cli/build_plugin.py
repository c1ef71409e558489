"""Handler of ``esan-rt build-plugin``: build the shipped ``plugins/`` sources with CMake where the runtime looks.

Builds ``esan_dcn_kernels`` (host reference, plus the CUDA launcher when nvcc is found) and, with a TensorRT
prefix holding ``include/NvInfer.h``, the TensorRT plugin ``esan_dcn_plugin``. CMake works in a temporary
folder; the libraries then replace those in ``--out`` one file at a time (atomic), so a failed build leaves
an earlier one untouched. The default ``--out`` is the per-user folder ``plugin_lib.search_dirs()`` holds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from esan.runtime.backends import plugin_lib
from esan.runtime.core import plugin_spec
from esan.runtime.core.errors import UserError
from esan.runtime.core.fsutil import atomic_path, check_writable_dir

CMAKE_HINT = "install CMake >= 3.18 (`pip install cmake` or `apt-get install cmake`)"
CXX_HINT = "install a C++17 compiler (`apt-get install g++`), or set CXX to one"


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tensorrt-root", metavar="DIR",
                   help="TensorRT prefix with include/NvInfer.h: also build the TensorRT plugin (default: "
                        "$TENSORRT_ROOT; without it only the kernel library is built)")
    p.add_argument("--out", metavar="DIR",
                   help=f"folder to put the libraries in (default: {plugin_lib.user_plugin_dir()}, searched by "
                        f"the runtime; another folder must be named in ${plugin_lib.ENV_PLUGIN_DIR})")
    p.add_argument("--cuda-arch", metavar="LIST",
                   help="CUDA architectures, e.g. 90 or '80;90' (default: this machine's GPU, else 75-90)")
    p.add_argument("--no-cuda", action="store_true", help="build the host reference only, even where nvcc exists")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N", help="parallel compile jobs")


def _log(msg: str) -> None:
    print(f"esan-rt build-plugin: {msg}", flush=True)


def find_nvcc() -> str | None:
    """nvcc on PATH, under $CUDA_HOME, or in /usr/local/cuda."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and Path(root, "bin", "nvcc").is_file():
            return str(Path(root, "bin", "nvcc"))
    return None


def pip_cublas_root() -> str | None:
    """A pip CUDA wheel folder with include/cublas_v2.h and lib/libcublas.so* (nvidia/cu13, nvidia/cublas)."""
    for entry in sys.path:
        for sub in ("nvidia/cu13", "nvidia/cublas"):
            root = Path(entry, sub)
            if (root / "include" / "cublas_v2.h").is_file() and any((root / "lib").glob("libcublas.so*")):
                return str(root)
    return None


def local_cuda_arch() -> str | None:
    """This machine's GPU as a CMake architecture (``"90"``), or None without a usable GPU."""
    from esan.runtime.backends.cuda_probe import probe_driver

    gpu = probe_driver()
    return gpu.compute_capability.replace(".", "") if gpu.ok and gpu.compute_capability else None


def configure_command(args: argparse.Namespace, build_dir: Path) -> tuple[list[str], str]:
    """The cmake configure command line, and one line saying what it will build."""
    sources = plugin_lib.PLUGIN_SOURCES
    if not (sources / "CMakeLists.txt").is_file():
        raise UserError(f"the plugin sources are missing ({sources}/CMakeLists.txt); reinstall esan-rt")
    cmd = ["cmake", "-S", str(sources), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
           "-DESAN_DCN_BUILD_GLUE_CHECK=OFF"]  # fmt: skip
    nvcc = None if args.no_cuda else find_nvcc()
    if nvcc:
        cmd.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
        arch = args.cuda_arch or local_cuda_arch()
        if arch:
            cmd.append(f"-DESAN_CUDA_ARCHITECTURES={arch}")
        cublas = pip_cublas_root()
        if cublas:
            cmd.append(f"-DESAN_CUBLAS_ROOT={cublas}")
        what = f"kernels with the CUDA launcher ({nvcc}, architectures {arch or 'CMake default list'})"
    else:
        cmd.append("-DESAN_DCN_WITH_CUDA=OFF")
        what = "kernels, host reference only (" + ("--no-cuda" if args.no_cuda else "no nvcc found") + ")"
    trt_root = args.tensorrt_root or os.environ.get("TENSORRT_ROOT")
    if trt_root:
        if not Path(trt_root, "include", "NvInfer.h").is_file():
            raise UserError(f"--tensorrt-root {trt_root} has no include/NvInfer.h; pass the TensorRT folder "
                            "that holds include/ (the TensorRT tar package, or the TensorRT OSS checkout)")
        cmd.append(f"-DTENSORRT_ROOT={trt_root}")
        what += f" and the TensorRT plugin ({trt_root})"
    else:
        what += "; no TensorRT plugin (pass --tensorrt-root DIR for it)"
    return cmd, what


def _check_tools() -> None:
    if shutil.which("cmake") is None:
        raise UserError(f"cmake not found on PATH: {CMAKE_HINT}")
    cxx = os.environ.get("CXX")
    if not (cxx and shutil.which(cxx)) and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        raise UserError(f"no C++ compiler found (c++, g++, clang++ or $CXX): {CXX_HINT}")


def _run(step: str, cmd: list[str], log: Path) -> None:
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode
        except OSError as exc:
            raise UserError(f"{step} could not start {cmd[0]}: {exc}") from None
    if rc != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        last = (errors or lines or ["(no output)"])[-1].strip()
        raise UserError(f"{step} failed (exit code {rc}): {last[:300]} (full log: {log})")


def build(args: argparse.Namespace) -> list[Path]:
    """Configure, compile and install the libraries; returns their paths in ``--out``."""
    _check_tools()
    out = Path(args.out).expanduser() if args.out else plugin_lib.user_plugin_dir()
    try:
        check_writable_dir(out)
    except PermissionError as exc:
        raise UserError(f"--out: {exc}") from None
    log = out / "build-plugin.log"
    log.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="esan-plugin-build-") as tmp:
        build_dir = Path(tmp)
        cmd, what = configure_command(args, build_dir)
        _log(f"[1/3] configuring: {what}")
        _run("cmake configure", cmd, log)
        _log(f"[2/3] compiling with {args.jobs} job(s) (log: {log})")
        _run("cmake build", ["cmake", "--build", str(build_dir), "-j", str(max(1, args.jobs))], log)
        _log(f"[3/3] installing into {out}")
        built = []
        for base in (plugin_spec.KERNEL_LIBRARY_BASENAME, plugin_spec.PLUGIN_LIBRARY_BASENAME):
            src = build_dir / plugin_lib.library_filename(base)
            if not src.is_file():
                continue
            with atomic_path(out / src.name) as tmp_lib:
                shutil.copy2(src, tmp_lib)
            built.append(out / src.name)
    if not built:
        raise UserError(f"cmake built no library (full log: {log})")
    return built


def run(args: argparse.Namespace) -> int:
    """``esan-rt build-plugin``."""
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {args.jobs}")
    for path in build(args):
        _log(f"built {path}")
        base = path.name.removeprefix("lib").split(".")[0]
        try:
            found = plugin_lib.find_library(base)
        except FileNotFoundError:
            found = None
        if found is None:
            _log(f"note: the runtime does not search {path.parent}: set {plugin_lib.ENV_PLUGIN_DIR}={path.parent}")
        elif found.resolve() != path.resolve():
            _log(f"note: the runtime finds {found} first (searched in order: "
                 f"{', '.join(str(d) for d in plugin_lib.search_dirs())})")
    return 0
