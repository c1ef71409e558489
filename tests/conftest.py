"""Shared fixtures: a randomised tiny checkpoint, a tiny ONNX bundle, test clips, reference maps.

Keep fixtures small (tiny preset, one thread): the test machine is shared.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BUNDLE_LOOKAHEAD = 2  # the tiny bundle's bwd_window is unrolled for this L


def make_clip(n: int, hw: tuple[int, int] = (50, 120), seed: int = 0) -> list[np.ndarray]:
    """``n`` random RGB uint8 frames; the default size has a wider aspect than the tiny input (64x96)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


def reference_maps(model, frames: list[np.ndarray], lookahead, backward_chunk: int = 1) -> np.ndarray:
    """``ESAN.forward`` on the letterboxed clip: ``float32 [N, H/2, W/2]``."""
    import torch

    from esan.runtime.core.letterbox import preprocess

    x = np.stack([preprocess(f, tuple(model.cfg.input_size))[0] for f in frames])
    with torch.inference_mode():
        out = model(torch.from_numpy(x)[None], lookahead=lookahead, backward_chunk=backward_chunk)
    return out[0, :, 0].numpy()


def randomised_tiny_model(seed: int = 0):
    """Tiny ESAN with non-zero DCN offsets/masks and a decoder that spreads the maps over (0, 1)."""
    import torch

    from esan.train.config import ESANConfig
    from esan.train.model import ESAN

    torch.manual_seed(seed)
    model = ESAN(ESANConfig.tiny()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "conv_offset_mask" in name:
                p.normal_(0.0, 0.05)
        model.final_conv[0].weight.mul_(50.0)
    return model


@pytest.fixture(scope="session")
def tiny_model():
    import torch

    torch.set_num_threads(1)
    return randomised_tiny_model()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    from esan.train.checkpoint import save

    return save(tmp_path_factory.mktemp("ckpt") / "tiny.pt", tiny_model, note="randomised tiny for tests")


def export_available() -> bool:
    return importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxscript") is not None


def export_bundle(checkpoint: Path, out: Path, lookahead: int, precision: str = "fp32") -> Path:
    """Run ``export/to_onnx.py`` in a subprocess (one thread, no parity check: the tests check)."""
    if not export_available():
        pytest.skip("the ONNX export needs onnx and onnxscript: pip install 'esan-rt[train]' (or [dev])")
    cmd = [sys.executable, str(REPO / "export" / "to_onnx.py"), str(checkpoint), "--out", str(out)]
    cmd += ["--lookahead", str(lookahead), "--dcn", "standard", "--precision", precision, "--no-verify"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if proc.returncode != 0 or not (out / "manifest.json").is_file():
        pytest.fail(f"export failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, tmp_path_factory) -> Path:
    """fp32 / standard-DCN ONNX bundle of the tiny checkpoint, ``bwd_window`` unrolled for L=2."""
    return export_bundle(tiny_checkpoint, tmp_path_factory.mktemp("bundle") / "tiny", BUNDLE_LOOKAHEAD)


@pytest.fixture(scope="session")
def tiny_bundle_fp16(tiny_checkpoint, tmp_path_factory) -> Path:
    return export_bundle(tiny_checkpoint, tmp_path_factory.mktemp("bundle") / "tiny16", BUNDLE_LOOKAHEAD, "fp16")


@pytest.fixture(scope="session")
def torch_backend(tiny_checkpoint):
    from esan.runtime.backends import open_backend

    backend = open_backend("torch", checkpoint=tiny_checkpoint, threads=1)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def ort_backend(tiny_bundle):
    from esan.runtime.backends import open_backend

    backend = open_backend("ort", bundle_dir=tiny_bundle, threads=1)
    yield backend
    backend.close()


@pytest.fixture(params=["torch", "ort"])
def backend(request):
    """Each CPU backend in turn (the ort one skips where onnx/onnxscript are not installed)."""
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture
def shared_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``ESAN_CACHE_DIR`` shared by the session's CLI tests (a checkpoint is exported once), one thread."""
    cache = tmp_path_factory.getbasetemp() / "esan-cache"
    monkeypatch.setenv("ESAN_CACHE_DIR", str(cache))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return cache


@pytest.fixture
def l8_bundle(tiny_checkpoint: Path, shared_cache: Path) -> Path:
    """The tiny checkpoint exported through the bundle cache with L = 8 (what ``--checkpoint`` streams use)."""
    from esan.export.bundle_cache import ensure_bundle

    return ensure_bundle(tiny_checkpoint, 8, "fp32", "standard", log=lambda m: None)

