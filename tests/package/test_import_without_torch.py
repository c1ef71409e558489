"""The runtime imports and runs without torch (docs/contracts.md: torch only in torch_backend)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK_TORCH = "import sys\nsys.modules['torch'] = None  # any 'import torch' now raises ImportError\n"


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


TORCH_MODULES = {"backends.torch_backend"}  # torch by design


def test_every_runtime_module_imports_without_torch():
    root = Path(__file__).resolve().parents[2] / "runtime"
    names = sorted(
        str(p.relative_to(root).with_suffix("")).replace(os.sep, ".")
        for p in root.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")  # __main__ runs the CLI when imported
    )
    names = [n for n in names if n not in TORCH_MODULES]
    assert "core.processor" in names and "backends.ort_backend" in names and "cli.stream" in names
    code = "import importlib\n" + "".join(f"importlib.import_module('esan.runtime.{n}')\n" for n in names)
    proc = run_without_torch(code + "assert sys.modules['torch'] is None\nprint('ok')\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_torch_backend_without_torch_is_one_clear_error(tmp_path):
    proc = run_without_torch(
        f"""
        from esan.runtime.backends import open_backend
        from esan.runtime.core.errors import UserError
        try:
            open_backend('torch', checkpoint={str(tmp_path / "x.pt")!r})
        except UserError as exc:
            print(exc)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "pip install" in proc.stdout and "torch" in proc.stdout


def test_ort_streaming_without_torch(tiny_bundle):
    proc = run_without_torch(
        f"""
        import numpy as np
        from esan.runtime.backends import open_backend
        from esan.runtime.core.processor import StreamProcessor
        proc = StreamProcessor(open_backend('ort', bundle_dir={str(tiny_bundle)!r}, threads=1), lookahead=2)
        rng = np.random.default_rng(0)
        results = []
        for _ in range(7):
            results += proc.push(rng.integers(0, 256, (50, 120, 3), dtype=np.uint8))
        results += proc.finish()
        print([r.index for r in results], results[0].saliency.shape)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 1, 2, 3, 4, 5, 6] (32, 48)"
