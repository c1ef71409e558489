"""Latency plot (``--plot``): per-frame end-to-end latency over time and a per-stage breakdown."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from esan.runtime.core.fsutil import atomic_path
from esan.runtime.io.report import LatencyLog


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def save_latency_plot(log: LatencyLog, path: str | os.PathLike, title: str = "", live: bool = True) -> str | None:
    """Write the PNG; returns a note instead when matplotlib is missing or nothing was measured.

    ``live``: plot capture -> map (a live source); else push -> map (a file read as fast as possible).
    """
    if not have_matplotlib():
        return f"latency plot {path} skipped: matplotlib is not installed (pip install matplotlib)"
    if len(log) == 0:
        return f"latency plot {path} skipped: no frames were processed"
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    t = np.asarray(log.ready_s) - (log.start_s or 0.0)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    if live:
        ax1.plot(t, log.e2e_ms, lw=1, label="end-to-end (capture -> map)")
    else:
        ax1.plot(t, log.processing_ms, lw=1, label="processing (push -> map)")
    compute = log.stage("total")
    if not np.all(np.isnan(compute)):
        ax1.plot(t, compute, lw=1, alpha=0.7, label="compute of the producing round")
    if log.output_ms.size:
        ax1.plot(t, log.stage("output"), lw=1, alpha=0.7, label="output stage (writer thread)")
    ax1.set_xlabel("time since first frame (s)")
    ax1.set_ylabel("latency (ms)")
    ax1.set_title("per-frame latency")
    ax1.grid(alpha=0.3)
    ax1.legend(loc="upper right", fontsize=8)

    stats = log.stage_stats()
    names = list(stats)
    if names:
        y = np.arange(len(names))
        p50 = [stats[n]["p50"] or 0.0 for n in names]
        p95 = [stats[n]["p95"] or 0.0 for n in names]
        ax2.barh(y - 0.2, p50, height=0.4, label="p50")
        ax2.barh(y + 0.2, p95, height=0.4, label="p95")
        ax2.set_yticks(y, names)
        ax2.invert_yaxis()
        ax2.legend(fontsize=8)
    else:
        ax2.text(0.5, 0.5, "no per-stage timings", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_xlabel("ms per call")
    ax2.set_title("per-stage breakdown")
    ax2.grid(alpha=0.3, axis="x")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return None
