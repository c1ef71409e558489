"""Files shipped with the package (the bundled demo checkpoint)."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
DEMO_CHECKPOINT = ASSETS_DIR / "demo_tiny.pt"
