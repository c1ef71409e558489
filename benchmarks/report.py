"""Latency benchmark output: statistics, ``latency.json``, ``latency.md`` and the PNG plots."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from esan.runtime.core.fsutil import atomic_write_text
from esan.runtime.core.version import package_version, utc_now
from esan.runtime.io.report import percentiles

SCHEDULES = ("naive", "cached")
VERSIONED = ("numpy", "onnxruntime", "onnxruntime-gpu", "torch", "torchvision", "onnx", "tensorrt",
             "opencv-python-headless", "matplotlib")  # fmt: skip


def stats(samples_ms: list[float] | np.ndarray) -> dict[str, float | int | None]:
    """``esan.runtime.io.report.percentiles`` (p50/p95/p99, mean, max) plus std, IQR, min and count."""
    v = np.asarray(samples_ms, np.float64)
    out: dict[str, float | int | None] = dict(percentiles(v))
    if v.size == 0:
        return out | dict.fromkeys(("std", "iqr", "min"), None) | {"n": 0}
    q25, q75 = np.percentile(v, (25, 75))
    extra = {"std": v.std(ddof=1) if v.size > 1 else 0.0, "iqr": q75 - q25, "min": v.min()}
    return out | {k: round(float(x), 3) for k, x in extra.items()} | {"n": int(v.size)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process (``getrusage``; kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def current_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(gpu_name: str | None = None) -> dict[str, Any]:
    from esan.runtime.core.cpus import usable_cores

    return {
        "cpu": cpu_model(), "logical_cores": os.cpu_count(), "usable_cores": usable_cores(),
        "platform": platform.platform(), "python": platform.python_version(), "gpu": gpu_name,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }  # fmt: skip


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"esan-rt": package_version()}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def schedule_summary(log: dict[str, Any], gflops: dict[str, float]) -> dict[str, Any]:
    """Everything ``latency.json`` says about one schedule, from its measured ``log``."""
    st = stats(log["samples_ms"])
    n_push = max(len(log["push_ms"]), 1)
    stages = {k: round(v / n_push, 3) for k, v in log["stage_sum_ms"].items()}
    mean_push = float(np.mean(log["push_ms"])) if log["push_ms"] else 0.0
    rest = "other" if stages else "whole step (not split)"  # fused / graph-captured steppers have no stages
    stages[rest] = round(max(mean_push - sum(stages.values()), 0.0), 3)
    p50 = st["p50"]
    total = gflops["total"]
    return {
        "ms_per_frame": st,
        "spread": {"iqr_ms": st["iqr"], "std_ms": st["std"]},
        "fps": round(1000.0 / st["mean"], 4) if st["mean"] else None,
        "gflops_per_frame": total,
        "gflops_by_stage": {k: v for k, v in gflops.items() if k != "total"},
        "achieved_gflops_s": round(total / (p50 / 1000.0), 2) if p50 else None,
        "stages_ms_per_frame": stages,
        "peak_gpu_mem_mb": log.get("peak_gpu_mem_mb"),
        "rss_after_setup_mb": log.get("rss_after_setup_mb"),
        "samples_ms": [round(v, 3) for v in log["samples_ms"]],
        "push_ms": [round(v, 3) for v in log["push_ms"]],
        "push_frame_index": log["push_index"],
        "warmup_push_ms": [round(v, 3) for v in log["warmup_ms"]],
        "detail": log.get("detail", ""),
    }


def blockwise_speedup(logs: dict[str, dict]) -> float | None:
    """Median over blocks of naive/cached ms (each pair measured back to back: robust to load drift)."""
    pairs = [n / c for n, c in zip(logs["naive"]["samples_ms"], logs["cached"]["samples_ms"], strict=False) if c > 0]
    return round(float(np.median(pairs)), 4) if pairs else None


def build_report(settings: dict[str, Any], logs: dict[str, dict], gflops: dict[str, dict], meta: dict) -> dict:
    """The ``latency.json`` dict; ``speedup`` is the ratio of the two measured p50s."""
    sched = {name: schedule_summary(logs[name], gflops[name]) for name in SCHEDULES}
    naive_p50 = sched["naive"]["ms_per_frame"]["p50"]
    cached_p50 = sched["cached"]["ms_per_frame"]["p50"]
    return {
        "format": "esan-rt-latency", "format_version": 1,
        "created_at": utc_now(),
        "command": meta["command"], "argv": meta["argv"],
        "naive_ms_p50": naive_p50, "cached_ms_p50": cached_p50,
        "speedup": round(naive_p50 / cached_p50, 4) if naive_p50 and cached_p50 else None,
        "speedup_blockwise_median": blockwise_speedup(logs),
        "flops_ratio": round(gflops["naive"]["total"] / gflops["cached"]["total"], 4),
        "settings": settings,
        "schedules": sched,
        "memory": {"peak_rss_mb": peak_rss_mb(),
                   "peak_gpu_mem_mb": {n: sched[n]["peak_gpu_mem_mb"] for n in SCHEDULES}},
        "machine": meta["machine"], "versions": versions(),
        "load_average": meta.get("load_average"), "wall_s": meta.get("wall_s"),
        "notes": meta.get("notes", []),
    }  # fmt: skip


def _fmt(v: Any, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def markdown(report: dict) -> str:
    """A short human-readable table of ``report``."""
    s = report["settings"]
    lines = [
        f"# ESAN-RT latency: {s['preset']} preset, {s['backend']} on {s['device']}, {s['precision']}",
        "",
        f"L = {s['lookahead']}, T = {s['radius']}, cached backward chunk C = {s['backward_chunk']} "
        f"(naive: C = 1), {s['measured_frames']} measured frames per schedule after {s['warmup_frames']} "
        f"warm-up frames, interleaved in blocks of {s['block_frames']}.",
        "",
        "| schedule | p50 ms/frame | p95 | p99 | IQR | std | fps | GFLOPs/frame | GFLOP/s (at p50) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SCHEDULES:
        x = report["schedules"][name]
        m = x["ms_per_frame"]
        lines.append(
            f"| {name} | {_fmt(m['p50'])} | {_fmt(m['p95'])} | {_fmt(m['p99'])} | {_fmt(m['iqr'])} | "
            f"{_fmt(m['std'])} | {_fmt(x['fps'], 3)} | {_fmt(x['gflops_per_frame'], 3)} | "
            f"{_fmt(x['achieved_gflops_s'])} |"
        )
    lines += ["", f"**speedup (naive p50 / cached p50): {_fmt(report['speedup'], 3)}x** "
              f"(median of per-block ratios {_fmt(report['speedup_blockwise_median'], 3)}x; "
              f"FLOP ratio {_fmt(report['flops_ratio'], 3)}x)", "",
              "| stage (ms/frame, mean) | " + " | ".join(SCHEDULES) + " |", "|---|---|---|"]  # fmt: skip
    stage_names = list(dict.fromkeys(k for n in SCHEDULES for k in report["schedules"][n]["stages_ms_per_frame"]))
    for st in stage_names:
        vals = [report["schedules"][n]["stages_ms_per_frame"].get(st) for n in SCHEDULES]
        lines.append(f"| {st} | " + " | ".join(_fmt(v) for v in vals) + " |")
    mach = report["machine"]
    lines += [
        "",
        f"Machine: {mach['cpu']} ({mach['usable_cores']} usable cores), GPU: {mach['gpu'] or 'none'}; "
        f"peak RSS {report['memory']['peak_rss_mb']} MB; load average {report['load_average']}.",
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    lines += [f"- {n}" for n in report.get("notes", [])]
    lines += multistream_markdown(report.get("multistream") or [])
    return "\n".join(lines) + "\n"


def multistream_markdown(entries: list[dict]) -> list[str]:
    """The ``multistream`` table (aggregate fps and per-frame compute latency per stream count)."""
    if not entries:
        return []
    lines = ["", "## Many streams: batched scheduler vs N independent processors", "",
             "| streams | batched fps | independent fps | ratio | ratio (median of rounds) | batched p50 ms | "
             "batched p99 ms | independent p50 ms | independent p99 ms | max abs diff |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        diff = "-" if e["max_abs_diff"] is None else f"{e['max_abs_diff']:.1e}"
        lines.append(f"| {e['streams']} | {_fmt(e['batched_fps'])} | {_fmt(e['independent_fps'])} | "
                     f"{_fmt(e['ratio'], 2)}x | {_fmt(e['ratio_roundwise_median'], 2)}x | "
                     f"{_fmt(e['batched_ms_p50'])} | {_fmt(e['batched_ms_p99'])} | "
                     f"{_fmt(e['independent_ms_p50'])} | {_fmt(e['independent_ms_p99'])} | {diff} |")
    return lines


def save_plots(report: dict, out: Path) -> list[str]:
    """``latency_over_time.png`` and ``stages.png`` (matplotlib Agg); [] without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    fig, ax = plt.subplots(figsize=(8, 4))
    for name in SCHEDULES:
        x = report["schedules"][name]
        label = f"{name} (p50 {_fmt(x['ms_per_frame']['p50'])} ms/frame)"
        ax.plot(x["push_frame_index"], x["push_ms"], marker=".", label=label)
    ax.set_xlabel("frame index (warm-up excluded)")
    ax.set_ylabel("ms per push")
    ax.set_title(f"per-frame latency, speedup {_fmt(report['speedup'], 2)}x")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency_over_time.png", dpi=100)
    plt.close(fig)
    written.append("latency_over_time.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    bottom = np.zeros(len(SCHEDULES))
    stage_names = list(dict.fromkeys(k for n in SCHEDULES for k in report["schedules"][n]["stages_ms_per_frame"]))
    for st in stage_names:
        vals = np.array([report["schedules"][n]["stages_ms_per_frame"].get(st, 0.0) for n in SCHEDULES])
        ax.bar(SCHEDULES, vals, bottom=bottom, label=st)
        bottom += vals
    ax.set_ylabel("ms per frame (mean)")
    ax.set_title("per-stage breakdown")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "stages.png", dpi=100)
    plt.close(fig)
    written.append("stages.png")
    if report.get("multistream"):
        written.append(save_multistream_plot(plt, report["multistream"], out))
    return written


