"""Chunked backward approximation vs exact streaming maps (mean CC, max abs) for C in {1, 4, 8}.

    python benchmarks/chunk_quality.py [--checkpoint CKPT] [--data SYNTH_ROOT] [--out chunk_quality.json]

Implementation: ``esan.runtime.bench_chunk``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from esan.runtime.bench_chunk import add_args
from esan.runtime.clikit import run_handler


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chunk_quality.py", description=__doc__.splitlines()[0])
    add_args(p)
    return run_handler("esan.runtime.bench_chunk:run", p.parse_args(argv), "chunk_quality.py")


if __name__ == "__main__":
    sys.exit(main())
