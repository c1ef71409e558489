"""``esan-rt bench --streams 1,2,4,8``: N streams batched in one scheduler vs N independent processors.

For every N, in one process and on one backend: the **batched** mode is one
``esan.runtime.core.scheduler.MultiStreamScheduler`` with N streams (one batched backend call per stage
per round); the **independent** mode is N ``StreamProcessor`` s (one stream each, batch-1 calls) driven
round-robin. A round gives every stream its next frame; both modes get the same frames (stream ``i``
reads the clip from offset ``i * STREAM_OFFSET``), and their rounds alternate, order swapped every round,
so load changes on a shared machine hit both alike. The pipeline fill (``L+T+C-1`` rounds) and the
warm-up rounds are run but not measured.

Per N (one entry of ``latency.json``'s ``multistream`` list): aggregate frames per second of each mode
(N * rounds / the mode's measured time), ``ratio`` = batched / independent (and the median over rounds of
the two modes' round times, ``ratio_roundwise_median``, robust to load drifting), per-frame compute latency
(batched: the round that computes the frame; independent: the frame's push), per-stage milliseconds
per round, and ``max_abs_diff`` between the two modes' maps (both are exact: it stays <= 1e-4).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from esan.runtime.core.errors import UserError
from esan.runtime.core.processor import StreamProcessor
from esan.runtime.core.scheduler import MultiStreamScheduler
from esan.runtime.core.stream_state import StreamResult
from esan.runtime.io.report import percentiles

STREAM_OFFSET = 7  # frames between the starting points of consecutive streams in the shared clip
MODES = ("batched", "independent")


def parse_streams(text: str | None) -> list[int]:
    """``"1,2,4,8"`` -> ``[1, 2, 4, 8]``; ``UserError`` on anything but positive integers."""
    if not text:
        return []
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(f"--streams takes stream counts >= 1 separated by commas (e.g. 1,2,4,8), got {text!r}")
    return sorted(set(values))


class _Mode:
    """One mode's measured rounds: round times, per-frame latencies, stage sums, maps by (stream, index)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.round_ms: list[float] = []
        self.frame_ms: list[float] = []
        self.stage_ms: dict[str, float] = {}
        self.maps: dict[tuple[int, int], np.ndarray] = {}

    def record(self, results: list[StreamResult], stream: int | None = None) -> None:
        for r in results:
            self.maps[(int(r.stream_id) if stream is None else stream, r.index)] = r.saliency

    def add_stages(self, timings: dict[str, float]) -> None:
        for k, v in timings.items():
            if k != "total":
                self.stage_ms[k] = self.stage_ms.get(k, 0.0) + v


def _batched_round(sched: MultiStreamScheduler, frames: list[np.ndarray], mode: _Mode | None) -> None:
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        sched.push(i, frame)
    results = sched.run()
    ms = (time.perf_counter() - t0) * 1e3
    if mode is None:
        return
    mode.round_ms.append(ms)
    mode.frame_ms += [ms] * len(frames)
    if results:
        mode.add_stages(results[0].timings_ms)  # one round: all its results share the round's timings
    mode.record(results)


def _independent_round(procs: list[StreamProcessor], frames: list[np.ndarray], mode: _Mode | None) -> None:
    total = 0.0
    for i, (proc, frame) in enumerate(zip(procs, frames, strict=True)):
        t0 = time.perf_counter()
        results = proc.push(frame)
        ms = (time.perf_counter() - t0) * 1e3
        total += ms
        if mode is not None:
            mode.frame_ms.append(ms)
            if results:
                mode.add_stages(results[0].timings_ms)
            mode.record(results, stream=i)
    if mode is not None:
        mode.round_ms.append(total)


