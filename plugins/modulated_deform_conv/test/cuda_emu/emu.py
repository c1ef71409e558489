"""Build and drive the CUDA emulation of the ESAN kernel library (tests only; numpy + ctypes, no torch).

``build()`` compiles ``modulatedDeformConvKernel.cu`` (or any variant of it) as C++ with g++ against the stand-in
CUDA headers of this folder (``-include cuda_emu.h``), links it with the host code and the emulator into
``libesan_dcn_kernels.so`` (same C entry points as the real library) and returns the library path. The only source
transformation is the triple-chevron launch syntax, which is not C++: ``k<<<g, b, s, st>>>(args)`` becomes
``::cuda_emu::chevron(k, g, b, s, st)(args)`` on the same line. ``Emulator`` allocates "device" memory and controls
the execution order, fault injection and the launch log through ctypes.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PLUGIN_DIR = HERE.parents[1]
KERNEL_SOURCE = PLUGIN_DIR / "modulatedDeformConvKernel.cu"
HOST_SOURCE = PLUGIN_DIR / "modulatedDeformConvHost.cpp"
RUNTIME_SOURCES = (
    "emu_runtime.cpp",
    "emu_memory.cpp",
    "emu_launch.cpp",
    "emu_block.cpp",
    "emu_cublas.cpp",
    "emu_symbols.cpp",
)
LIBRARY_NAME = "libesan_dcn_kernels.so"
ORDERS = {"forward": 0, "reverse": 1, "random": 2}
_CHEVRON = re.compile(r"([A-Za-z_][\w:]*(?:\s*<[^<>;(){}]*>)?)\s*<<<(.*?)>>>", re.S)
_UBSAN = ["-fsanitize=undefined,float-cast-overflow", "-fno-sanitize=vptr"]


def compiler() -> str | None:
    """The g++ used for the emulation build (``$CXX`` when it is g++), or None."""
    env = os.environ.get("CXX")
    if env and "g++" in Path(env).name and shutil.which(env):
        return shutil.which(env)
    return shutil.which("g++")


def rewrite_launches(source: str) -> str:
    """Replace ``kernel<<<config>>>`` by ``::cuda_emu::chevron(kernel, config)``, keeping line numbers."""
    return _CHEVRON.sub(lambda m: f"::cuda_emu::chevron({m.group(1)}, {m.group(2)})", source)


def _run_all(commands: Sequence[list[str]], jobs: int) -> None:
    pending = list(commands)
    running: list[tuple[list[str], subprocess.Popen]] = []
    while pending or running:
        while pending and len(running) < jobs:
            cmd = pending.pop(0)
            running.append((cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        cmd, proc = running.pop(0)
        out, _ = proc.communicate()
        if proc.returncode != 0:
            for _, other in running:
                other.kill()
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out[-6000:]}")


def ubsan_available(cxx: str, folder: Path) -> bool:
    """Whether ``cxx -fsanitize=undefined`` can build a shared library here."""
    probe = folder / "ubsan_probe.cpp"
    probe.write_text("int esan_probe(int a) { return a * 3; }\n")
    cmd = [cxx, "-shared", "-fPIC", *_UBSAN, str(probe), "-o", str(folder / "libubsan_probe.so")]
    return subprocess.run(cmd, capture_output=True).returncode == 0


@dataclass
class Toolchain:
    """Compiler and flags shared by every variant; ``objects`` are the compiled host code and emulator."""

    cxx: str
    folder: Path
    ubsan: bool
    objects: list[Path]

    def flags(self) -> list[str]:
        return ["-std=c++17", "-O1", "-fPIC", "-g0", "-Wall", "-Wextra", *(_UBSAN if self.ubsan else [])]


def prepare(folder: Path, jobs: int = 2, ubsan: bool | None = None) -> Toolchain:
    """Compile the emulator and the host code once into ``folder/common``; raises when no g++ is found.

    ``ubsan=None`` enables UndefinedBehaviorSanitizer (reports on stderr, "runtime error: ...") when it links here.
    """
    cxx = compiler()
    if cxx is None:
        raise FileNotFoundError("g++ not found on PATH (set CXX)")
    common = folder / "common"
    common.mkdir(parents=True, exist_ok=True)
    tools = Toolchain(cxx, folder, ubsan_available(cxx, common) if ubsan is None else ubsan, [])
    commands = []
    for source in [*(HERE / s for s in RUNTIME_SOURCES), HOST_SOURCE]:
        obj = common / (source.stem + ".o")
        tools.objects.append(obj)
        cmd = [cxx, *tools.flags(), "-DESAN_DCN_WITH_CUDA", f"-I{HERE}", f"-I{PLUGIN_DIR}"]
        commands.append([*cmd, "-c", str(source), "-o", str(obj)])
    _run_all(commands, jobs)
    return tools


def build(tools: Toolchain, name: str, source: str | None = None) -> Path:
    """Compile a kernel source (default: the real ``.cu``) into ``<folder>/<name>/libesan_dcn_kernels.so``."""
    return build_variants(tools, {name: source}, jobs=1)[name]


def build_variants(tools: Toolchain, sources: dict[str, str | None], jobs: int = 2) -> dict[str, Path]:
    """``build`` for several variants (name -> source text, None for the real ``.cu``), compiled in parallel."""
    compiles, links, libraries = [], [], {}
    defines = ["-DESAN_DCN_WITH_CUDA", "-DESAN_DCN_WITH_CUBLAS"]
    for name, source in sources.items():
        out = tools.folder / name
        out.mkdir(parents=True, exist_ok=True)
        text = KERNEL_SOURCE.read_text() if source is None else source
        copy = out / "modulatedDeformConvKernel.emu.cpp"
        copy.write_text(f'#line 1 "{KERNEL_SOURCE}"\n' + rewrite_launches(text))
        obj = out / "kernel.o"
        cmd = [tools.cxx, *tools.flags(), *defines, f"-I{HERE}", f"-I{PLUGIN_DIR}", "-Wno-unknown-pragmas"]
        compiles.append([*cmd, "-include", str(HERE / "cuda_emu.h"), "-x", "c++", "-c", str(copy), "-o", str(obj)])
        libraries[name] = out / LIBRARY_NAME
        # -Bsymbolic: calls inside the library bind to the emulator even when a real libcudart is loaded (torch).
        link = [tools.cxx, "-shared", "-Wl,-Bsymbolic", *tools.flags(), "-o", str(libraries[name]), str(obj)]
        links.append([*link, *map(str, tools.objects), "-ldl"])
    _run_all(compiles, jobs)
    for name in sources:
        move_shared_to_section(tools.folder / name / "kernel.o")
    _run_all(links, jobs)
    return libraries


def move_shared_to_section(obj: Path) -> None:
    """Rename the object's .bss* sections to ``cuda_emu_shared`` (poisoned per block by the scheduler).

    In a .cu translation unit, zero-initialised static data are the ``__shared__`` variables (function-local
    statics under cuda_emu.h); anything else there would be poisoned too, so it is refused.
    """
    sections = subprocess.run(["readelf", "-S", "-W", str(obj)], capture_output=True, text=True, check=True).stdout
    bss = dict(re.findall(r"\[\s*(\d+)\]\s+(\.bss\S*)", sections))
    if not bss:
        return
    symbols = subprocess.run(["readelf", "-s", "-W", str(obj)], capture_output=True, text=True, check=True).stdout
    for line in symbols.splitlines():
        cols = line.split()
        if len(cols) >= 8 and cols[3] == "OBJECT" and cols[6] in bss and not cols[7].startswith("_ZZ"):
            raise RuntimeError(f"{obj}: zero-initialised static data {cols[7]} is not a __shared__ variable")
    renames = [arg for name in sorted(set(bss.values())) for arg in ("--rename-section", f"{name}=cuda_emu_shared")]
    subprocess.run(["objcopy", *renames, str(obj)], capture_output=True, text=True, check=True)


class Emulator:
    """Device memory and emulator controls of one built library (the kernel entry points go through ctypes too)."""

    def __init__(self, library: Path) -> None:
        self.lib = lib = ctypes.CDLL(str(library))
        vp, size_t, i32 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
        for fn, args, res in (
            ("cudaMalloc", [ctypes.POINTER(vp), size_t], i32),
            ("cudaFree", [vp], i32),
            ("cudaMemcpy", [vp, vp, size_t, i32], i32),
            ("cudaGetLastError", [], i32),
            ("cudaPeekAtLastError", [], i32),
            ("cudaDeviceReset", [], i32),
            ("cuda_emu_set_order", [i32, ctypes.c_ulonglong], i32),
            ("cuda_emu_set_alignment", [size_t], i32),
            ("cuda_emu_set_dry_run", [i32], None),
            ("cuda_emu_fail_launch", [i32, i32], None),
            ("cuda_emu_set_last_error", [i32], None),
            ("cuda_emu_last_fault", [], ctypes.c_char_p),
            ("cuda_emu_fault_count", [], i32),
            ("cuda_emu_launch_log", [], ctypes.c_char_p),
            ("cuda_emu_clear_launch_log", [], None),
        ):
            getattr(lib, fn).argtypes = args
            getattr(lib, fn).restype = res

    def set_order(self, order: str, seed: int = 0) -> None:
        if self.lib.cuda_emu_set_order(ORDERS[order], seed) != 0:
            raise ValueError(f"unknown order {order!r}")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        status = self.lib.cudaMalloc(ctypes.byref(ptr), nbytes)
        if status != 0 or not ptr.value:
            raise MemoryError(f"cudaMalloc({nbytes}) failed with CUDA error {status}")
        return ptr.value

    def upload(self, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        ptr = self.malloc(array.nbytes)
        if self.lib.cudaMemcpy(ptr, array.ctypes.data, array.nbytes, 1) != 0:
            raise RuntimeError(f"cudaMemcpy to the device failed: {self.last_fault()}")
        return ptr

    def download(self, ptr: int, shape: Sequence[int], dtype: np.dtype | type) -> np.ndarray:
        out = np.empty(shape, dtype)
        if self.lib.cudaMemcpy(out.ctypes.data, ptr, out.nbytes, 2) != 0:
            raise RuntimeError(f"cudaMemcpy from the device failed: {self.last_fault()}")
        return out

    def free(self, ptr: int) -> None:
        self.lib.cudaFree(ptr)

    def reset(self) -> None:
        """A fresh context: frees all device memory and clears sticky and last errors and the launch log."""
        self.lib.cudaDeviceReset()
        self.lib.cuda_emu_clear_launch_log()
        self.lib.cuda_emu_set_dry_run(0)
        self.lib.cuda_emu_fail_launch(-1, 0)

    def last_fault(self) -> str:
        return self.lib.cuda_emu_last_fault().decode()

    def fault_count(self) -> int:
        return int(self.lib.cuda_emu_fault_count())

    def launches(self) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
        """(name, grid, block) of every launch since the last reset; cuBLAS GEMMs: (name, (m, n, batch), (k, 1, 1))."""
        rows = []
        for line in self.lib.cuda_emu_launch_log().decode().splitlines():
            name, *nums = line.rsplit(" ", 6)
            dims = tuple(int(v) for v in nums)
            rows.append((name, dims[:3], dims[3:]))
        return rows


if __name__ == "__main__":  # python emu.py [OUT_DIR]: OUT_DIR/kernel/libesan_dcn_kernels.so from the real .cu
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else PLUGIN_DIR.parents[1] / "build" / "cuda_emu"
    print(build(prepare(out_dir), "kernel"))
