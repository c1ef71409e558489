"""Per graph of a bundle: ONNX Runtime CPU with the batch axis free (dynamic) vs fixed to one stream.

``python benchmarks/ort_sessions_ab.py BUNDLE --graphs bwd_window,cell_fwd --reps 7 --out r.json``

Both sessions of a graph get the same batch-1 inputs; their runs alternate, order swapped every repetition,
so load changes on a shared machine hit both alike; per graph: median ms of each, the ratio fixed / dynamic,
the largest difference between their outputs, and (``--profile``) ONNX Runtime's profiler: executed nodes
per operator type and kernel milliseconds per type (what the optimiser removed with the shapes fixed).
"""

from __future__ import annotations

import argparse
import collections
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from esan.bench import report as bench_report
from esan.runtime.backends.ort_backend import session_options
from esan.runtime.backends.ort_sessions import fixed_batch_dims
from esan.runtime.core.bundle import Bundle, load_bundle
from esan.runtime.core.fsutil import atomic_write_text

VARIANTS = ("dynamic", "fixed")


def open_session(bundle: Bundle, graph: str, variant: str, threads: int | None, profile: str | None) -> Any:
    so = session_options(threads)
    if variant == "fixed":
        for dim, value in fixed_batch_dims(bundle, graph).items():
            so.add_free_dimension_override_by_name(dim, value)
    if profile:
        so.enable_profiling, so.profile_file_prefix = True, profile
    return ort.InferenceSession(str(bundle.graphs[graph].file), so, providers=["CPUExecutionProvider"])


def profile_summary(path: str, runs: int) -> dict[str, Any]:
    """Nodes executed per run and kernel ms per run, by operator type, from an ORT profile file."""
    nodes: collections.Counter = collections.Counter()
    ms: collections.Counter = collections.Counter()
    for e in json.loads(Path(path).read_text()):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            nodes[e["args"]["op_name"]] += 1
            ms[e["args"]["op_name"]] += e["dur"] / 1e3
    return {"nodes_per_run": {k: v // runs for k, v in sorted(nodes.items())},
            "kernel_ms_per_run": {k: round(v / runs, 1) for k, v in ms.most_common()}}  # fmt: skip


def measure(bundle: Bundle, graph: str, reps: int, threads: int | None, profile_dir: str | None) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    feeds = {}
    for t in bundle.graphs[graph].inputs:
        shape, dtype = t.at_batch(1), np.dtype(t.dtype)
        feeds[t.name] = (rng.integers(0, 256, shape, dtype=np.uint8) if dtype == np.uint8
                         else (0.5 * rng.standard_normal(shape)).astype(dtype))  # fmt: skip
    prefix = {v: f"{profile_dir}/{graph}_{v}" if profile_dir else None for v in VARIANTS}
    sessions = {v: open_session(bundle, graph, v, threads, prefix[v]) for v in VARIANTS}
    outs = {v: s.run(None, feeds) for v, s in sessions.items()}  # warm-up run, also the outputs compared
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(reps):
        for v in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            t0 = time.perf_counter()
            sessions[v].run(None, feeds)
            times[v].append((time.perf_counter() - t0) * 1e3)
    med = {v: round(statistics.median(x), 2) for v, x in times.items()}
    entry: dict[str, Any] = {
        "median_ms": med, "fixed_over_dynamic": round(med["fixed"] / med["dynamic"], 3),
        "samples_ms": {v: [round(x, 1) for x in t] for v, t in times.items()},
        "max_abs_diff": max(float(np.abs(a - b).max()) for a, b in zip(outs["dynamic"], outs["fixed"], strict=True)),
    }  # fmt: skip
    if profile_dir:
        entry["profile"] = {v: profile_summary(sessions[v].end_profiling(), reps + 1) for v in VARIANTS}
    return entry


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--graphs", default="bwd_window,cell_fwd,decoder")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int)
    p.add_argument("--profile", action="store_true", help="also ONNX Runtime's profiler (nodes and kernel ms)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    bundle = load_bundle(args.bundle)
    load_start = bench_report.load_average()
    graphs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="esan-ort-prof-") as tmp:
        for g in args.graphs.split(","):
            graphs[g] = measure(bundle, g, args.reps, args.threads, tmp if args.profile else None)
            print(g, json.dumps({k: graphs[g][k] for k in ("median_ms", "fixed_over_dynamic", "max_abs_diff")}),
                  flush=True)  # fmt: skip
    report = {"command": shlex.join(sys.argv), "machine": bench_report.machine_info(),
              "versions": bench_report.versions(), "onnxruntime": ort.__version__,
              "load_average": {"start": load_start, "end": bench_report.load_average()},
              "bundle": {"root": str(bundle.root), "lookahead": bundle.lookahead, "batch": bundle.batch},
              "graphs": graphs}  # fmt: skip
    atomic_write_text(Path(args.out), json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
