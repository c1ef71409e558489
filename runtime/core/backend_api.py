"""One interface for every inference backend (torch, ONNX Runtime, native TensorRT).

The idea is a Polygraphy-like *runner*: the streaming core (``esan.runtime.core.scheduler``) only calls
the five engine stages of the network's engine split (docs/contracts.md), each for B streams at once
(lists in, lists out, one item per stream), and never looks inside the arrays it gets back:

* ``encode_batch(frames, valid)`` -- encoder: ``uint8 [B,H,W,3]`` letterboxed RGB and ``uint8 [B,H,W,1]``
  valid masks -> one cache entry ``dict[name, Array]`` per frame (names of docs/contracts.md);
* ``align_batch(windows, refs)`` -- aligner: per stream the ``2T+1`` entries of its window (order
  t-T..t+T; the backend stacks them) and the entry of ``t`` -> ``(xf, xb)`` per stream;
* ``step_batch(direction, xs, hs, cs)`` -- ``cell_fwd`` / ``cell_bwd``: one ConvLSTM step per stream -> ``(h, c)``;
* ``zero_state()`` -- a fresh zero ``(h, c)`` for one stream;
* ``backward_window_batch(xss)`` -- ``bwd_window`` (``xss[b][i]`` = projection of frame t+i of stream b;
  windows of one length) -> ``hb`` per stream, or ``None`` when the backend has no unrolled graph for
  that length (the scheduler then steps the cell);
* ``decode_batch(hfs, hbs)`` -- decoder -> one ``float32 [H/2, W/2]`` numpy map per stream;
* ``close()``.

One stream is the case B = 1. ``Array`` is backend-native and opaque (numpy for ONNX Runtime, torch tensors
for torch, device buffers for TensorRT); one item holds one stream's rows. Only ``decode_batch`` returns
numpy. Backends are used from one thread.
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

    # -- engines: B streams per call (one list item per stream) -------------------------------------
    @abc.abstractmethod
    def encode_batch(self, frames: np.ndarray, valid: np.ndarray) -> list[Entry]:
        """Encoder over ``uint8 [B,H,W,3]`` frames and ``[B,H,W,1]`` masks -> one entry per frame."""

    @abc.abstractmethod
    def align_batch(self, windows: Sequence[Sequence[Entry]], refs: Sequence[Entry]) -> list[tuple[Array, Array]]:
        """Aligner for B streams: ``windows[b]`` (``2T+1`` entries) and ``refs[b]`` -> ``(xf, xb)`` per stream."""

    @abc.abstractmethod
    def step_batch(self, direction: str, xs: Sequence[Array], hs: Sequence[Array], cs: Sequence[Array]) -> list[State]:
        """One step of the ``"fwd"`` or ``"bwd"`` ConvLSTM cell for B streams -> ``(h, c)`` per stream."""

    @abc.abstractmethod
    def zero_state(self) -> State:
        """A fresh zero ``(h, c)`` for one stream."""

    def backward_window_batch(self, xss: Sequence[Sequence[Array]]) -> list[Array] | None:
        """Unrolled backward cell over ``xss[b][-1] .. xss[b][0]`` from zero state, per stream (windows of one
        length); ``None`` when the backend has no graph for that length."""
        return None

    @abc.abstractmethod
    def decode_batch(self, hfs: Sequence[Array], hbs: Sequence[Array]) -> list[np.ndarray]:
        """Decoder for B streams -> one saliency map ``float32 [H/2, W/2]`` (numpy, host) in (0, 1) per stream."""

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
