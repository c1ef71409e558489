"""A 720p file streamed with and without outputs, alternately, in one run: the output stage's cost as a ratio.

``python benchmarks/outputs_speed.py --out r.json [--frames 300] [--pairs 3] [--hw 720x1280] [-- STREAM OPTIONS]``

Each pair runs ``esan-rt stream --source CLIP --report R`` ("bare") and the same with ``--save-video V
--save-maps DIR --maps-format png`` ("outputs") as separate processes (the first of a pair alternates), on
the demo model unless stream options after ``--`` say otherwise. Figures: each run's fps from its report,
the output stage's p50, and per pair the ratio outputs fps / bare fps; the JSON keeps them all with the
commands, the machine and the versions.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from esan.bench import report as bench_report
from esan.runtime.cli.demo import make_sample_clip
from esan.runtime.core.fsutil import atomic_write_text


def _run(cmd: list[str], report: Path) -> dict:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    r = json.loads(report.read_text())
    agg = r.get("aggregate", r)  # one stream: its section is the report's top level
    out = (agg.get("latency_ms") or {}).get("output") or {}
    return {"fps": agg["fps"], "output_p50_ms": out.get("p50"), "wall_s": round(time.perf_counter() - t0, 2)}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    p = argparse.ArgumentParser(prog="outputs_speed.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="result JSON")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--hw", default="720x1280", help="clip size HxW (default 720x1280)")
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    h, w = (int(v) for v in args.hw.split("x"))
    load_start = bench_report.load_average()
    with tempfile.TemporaryDirectory(prefix="esan-outputs-") as tmp:
        work = Path(tmp)
        clip = make_sample_clip(work / "clip.mp4", args.frames, (h, w))
        base = [sys.executable, "-m", "esan.runtime.cli", "stream", "--source", str(clip), *extra]
        variants = {
            "bare": lambda i: [*base, "--report", str(work / f"bare{i}.json")],
            "outputs": lambda i: [*base, "--report", str(work / f"out{i}.json"), "--save-video",
                                  str(work / f"v{i}.mp4"), "--save-maps", str(work / f"maps{i}"),
                                  "--maps-format", "png"],  # fmt: skip
        }
        pairs = []
        for i in range(args.pairs):
            order = ("bare", "outputs") if i % 2 == 0 else ("outputs", "bare")
            pair = {}
            for name in order:
                cmd = variants[name](i)
                pair[name] = _run(cmd, Path(cmd[cmd.index("--report") + 1]))
            pair["ratio"] = round(pair["outputs"]["fps"] / pair["bare"]["fps"], 4)
            print(f"pair {i + 1}/{args.pairs}: bare {pair['bare']['fps']:.1f} fps, "
                  f"outputs {pair['outputs']['fps']:.1f} fps, ratio {pair['ratio']:.3f}, "
                  f"output stage p50 {pair['outputs']['output_p50_ms']} ms", flush=True)
            pairs.append(pair)
        commands = {n: shlex.join(v("N")) for n, v in variants.items()}
    ratios = [pr["ratio"] for pr in pairs]
    result = {
        "command": shlex.join(["python", "benchmarks/outputs_speed.py", *argv]), "stream_commands": commands,
        "clip": {"frames": args.frames, "hw": [h, w]}, "pairs": pairs,
        "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "machine": bench_report.machine_info(None), "versions": bench_report.versions(),
        "load_average": {"start": load_start, "end": bench_report.load_average()},
    }  # fmt: skip
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(f"ratio outputs/bare: median {result['ratio_median']:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
