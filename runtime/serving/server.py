"""Find (or install) a ``tritonserver`` and run it on a model repository.

Where the server comes from, in order: ``--tritonserver PATH`` / ``$ESAN_TRITONSERVER`` (a server
install such as NVIDIA's ``/opt/tritonserver/bin/tritonserver``, backends beside it), the copy
``esan-rt serve --install-server`` puts in ``$ESAN_TRITON_DIR`` (default ``~/.cache/esan-rt/tritonserver``),
then an ``nvidia-pytriton`` installed in this Python. ``nvidia-pytriton`` ships a CPU-capable
``tritonserver`` with the Python backend; it pins ``numpy<2``, so it is installed into its own folder
(``pip install --no-deps --target``) instead of this environment: only its binaries are used.

The Python backend's stub embeds the running interpreter: its ``libpython`` directory goes first on
``LD_LIBRARY_PATH`` and its ``bin`` first on ``PATH``, so the model sees this environment's packages.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from esan.runtime.core.errors import UserError

PYTRITON = "nvidia-pytriton==0.7.0"
# its wheels' sha256 (manylinux_2_35 x86_64, aarch64): pip refuses anything else (--require-hashes)
PYTRITON_SHA256 = ("21f063ff93bb426d0c06b7a55e7eb9efcfe62c0dddd9a908e9877e18710128df",
                   "f99e07ee56fe065337453956afba17d2673e02ec6a632c3de26ce6e7b32a0898")
INSTALL_HINT = ("install one with `esan-rt serve --install-server` (nvidia-pytriton, into its own folder), "
                "or pass --tritonserver PATH to an existing Triton server")


def triton_dir() -> Path:
    env = os.environ.get("ESAN_TRITON_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "esan-rt" / "tritonserver"


def _pytriton_dist() -> Path:
    return triton_dir() / PYTRITON.replace("==", "-")


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backends: Path  # --backend-directory (holds python/)
    libs: tuple[Path, ...] = ()  # extra LD_LIBRARY_PATH entries

    def env(self) -> dict[str, str]:
        """The server's environment: this interpreter's libpython and bin first."""
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        parts = [p for p in (libdir, *map(str, self.libs), env.get("LD_LIBRARY_PATH", "")) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(parts)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env


def _from_pytriton(root: Path) -> TritonInstall | None:
    """A server from an nvidia-pytriton tree (``root`` holds ``pytriton/`` and ``nvidia_pytriton.libs/``)."""
    dist = root / "pytriton" / "tritonserver"
    if not (dist / "bin" / "tritonserver").is_file():
        return None
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise UserError(f"{root} has no Triton Python-backend stub for Python {version}; run esan-rt under "
                        "Python 3.8-3.13 or pass --tritonserver PATH")
    # our copy of the Python backend lives under triton_dir(), never inside the install (which may be a
    # site-packages folder of this Python): one folder per install and Python version
    key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    backends = triton_dir() / "esan-backends" / f"{key}-py{version}"
    python = backends / "python"
    if not (python / "triton_python_backend_stub").is_file():  # the stub must sit beside libtriton_python.so
        backends.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".backends.", dir=backends.parent))
        shutil.copytree(dist / "backends" / "python", tmp / "python", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, tmp / "python" / "triton_python_backend_stub")
        shutil.rmtree(backends, ignore_errors=True)
        backends.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(backends)
    return TritonInstall(dist / "bin" / "tritonserver", backends, (root / "nvidia_pytriton.libs",))


def find_triton(explicit: str | None = None) -> TritonInstall:
    """The ``tritonserver`` to run (module docstring); one ``UserError`` line saying how to get one if none."""
    path = explicit or os.environ.get("ESAN_TRITONSERVER")
    if path:
        binary = Path(path).expanduser()
        if binary.is_dir():
            binary = binary / "bin" / "tritonserver"
        if not binary.is_file():
            raise UserError(f"no tritonserver at {path}; {INSTALL_HINT}")
        backends = binary.resolve().parent.parent / "backends"
        return TritonInstall(binary, backends)
    found = _from_pytriton(_pytriton_dist())
    if found:
        return found
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec and spec.origin:
        found = _from_pytriton(Path(spec.origin).parent.parent)
        if found:
            return found
    raise UserError(f"no Triton server found; {INSTALL_HINT}")


def install_command(target: Path) -> list[str]:
    """pip, ignoring its environment and user config, installing only the pinned wheel with its hash."""
    req = target / "requirements.txt"
    req.write_text(f"{PYTRITON} " + " ".join(f"--hash=sha256:{h}" for h in PYTRITON_SHA256) + "\n")
    return [sys.executable, "-m", "pip", "install", "--isolated", "--no-deps", "--only-binary=:all:",
            "--require-hashes", "--target", str(target / "site"), "-r", str(req)]


def install_server(log=print) -> TritonInstall:
    """``pip install --no-deps --target`` nvidia-pytriton into ``triton_dir()`` (once); returns the install."""
    dest = _pytriton_dist()
    if (dest / "pytriton" / "tritonserver" / "bin" / "tritonserver").is_file():
        log(f"Triton server already installed in {dest}")
        return find_triton()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".install.", dir=dest.parent))
    log(f"installing {PYTRITON} (tritonserver with the Python backend, ~55 MB download) into {dest}")
    cmd = install_command(tmp)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])
            raise UserError(f"could not install {PYTRITON} ({tail}); it needs Linux x86_64/aarch64 with glibc >= 2.35")
        (tmp / "site").rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return find_triton()
