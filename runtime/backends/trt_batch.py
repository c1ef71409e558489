"""The stages of the TensorRT backend: gather the streams' device arrays, run once, scatter back.

Mixed into ``esan.runtime.backends.trt_backend.TrtBackend`` (which provides ``pool``, ``cuda``,
``engines``, ``bundle``, ``max_batch`` and ``_run(graph, inputs, batch)``). Per call of up to ``max_batch``
streams: every input is gathered into one pool buffer by device-to-device copies (stream-major, the
layout of docs/contracts.md), the engine runs with that batch, and each output is copied into one pool
buffer per stream, so a stream's cached arrays never pin another stream's memory and every binding
keeps the pool's alignment. Everything is enqueued on the backend's one CUDA stream. Engines with a
static batch 1 (format 1 bundles) have ``max_batch`` 1: the same code, one stream per run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from esan.runtime.core.backend_api import REFERENCE_INPUTS, WINDOW_INPUTS, Array, Entry, State, check_direction


def batched_shape(shape: tuple[int, ...], batch: int) -> tuple[int, ...]:
    """One stream's shape scaled to ``batch`` streams along dimension 0 (stream-major rows)."""
    return (shape[0] * batch, *shape[1:])


class TrtBatchMixin:
    """``encode_batch`` .. ``decode_batch`` and ``zero_state`` for ``TrtBackend`` (module docstring)."""

    pool: Any
    cuda: Any
    bundle: Any
    engines: dict[str, Any]
    max_batch: int = 1

    def _groups(self, n: int) -> Iterator[range]:
        for lo in range(0, n, self.max_batch):
            yield range(lo, min(lo + self.max_batch, n))

    def _gather(self, parts: Sequence[Any]) -> Any:
        out = self.pool.get((sum(p.shape[0] for p in parts), *parts[0].shape[1:]), parts[0].dtype)
        offset = 0
        for p in parts:
            self.cuda.copy(out.ptr + offset, p.ptr, p.nbytes, "DeviceToDevice")
            offset += p.nbytes
        return out

    def _scatter(self, arr: Any, n: int) -> list[Any]:
        item = (arr.shape[0] // n, *arr.shape[1:])
        outs = [self.pool.get(item, arr.dtype) for _ in range(n)]
        for i, dst in enumerate(outs):
            self.cuda.copy(dst.ptr, arr.ptr + i * dst.nbytes, dst.nbytes, "DeviceToDevice")
        return outs

    def _run_split(self, graph: str, feeds: dict[str, Any], n: int) -> dict[str, list[Any]]:
        outs = self._run(graph, feeds, batch=n)  # type: ignore[attr-defined]
        return {name: self._scatter(arr, n) for name, arr in outs.items()}

    def encode_batch(self, frames: np.ndarray, valid: np.ndarray) -> list[Entry]:
        entries: list[Entry] = []
        for g in self._groups(len(frames)):
            host = (np.ascontiguousarray(frames[g.start:g.stop]), np.ascontiguousarray(valid[g.start:g.stop]))
            self._host_batch = host  # alive until the copies ran (they are enqueued on the stream)
            feeds = {}
            for name, h in zip(("frame", "valid"), host, strict=True):
                feeds[name] = self.pool.get(h.shape, h.dtype)
                self.cuda.copy(feeds[name].ptr, h.ctypes.data, h.nbytes, "HostToDevice")
            split = self._run_split("encoder", feeds, len(g))
            entries += [{k: v[i] for k, v in split.items()} for i in range(len(g))]
        return entries

    def align_batch(self, windows: Sequence[Sequence[Entry]], refs: Sequence[Entry]) -> list[tuple[Array, Array]]:
        out: list[tuple[Array, Array]] = []
        for g in self._groups(len(windows)):
            feeds = {name: self._gather([e[key] for i in g for e in windows[i]]) for name, key in WINDOW_INPUTS.items()}
            feeds.update({name: self._gather([refs[i][name] for i in g]) for name in REFERENCE_INPUTS})
            split = self._run_split("aligner", feeds, len(g))
            out += list(zip(split["xf"], split["xb"], strict=True))
        return out

    def step_batch(self, direction: str, xs: Sequence[Array], hs: Sequence[Array], cs: Sequence[Array]) -> list[State]:
        check_direction(direction)
        out: list[State] = []
        for g in self._groups(len(xs)):
            feeds = {"x": self._gather([xs[i] for i in g]), "h": self._gather([hs[i] for i in g]),
                     "c": self._gather([cs[i] for i in g])}  # fmt: skip
            split = self._run_split(f"cell_{direction}", feeds, len(g))
            out += list(zip(split["h_out"], split["c_out"], strict=True))
        return out

    def zero_state(self) -> State:
        eng = self.engines["cell_fwd"]
        h, c = self.pool.get(*eng.inputs["h"]), self.pool.get(*eng.inputs["c"])
        self.cuda.zero(h.ptr, h.nbytes)
        self.cuda.zero(c.ptr, c.nbytes)
        return h, c

    def backward_window_batch(self, xss: Sequence[Sequence[Array]]) -> list[Array] | None:
        if any(len(xs) != self.bundle.lookahead + 1 for xs in xss):
            return None
        out: list[Array] = []
        for g in self._groups(len(xss)):
            out += self._run_split("bwd_window", {"xs": self._gather([x for i in g for x in xss[i]])}, len(g))["hb"]
        return out

    def decode_batch(self, hfs: Sequence[Array], hbs: Sequence[Array]) -> list[np.ndarray]:
        maps: list[np.ndarray] = []
        for g in self._groups(len(hfs)):
            feeds = {"hf": self._gather([hfs[i] for i in g]), "hb": self._gather([hbs[i] for i in g])}
            dev = self._run("decoder", feeds, batch=len(g))["map"]  # type: ignore[attr-defined]
            host = np.empty(dev.shape, dev.dtype)
            self.cuda.copy(host.ctypes.data, dev.ptr, host.nbytes, "DeviceToHost")
            self.cuda.sync()
            maps += [np.ascontiguousarray(m[0], dtype=np.float32) for m in host]
        return maps
