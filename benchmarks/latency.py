"""Latency benchmark: naive vs cached streaming schedule (the same code as ``esan-rt bench``).

    python benchmarks/latency.py --preset paper --backend ort --device cpu --lookahead 8 --frames 8 --out DIR

Writes ``DIR/latency.json``, ``DIR/latency.md``, ``DIR/latency_over_time.png`` and ``DIR/stages.png``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from esan.runtime.bench_args import add_bench_args
from esan.runtime.clikit import run_handler


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="latency.py", description=__doc__.splitlines()[0])
    add_bench_args(p)
    return run_handler("esan.runtime.bench:run", p.parse_args(argv), "latency.py")


if __name__ == "__main__":
    sys.exit(main())
