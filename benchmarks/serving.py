"""``esan-rt bench --server HOST:PORT --streams 1,2,4,8``: many streams through Triton beside the same in process.

For each stream count N, N client threads each replay the same real frames (the generated demo clip,
decoded, or ``--source``) as one Triton sequence, pinned round robin to the ``--server``s; then the same
N streams run in process through ``MultiStreamScheduler`` on the bundle the server serves (``--bundle``,
or ``--checkpoint`` exported). Reported per N: aggregate frames per second (frames pushed / wall time,
flush included), per-frame latency percentiles (a request's round trip; in process: the round that
computed it) and, through the server, the overhead per frame: round trip minus the model's own time for
the round (``STAGE_MS`` total), i.e. gRPC, the Python-backend stub and, with several streams, waiting for
the round of the other streams in progress; Triton's own mean queue and compute time per request
(its statistics API) split that further.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from esan.runtime.core.errors import UserError
from esan.runtime.core.fsutil import atomic_write_text
from esan.runtime.io.report import percentiles
from esan.runtime.io.signals import exit_code


def load_frames(args: argparse.Namespace, n: int, out: Path) -> list[np.ndarray]:
    """``n`` RGB frames of ``--source`` (looped) or of the generated demo clip."""
    from esan.runtime.io.sources import open_source

    path = args.source
    if path is None:
        from esan.runtime.cli.demo import make_sample_clip

        out.mkdir(parents=True, exist_ok=True)
        path = str(make_sample_clip(out / "sample.mp4", max(n, 2)))
    frames: list[np.ndarray] = []
    with open_source(None, path, queue_size=4) as src:
        for frame in src:
            frames.append(frame.image)
            if len(frames) >= n:
                break
    if not frames:
        raise UserError(f"no frames could be read from {path}")
    return [frames[i % len(frames)] for i in range(n)]


def triton_stats(servers: list[str]) -> dict[str, float]:
    """Triton's cumulative per-request counters of model ``esan``, summed over the servers (ns and counts)."""
    from esan.runtime.serving.client import connect

    total = {"count": 0.0, "queue_ns": 0.0, "compute_ns": 0.0}
    for address in servers:
        client, _ = connect(address)
        try:
            stats = client.get_inference_statistics("esan", as_json=True)["model_stats"][0]["inference_stats"]
        finally:
            client.close()
        total["count"] += float(stats.get("success", {}).get("count", 0))
        total["queue_ns"] += float(stats.get("queue", {}).get("ns", 0))
        total["compute_ns"] += float(stats.get("compute_infer", {}).get("ns", 0))
    return total


def served(servers: list[str], n_streams: int, frames: list[np.ndarray]) -> dict[str, Any]:
    from esan.runtime.serving.client import RemoteStream, server_for

    streams = [RemoteStream(server_for(servers, i)) for i in range(n_streams)]
    rtt: list[list[float]] = [[] for _ in streams]
    overhead: list[list[float]] = [[] for _ in streams]
    maps = [0] * n_streams
    errors: list[BaseException] = []
    stop = threading.Event()  # a stop signal: every stream ends after its current frame

    def work(i: int) -> None:
        s = streams[i]
        try:
            for f in frames:
                if stop.is_set():
                    return
                maps[i] += len(s.push(f))
                rtt[i].append(s.last_round_trip_ms)
                overhead[i].append(s.last_round_trip_ms - s.last_server_ms.get("total", 0.0))
            maps[i] += len(s.finish())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n_streams)]
    before = triton_stats(servers)
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: let each stream end its frame, then close them
        stop.set()
        for t in threads:
            t.join()
        raise
    finally:
        wall = time.perf_counter() - t0
        for s in streams:
            s.close()
    if errors:
        raise errors[0]
    assert sum(maps) == n_streams * len(frames), maps
    after = triton_stats(servers)
    count = max(after["count"] - before["count"], 1.0)
    return {"fps": round(n_streams * len(frames) / wall, 2), "wall_s": round(wall, 3),
            "latency_ms": percentiles([v for r in rtt for v in r]),
            "overhead_ms": percentiles([v for r in overhead for v in r]),
            "triton_queue_ms_mean": round((after["queue_ns"] - before["queue_ns"]) / count / 1e6, 3),
            "triton_compute_ms_mean": round((after["compute_ns"] - before["compute_ns"]) / count / 1e6, 3)}