def save_multistream_plot(plt: Any, entries: list[dict], out: Path) -> str:
    """``multistream.png``: aggregate fps (left) and p99 per-frame latency (right) against the stream count."""
    n = [e["streams"] for e in entries]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in ("batched", "independent"):
        left.plot(n, [e[f"{mode}_fps"] for e in entries], marker="o", label=mode)
        right.plot(n, [e[f"{mode}_ms_p99"] for e in entries], marker="o", label=mode)
    for ax, ylabel in ((left, "aggregate frames / s"), (right, "p99 compute latency per frame (ms)")):
        ax.set_xlabel("streams")
        ax.set_xscale("log", base=2)
        ax.set_xticks(n, [str(v) for v in n])
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    left.set_title(f"throughput (ratio at {n[-1]} streams: {_fmt(entries[-1]['ratio'], 2)}x)")
    right.set_title("latency (batched: the frame's round; independent: its push)")
    fig.tight_layout()
    fig.savefig(out / "multistream.png", dpi=100)
    plt.close(fig)
    return "multistream.png"


def write_outputs(report: dict, out: str | os.PathLike, plots: bool = True) -> list[str]:
    """Write ``latency.json``, ``latency.md`` and (optionally) the plots into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "latency.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "latency.md", markdown(report))
    return ["latency.json", "latency.md"] + (save_plots(report, out) if plots else [])
