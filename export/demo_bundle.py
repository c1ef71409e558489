"""Write the demo's shipped ONNX bundle from the shipped checkpoint (run again after changing either).

    python -m esan.export.demo_bundle [--out DIR]

fp32, standard DCN, dynamic batch, lookahead ``DEMO_LOOKAHEAD``, verified against PyTorch. The manifest names
the checkpoint by its file name (``demo_tiny.pt``, next to the bundle), not by this machine's path.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from esan.runtime.core.assets import DEMO_BUNDLE, DEMO_CHECKPOINT, DEMO_LOOKAHEAD


def write_demo_bundle(out: Path = DEMO_BUNDLE, verify: bool = True) -> Path:
    """Export ``DEMO_CHECKPOINT`` to ``out`` (replaced atomically); returns ``out``."""
    from esan.export.manifest_writer import read_manifest, write_manifest
    from esan.export.onnx_export import export_bundle

    export_bundle(DEMO_CHECKPOINT, out, lookahead=DEMO_LOOKAHEAD, dcn="standard", precision="fp32", verify=verify)
    manifest = read_manifest(out)
    manifest["source_checkpoint"]["path"] = DEMO_CHECKPOINT.name
    write_manifest(out, manifest)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m esan.export.demo_bundle", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEMO_BUNDLE, help=f"bundle directory (default: {DEMO_BUNDLE})")
    out = write_demo_bundle(p.parse_args(argv).out)
    print(f"demo bundle written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
