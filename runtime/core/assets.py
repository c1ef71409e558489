"""Files shipped with the package: the tiny demo checkpoint and its ONNX bundle.

``DEMO_BUNDLE`` is written from ``DEMO_CHECKPOINT`` by our own export (``python -m esan.export.demo_bundle``),
so ``esan-rt demo`` runs on ONNX Runtime without PyTorch; a test checks it equals a fresh export.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
DEMO_CHECKPOINT = ASSETS_DIR / "demo_tiny.pt"
DEMO_LOOKAHEAD = 8
DEMO_BUNDLE = ASSETS_DIR / f"demo_tiny_L{DEMO_LOOKAHEAD}"