def in_process(backend: Any, lookahead: int, chunk: int, n_streams: int, frames: list[np.ndarray]) -> dict[str, Any]:
    from esan.runtime.core.scheduler import MultiStreamScheduler

    sched = MultiStreamScheduler(backend, lookahead, chunk)
    ids = [sched.open_stream() for _ in range(n_streams)]
    lat: list[float] = []
    maps = 0
    t0 = time.perf_counter()
    for f in frames:
        r0 = time.perf_counter()
        for sid in ids:
            sched.push(sid, f)
        maps += len(sched.run())
        lat += [(time.perf_counter() - r0) * 1e3] * n_streams
    for sid in ids:
        sched.finish(sid)
    while sched.has_work():
        maps += len(sched.run())
    wall = time.perf_counter() - t0
    assert maps == n_streams * len(frames), maps
    return {"fps": round(n_streams * len(frames) / wall, 2), "wall_s": round(wall, 3), "latency_ms": percentiles(lat)}


def _local_backend(args: argparse.Namespace, params: dict[str, str]) -> Any:
    """The served model's engines in this process (ONNX Runtime CPU), through the runtime's one API."""
    from esan.runtime.core.bundle import sha256_file
    from esan.runtime.session import prepare

    if args.bundle is None and not args.checkpoint:
        return None
    session = prepare(args.checkpoint, bundle=args.bundle, backend="ort", device="cpu",
                      lookahead=int(params["lookahead"]), precision=params.get("precision") or None,
                      threads=args.threads, log=lambda m: print(f"bench: {m}", flush=True))  # fmt: skip
    bundle = session.bundle  # exported once for a checkpoint
    if sha256_file(bundle.root / "manifest.json") != params.get("bundle_sha256"):
        print(f"bench: note: {bundle.root} is not the bundle the server runs; in-process figures are for "
              f"{bundle.root}", flush=True)
    return session.open_backend()


def run_served(args: argparse.Namespace) -> int:
    """Handler of ``esan-rt bench --server``."""
    from esan.bench.multistream import parse_streams
    from esan.runtime.serving.client import RemoteStream, check_address

    servers = [check_address(s) for s in args.server]
    counts = parse_streams(args.streams or "1,2,4,8")
    if args.frames < 1:
        raise UserError("need --frames >= 1")
    probe = RemoteStream(servers[0])
    params = dict(probe.model.params)
    probe.close()
    out = Path(args.out)
    frames = load_frames(args, args.frames, out)
    backend = _local_backend(args, params)
    lookahead, chunk = int(params["lookahead"]), int(params["backward_chunk"])
    print(f"bench: {len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]} per stream, servers "
          f"{', '.join(servers)} ({params.get('backend')}/{params.get('device')}, L={lookahead})", flush=True)
    rows: list[dict[str, Any]] = []
    stopped: str | None = None
    try:
        for n in counts:
            row: dict[str, Any] = {"streams": n, "server": served(servers, n, frames)}
            if backend is not None:
                row["in_process"] = in_process(backend, lookahead, chunk, n, frames)
            rows.append(row)
            print(_line(row), flush=True)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the rows measured so far still go into the report
        stopped, code = ("Ctrl-C", 130) if exit_code(exc) == 130 else ("SIGTERM", exit_code(exc))
        print(f"bench: stopped ({stopped}) after {len(rows)} of {len(counts)} stream counts", flush=True)
    finally:
        if backend is not None:
            backend.close()
    if backend is None:
        print("bench: pass --bundle DIR (the bundle the server runs) for in-process figures beside", flush=True)
    report = {"servers": servers, "model": params, "frames_per_stream": len(frames), "threads": args.threads,
              "source": args.source or "generated demo clip", "rows": rows, "stopped": stopped}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "serving.json", json.dumps(report, indent=2) + "\n")
    print(f"bench: wrote {out / 'serving.json'}", flush=True)
    return code if stopped else 0


def _line(row: dict[str, Any]) -> str:
    s = row["server"]
    text = (f"bench: {row['streams']} streams: server {s['fps']:.1f} fps, latency p50 {s['latency_ms']['p50']:.1f} / "
            f"p95 {s['latency_ms']['p95']:.1f} ms, overhead p50 {s['overhead_ms']['p50']:.2f} ms "
            f"(Triton queue mean {s['triton_queue_ms_mean']:.2f} ms)")
    if "in_process" in row:
        p = row["in_process"]
        text += (f" | in process {p['fps']:.1f} fps, latency p50 {p['latency_ms']['p50']:.1f} ms | "
                 f"ratio {s['fps'] / p['fps']:.2f}x")
    return text
