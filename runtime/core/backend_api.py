"""One interface for every inference backend (torch, ONNX Runtime, native TensorRT).

The idea is a Polygraphy-like *runner*: the streaming core (``esan.runtime.core.scheduler``) only calls
the five engine stages of docs/design.md section 3 and never looks inside the arrays it gets back.

* ``encode(frame, valid)`` — encoder: ``uint8 [1,H,W,3]`` letterboxed RGB and ``uint8 [1,H,W,1]``
  valid mask -> cache entry ``dict[name, Array]`` (names of docs/contracts.md);
* ``align(window, ref)`` — aligner: the ``2T+1`` entries of the window (order t-T..t+T, the backend
  stacks them) and the entry of ``t`` -> ``(xf, xb)``;
* ``step(direction, x, h, c)`` — ``cell_fwd`` / ``cell_bwd``: one ConvLSTM step -> ``(h, c)``;
* ``zero_state()`` — fresh zero ``(h, c)``;
* ``backward_window(xs)`` — ``bwd_window`` (``xs[i]`` = projection of frame t+i) -> ``hb``, or
  ``None`` when the backend has no unrolled graph for ``len(xs)`` frames;
* ``decode(hf, hb)`` — decoder -> ``float32 [H/2, W/2]`` numpy map;
* ``close()``;
* ``encode_batch``, ``align_batch``, ``step_batch``, ``backward_window_batch``, ``decode_batch`` -- the same
  stages for B streams at once (lists in, lists out; ``esan.runtime.core.scheduler``); the defaults loop
  over the single calls, backends with batched engines override them.

``Array`` is backend-native and opaque (numpy for ONNX Runtime, torch tensors for torch, device
buffers for TensorRT); only ``decode`` returns numpy. Backends are used from one thread.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Array = Any
Entry = dict[str, Array]
State = tuple[Array, Array]

DIRECTIONS = ("fwd", "bwd")
ENCODER_OUTPUTS = ("f1", "f2", "f3", "nbr_p1", "nbr_p2", "nbr_p3", "ref_p1", "ref_p2", "ref_p3", "ref_pc")
# aligner input name -> cache entry name (docs/contracts.md)
WINDOW_INPUTS = {
    "win_f1": "f1",
    "win_f2": "f2",
    "win_f3": "f3",
    "win_p1": "nbr_p1",
    "win_p2": "nbr_p2",
    "win_p3": "nbr_p3",
}
REFERENCE_INPUTS = ("ref_p1", "ref_p2", "ref_p3", "ref_pc")


@dataclass(frozen=True)
class BackendConfig:
    """What the streaming core needs to know about the network behind a backend."""

    input_size: tuple[int, int]
    output_size: tuple[int, int]
    radius: int
    hidden: int
    state_size: tuple[int, int]  # (h1, w1): spatial size of the ConvLSTM state
    lookahead: int | None = None  # L the unrolled ``bwd_window`` was built for (None: any / none)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_bundle(cls, bundle: Any, **extra: Any) -> BackendConfig:
        """The config of an exported bundle (``esan.runtime.core.bundle.Bundle``), shapes from its manifest."""
        h = next(t for t in bundle.graphs["cell_fwd"].inputs if t.name == "h")
        norm = bundle.normalization
        defaults = cls.__dataclass_fields__
        return cls(
            input_size=bundle.input_size,
            output_size=bundle.output_size,
            radius=bundle.radius,
            hidden=int(h.shape[1]),
            state_size=(int(h.shape[2]), int(h.shape[3])),
            lookahead=bundle.lookahead,
            mean=tuple(norm.get("mean") or bundle.config.get("mean") or defaults["mean"].default),
            std=tuple(norm.get("std") or bundle.config.get("std") or defaults["std"].default),
            extra={"bundle": str(bundle.root), "dcn": bundle.dcn, **extra},
        )

    @property
    def window(self) -> int:
        return 2 * self.radius + 1

    @property
    def gate_channels(self) -> int:
        return 4 * self.hidden


class Backend(abc.ABC):
    """Abstract runner of the ESAN engines; see the module docstring for the contract."""

    name: str = "base"

    def __init__(self, config: BackendConfig, *, device: str = "cpu", precision: str = "fp32") -> None:
        self._config = config
        self._device = device
        self._precision = precision
        self._closed = False

    # -- description -----------------------------------------------------------------------------
    @property
    def config(self) -> BackendConfig:
        return self._config

    @property
    def device(self) -> str:
        return self._device

    @property
    def precision(self) -> str:
        return self._precision

    def describe(self) -> str:
        c = self._config
        h, w = c.input_size
        return f"{self.name} on {self._device}, {self._precision}, input {h}x{w}, T={c.radius}, hidden={c.hidden}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"

    # -- engines ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, frame: np.ndarray, valid: np.ndarray) -> Entry:
        """Encoder: ``uint8 [1,H,W,3]`` letterboxed frame and ``uint8 [1,H,W,1]`` mask -> cache entry."""

    @abc.abstractmethod
    def align(self, window: Sequence[Entry], ref: Entry) -> tuple[Array, Array]:
        """Aligner over ``2T+1`` entries (window order t-T..t+T) and the entry of ``t``: ``(xf, xb)``."""

    @abc.abstractmethod
    def step(self, direction: str, x: Array, h: Array, c: Array) -> State:
        """One ConvLSTM step of the ``"fwd"`` or ``"bwd"`` cell; returns the new ``(h, c)``."""

    @abc.abstractmethod
    def zero_state(self) -> State:
        """A fresh zero ``(h, c)``."""

    def backward_window(self, xs: Sequence[Array]) -> Array | None:
        """Unrolled backward cell over ``xs[-1] .. xs[0]`` from zero state; ``None`` if unavailable."""
        return None

    @abc.abstractmethod
    def decode(self, hf: Array, hb: Array) -> np.ndarray:
        """Decoder: saliency map ``float32 [H/2, W/2]`` (numpy, on the host) in (0, 1)."""

    # -- batched stages (one item per stream; the defaults loop over the single-item calls) --------
    def encode_batch(self, frames: np.ndarray, valid: np.ndarray) -> list[Entry]:
        """Encoder over ``uint8 [B,H,W,3]`` frames and ``[B,H,W,1]`` masks -> one entry per frame."""
        return [self.encode(frames[i:i + 1], valid[i:i + 1]) for i in range(len(frames))]

    def align_batch(self, windows: Sequence[Sequence[Entry]], refs: Sequence[Entry]) -> list[tuple[Array, Array]]:
        """Aligner for B streams: ``windows[b]`` (``2T+1`` entries) and ``refs[b]`` -> ``(xf, xb)`` per stream."""
        return [self.align(w, r) for w, r in zip(windows, refs, strict=True)]

    def step_batch(self, direction: str, xs: Sequence[Array], hs: Sequence[Array], cs: Sequence[Array]) -> list[State]:
        """One ConvLSTM step for B streams -> ``(h, c)`` per stream."""
        return [self.step(direction, x, h, c) for x, h, c in zip(xs, hs, cs, strict=True)]

    def backward_window_batch(self, xss: Sequence[Sequence[Array]]) -> list[Array] | None:
        """``backward_window`` for B streams (equal window lengths); ``None`` if unavailable."""
        out = [self.backward_window(xs) for xs in xss]
        return None if any(h is None for h in out) else out

    def decode_batch(self, hfs: Sequence[Array], hbs: Sequence[Array]) -> list[np.ndarray]:
        """Decoder for B streams -> one ``float32 [H/2, W/2]`` map per stream."""
        return [self.decode(hf, hb) for hf, hb in zip(hfs, hbs, strict=True)]

    # -- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        """Release sessions / engines / device memory; the backend is unusable afterwards."""
        self._closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