def measure_streams(backend: Any, n: int, clip: list[np.ndarray], lookahead: int, chunk: int, fill: int,
                    rounds: int, log: Any = print) -> dict[str, Any]:  # fmt: skip
    """One ``multistream`` entry: ``fill`` unmeasured then ``rounds`` measured rounds of both modes."""
    sched = MultiStreamScheduler(backend, lookahead, chunk)
    for i in range(n):
        sched.open_stream(i)
    procs = [StreamProcessor(backend, lookahead, chunk) for _ in range(n)]
    modes = {m: _Mode(m) for m in MODES}
    for r in range(fill + rounds):
        frames = [clip[(r + i * STREAM_OFFSET) % len(clip)] for i in range(n)]
        order = MODES if r % 2 == 0 else MODES[::-1]
        for name in order:
            mode = modes[name] if r >= fill else None
            if name == "batched":
                _batched_round(sched, frames, mode)
            else:
                _independent_round(procs, frames, mode)
    for i in range(n):
        sched.close(i)
    b, ind = modes["batched"], modes["independent"]
    shared = sorted(set(b.maps) & set(ind.maps))
    diff = max((float(np.abs(b.maps[k] - ind.maps[k]).max()) for k in shared), default=None)
    fps = {m: n * rounds / (sum(modes[m].round_ms) / 1e3) for m in MODES}
    pb, pi = percentiles(b.frame_ms), percentiles(ind.frame_ms)
    entry = {
        "streams": n,
        "batched_fps": round(fps["batched"], 3),
        "independent_fps": round(fps["independent"], 3),
        "ratio": round(fps["batched"] / fps["independent"], 4),
        # each round of one mode ran next to the same round of the other: robust to load drifting between rounds
        "ratio_roundwise_median": round(float(np.median(np.divide(ind.round_ms, b.round_ms))), 4),
        "batched_ms_p50": pb["p50"], "batched_ms_p99": pb["p99"],
        "independent_ms_p50": pi["p50"], "independent_ms_p99": pi["p99"],
        "rounds": rounds, "warmup_rounds": fill,
        "batched_stages_ms_per_round": {k: round(v / rounds, 3) for k, v in b.stage_ms.items()},
        "independent_stages_ms_per_round": {k: round(v / rounds, 3) for k, v in ind.stage_ms.items()},
        "batched_round_ms": [round(v, 3) for v in b.round_ms],
        "independent_round_ms": [round(v, 3) for v in ind.round_ms],
        "maps_compared": len(shared),
        "max_abs_diff": diff,
    }  # fmt: skip
    log(f"bench: {n} stream(s): batched {entry['batched_fps']:.1f} fps (p50 {pb['p50']} ms, p99 {pb['p99']} ms), "
        f"independent {entry['independent_fps']:.1f} fps, ratio {entry['ratio']:.2f}x (median of rounds "
        f"{entry['ratio_roundwise_median']:.2f}x), max abs diff {diff}")
    return entry


def measure_multistream(backend: Any, streams: list[int], clip: list[np.ndarray], lookahead: int, chunk: int,
                        fill: int, rounds: int, log: Any = print) -> list[dict[str, Any]]:  # fmt: skip
    """The ``multistream`` list: ``measure_streams`` for every N of ``streams``."""
    return [measure_streams(backend, n, clip, lookahead, chunk, fill, rounds, log) for n in streams]


def open_bundle_backend(args: Any, bundle: Any) -> Any:
    """The ``ort`` / ``trt`` backend of ``args`` on an exported bundle, through the runtime's one API."""
    from esan.runtime.session import prepare

    return prepare(bundle=bundle, backend=args.backend, device=args.device, lookahead=args.lookahead,
                   threads=args.threads, log=lambda m: print(f"bench: {m}", flush=True)).open_backend()  # fmt: skip


def open_backend_for(args: Any, model: Any, bundle: Any) -> Any:
    """A fresh backend of ``args.backend`` for ``model`` (torch) or the exported ``bundle`` (ort / trt)."""
    if args.backend == "torch":
        import copy

        from esan.runtime.backends.torch_backend import TorchBackend

        return TorchBackend(model=copy.deepcopy(model), device=args.device, precision=args.precision)
    return open_bundle_backend(args, bundle)


def run_for_bench(args: Any, model: Any, bundle: Any, frames: list[np.ndarray], fill: int,
                  streams: list[int]) -> list[dict[str, Any]]:  # fmt: skip
    """``esan-rt bench --streams``: ``measure_multistream`` on a fresh backend, ``len(frames) - fill`` rounds."""
    backend = open_backend_for(args, model, bundle)
    try:
        return measure_multistream(backend, streams, frames, args.lookahead, args.backward_chunk, fill,
                                   len(frames) - fill, log=lambda m: print(m, flush=True))  # fmt: skip
    finally:
        backend.close()
