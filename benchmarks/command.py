"""``esan-rt bench`` / ``benchmarks/latency.py``: the measurement the options ask for.

``--server``: load generation against a Triton server (``esan.bench.serving``); ``--precision`` with a
list or int8: the cached schedule per precision side by side (``esan.bench.precisions``); otherwise
naive vs cached (``esan.bench.latency``), with ``--streams`` the multi-stream comparison on top.
"""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    """Handler of ``esan-rt bench`` (and ``benchmarks/latency.py``)."""
    if getattr(args, "server", None):
        from esan.bench.serving import run_served

        return run_served(args)
    from esan.bench.precisions import is_comparison

    if is_comparison(args.precision):
        from esan.bench.precisions import run_precisions

        return run_precisions(args)
    from esan.bench.latency import run as run_latency

    return run_latency(args)
