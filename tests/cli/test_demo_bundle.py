"""The demo's shipped ONNX bundle: it is what our export writes from the shipped checkpoint, and the demo
runs it without PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from esan.runtime.core.assets import DEMO_BUNDLE, DEMO_CHECKPOINT, DEMO_LOOKAHEAD
from esan.runtime.core.bundle import GRAPH_NAMES, load_bundle, sha256_file

# fields that differ between two exports of the same checkpoint (when, by which version, parity figures)
_VOLATILE = {"created_at", "package_version", "checks", "source_checkpoint", "graphs"}


def _graph_inputs(spec, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    feeds = {}
    for t in spec.inputs:
        shape = [d if isinstance(d, int) else batch * t.rows for d in t.shape]
        if t.dtype == "uint8":
            feeds[t.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
    return feeds


def test_shipped_bundle_is_consistent() -> None:
    bundle = load_bundle(DEMO_BUNDLE)  # verifies every graph file against its sha256
    assert bundle.lookahead == DEMO_LOOKAHEAD and bundle.precision == "fp32" and bundle.dcn == "standard"
    assert bundle.source_checkpoint == {"path": DEMO_CHECKPOINT.name, "sha256": sha256_file(DEMO_CHECKPOINT)}
    assert sum(p.stat().st_size for p in DEMO_BUNDLE.iterdir()) < 2_000_000


@pytest.mark.slow
def test_shipped_bundle_equals_a_fresh_export(tmp_path: Path) -> None:
    """Same manifest (but for time, version and parity figures), same graph inputs/outputs, same maps."""
    import onnxruntime as ort

    from esan.export.demo_bundle import write_demo_bundle

    fresh_dir = write_demo_bundle(tmp_path / "fresh", verify=False)
    shipped_man = json.loads((DEMO_BUNDLE / "manifest.json").read_text())
    fresh_man = json.loads((fresh_dir / "manifest.json").read_text())
    assert {k: v for k, v in shipped_man.items() if k not in _VOLATILE} == \
        {k: v for k, v in fresh_man.items() if k not in _VOLATILE}
    assert shipped_man["source_checkpoint"] == fresh_man["source_checkpoint"]
    shipped, fresh = load_bundle(DEMO_BUNDLE), load_bundle(fresh_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    rng = np.random.default_rng(3)
    for name in GRAPH_NAMES:
        a, b = shipped.graphs[name], fresh.graphs[name]
        assert (a.inputs, a.outputs) == (b.inputs, b.outputs), name
        feeds = _graph_inputs(a, rng, batch=2)  # asymmetric: batch 2 at 64x96
        run_a = ort.InferenceSession(str(a.file), opts, providers=["CPUExecutionProvider"]).run(None, feeds)
        run_b = ort.InferenceSession(str(b.file), opts, providers=["CPUExecutionProvider"]).run(None, feeds)
        for x, y in zip(run_a, run_b, strict=True):
            assert x.shape == y.shape and np.abs(x).max() > 0, name
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(y).max())), err_msg=name)


def test_demo_runs_the_shipped_bundle_without_torch(tmp_path: Path) -> None:
    """``esan-rt demo`` with torch and onnx unimportable, as on the base install."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = sys.modules['onnx'] = None  # what `import torch` sees when it is absent\n"
        "from esan.runtime.cli import main\n"
        f"sys.exit(main(['demo', '--out', {str(tmp_path / 'o')!r}, '--frames', '12']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo_tiny.pt on ONNX Runtime CPU, lookahead 8" in proc.stdout
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["backend"] == "ort" and report["frames"] + report["dropped_frames"] == 12
    assert len(list((tmp_path / "o" / "maps").glob("*.png"))) == report["frames"] > 0


def test_stream_default_model_runs_without_torch(tmp_path: Path) -> None:
    """``esan-rt stream`` without --checkpoint/--bundle on ONNX Runtime uses the shipped bundle (no export)."""
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(frames / f"{i:03d}.png"), rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    code = (
        "import sys\n"
        "sys.modules['torch'] = sys.modules['onnx'] = None\n"
        "from esan.runtime.cli import main\n"
        f"sys.exit(main(['stream', '--source', {str(frames)!r}, '--backend', 'ort', '--threads', '1',"
        f" '--save-maps', {str(tmp_path / 'maps')!r}]))\n"
    )
    env = {**os.environ, "ESAN_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list((tmp_path / "maps").glob("*.npy"))) == 6
    assert not (tmp_path / "cache").exists()  # nothing exported
