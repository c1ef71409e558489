"""One ``nn.Module`` per bundle graph (docs/contracts.md), each a thin wrapper over ``ESAN``'s blocks.

The math lives in ``esan.train.model.ESAN`` (``encode``, ``align``, ``cell_step``, ``decode``); the
wrappers only adapt the contract's tensor layout and, for fp16 bundles, place the casts:

* encoder: uint8 NHWC frame -> ImageNet normalisation in fp32 (exactly ``esan.runtime.core.letterbox.normalize``,
  padding zeroed *after* normalisation by the ``valid`` mask) -> backbone in the compute dtype;
* cells: the projected input ``x`` and ``h`` travel in the compute dtype, the recurrent conv on ``h``
  runs in it too, but the gate sum, the nonlinearities and the cell state ``c`` stay fp32;
* decoder: runs in fp32 (one tiny conv, upsampling, sigmoid); the map is always float32.

Batch: every graph takes B streams at once (dimension 0, exported as the dynamic ``batch`` axis). The
aligner's window inputs and ``bwd_window``'s ``xs`` hold several rows per stream, stream-major and flat:
``win_*`` is ``[B*K, C, h, w]`` (rows ``b*K .. b*K+K-1`` = stream ``b``'s window, order t-T..t+T) and ``xs``
is ``[B*(L+1), G, h1, w1]``; with B = 1 both are exactly the batch-1 layout of format 1 bundles, and the
backends build them by concatenating cache entries, no transposes. ``GraphDef.item_rows`` says how many
rows per stream each input has.

``build_graphs`` returns the modules with example inputs; ``sample_inputs`` makes realistic
inputs for every graph by chaining the fp32 PyTorch graphs (used by export checks and ``compare``):
``batch`` independent items (different frames and padding each), concatenated stream-major.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from esan.train.model import ESAN, FEATURE_NAMES, REFERENCE_NAMES, normalize_uint8_frames

GRAPH_NAMES = ("encoder", "aligner", "cell_fwd", "cell_bwd", "bwd_window", "decoder")
WINDOW_INPUTS = ("win_f1", "win_f2", "win_f3", "win_p1", "win_p2", "win_p3")
_WINDOW_KEYS = ("f1", "f2", "f3", "nbr_p1", "nbr_p2", "nbr_p3")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
BATCH_DIM = "batch"  # the manifest's symbolic batch dimension (esan.runtime.core.bundle)
MAX_EXPORT_BATCH = 4096  # upper bound the exporter may assume for the batch axis (none is enforced at run time)
FP32_PARTS_FP16 = (
    "encoder: uint8 -> ImageNet normalisation and valid-mask padding",
    "cell_fwd, cell_bwd, bwd_window: gate sum, sigmoid/tanh and the cell state c (input/output c is float32)",
    "decoder: hf + hb, final conv, x4 upsampling, sigmoid (map is float32)",
)


class EncoderGraph(nn.Module):
    """``(frame uint8 [1,H,W,3], valid uint8 [1,H,W,1]) -> FEATURE_NAMES``."""

    def __init__(self, model: ESAN, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype
        self.register_buffer("mean", torch.tensor(model.cfg.mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(model.cfg.std, dtype=torch.float32), persistent=False)

    def forward(self, frame: Tensor, valid: Tensor) -> tuple[Tensor, ...]:
        enc = self.model.encode(normalize_uint8_frames(frame, valid, self.mean, self.std).to(self.dtype))
        return tuple(enc[n] for n in FEATURE_NAMES)


class AlignerGraph(nn.Module):
    """Window tensors ``[B*K,C,h,w]`` (stream-major, order t-T..t+T) and reference projections -> ``(xf, xb)``."""

    def __init__(self, model: ESAN) -> None:
        super().__init__()
        self.model, self.k = model, model.cfg.window

    def forward(
        self, win_f1: Tensor, win_f2: Tensor, win_f3: Tensor, win_p1: Tensor, win_p2: Tensor, win_p3: Tensor,
        ref_p1: Tensor, ref_p2: Tensor, ref_p3: Tensor, ref_pc: Tensor,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        stacked = (win_f1, win_f2, win_f3, win_p1, win_p2, win_p3)
        win = {k: t.unflatten(0, (-1, self.k)) for k, t in zip(_WINDOW_KEYS, stacked, strict=True)}
        ref = dict(zip(REFERENCE_NAMES, (ref_p1, ref_p2, ref_p3, ref_pc), strict=True))
        return self.model.align(win, ref)


class CellGraph(nn.Module):
    """One ConvLSTM step: ``(x, h, c) -> (h_out, c_out)``; ``c`` is always float32."""

    def __init__(self, model: ESAN, direction: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.direction, self.dtype = model, direction, dtype

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        h, c = self.model.cell_step(self.direction, x.to(torch.float32), h, c)
        return h.to(self.dtype), c

    def first(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``forward(x, 0, 0)`` without the recurrent conv on the zero state (same values, one conv fewer)."""
        h, c = self.model.cell_first_step(self.direction, x.to(torch.float32))
        return h.to(self.dtype), c


class BwdWindowGraph(nn.Module):
    """``xs [B*(L+1),G,h,w] -> hb [B,...]``: per stream, the backward cell from zero over its ``xs[L], ..., xs[0]``.

    Identical, cast for cast, to running ``CellGraph("bwd")`` L+1 times from the zero state; the first step
    skips the recurrent conv on ``h = 0`` (``CellGraph.first``): no batch-dependent zero state is built, so
    the graph holds L recurrent convs, not L + 1, with a static or a dynamic batch axis alike.
    """

    def __init__(self, model: ESAN, lookahead: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.step = CellGraph(model, "bwd", dtype)
        self.lookahead, self.dtype = lookahead, dtype

    def forward(self, xs: Tensor) -> Tensor:
        x = xs.unflatten(0, (-1, self.lookahead + 1))  # [B, L+1, G, h, w]
        h, c = self.step.first(x[:, self.lookahead])
        for i in range(self.lookahead - 1, -1, -1):
            h, c = self.step(x[:, i], h, c)
        return h


class DecoderGraph(nn.Module):
    """``(hf, hb) -> map [1,1,H/2,W/2]`` float32 (computed in fp32 for every precision)."""

    def __init__(self, model32: ESAN) -> None:
        super().__init__()
        self.model = model32

    def forward(self, hf: Tensor, hb: Tensor) -> Tensor:
        return self.model.decode(hf.to(torch.float32), hb.to(torch.float32))


@dataclass
class GraphDef:
    """A graph ready to export: its module and contract names, with example inputs."""

    name: str
    module: nn.Module
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    input_dtypes: tuple[torch.dtype, ...]
    item_rows: tuple[int, ...] = ()  # rows of dimension 0 per stream, per input (outputs: one row per stream)

    def dynamic_shapes(self) -> dict[str, dict[int, object]]:
        """``torch.onnx.export`` dynamic shapes: dimension 0 is ``batch`` (or ``K*batch``) for every input."""
        batch = torch.export.Dim(BATCH_DIM, min=1, max=MAX_EXPORT_BATCH)
        return {n: {0: batch if k == 1 else k * batch} for n, k in zip(self.input_names, self.item_rows, strict=True)}


def _io(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return {
        "encoder": (("frame", "valid"), FEATURE_NAMES),
        "aligner": (WINDOW_INPUTS + REFERENCE_NAMES, ("xf", "xb")),
        "cell_fwd": (("x", "h", "c"), ("h_out", "c_out")),
        "cell_bwd": (("x", "h", "c"), ("h_out", "c_out")),
        "bwd_window": (("xs",), ("hb",)),
        "decoder": (("hf", "hb"), ("map",)),
    }[name]


def build_graphs(model: ESAN, lookahead: int, precision: str = "fp32") -> dict[str, GraphDef]:
    """The six graphs of a bundle for ``model`` (fp32, eval); fp16 uses a half copy of the model."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if lookahead < 0:
        raise ValueError(f"lookahead must be >= 0, got {lookahead}")
    dt = PRECISIONS[precision]
    cfg = model.cfg
    model32 = model.eval()
    compute = model32 if dt == torch.float32 else copy.deepcopy(model32).to(dt).eval()
    u8, f32 = torch.uint8, torch.float32
    modules: dict[str, tuple[nn.Module, tuple[torch.dtype, ...]]] = {
        "encoder": (EncoderGraph(compute, dt), (u8, u8)),
        "aligner": (AlignerGraph(compute), (dt,) * 10),
        "cell_fwd": (CellGraph(compute, "fwd", dt), (dt, dt, f32)),
        "cell_bwd": (CellGraph(compute, "bwd", dt), (dt, dt, f32)),
        "bwd_window": (BwdWindowGraph(compute, lookahead, dt), (dt,)),
        "decoder": (DecoderGraph(model32), (dt, dt)),
    }
    rows = {"aligner": (cfg.window,) * len(WINDOW_INPUTS) + (1,) * len(REFERENCE_NAMES), "bwd_window": (lookahead + 1,)}
    out = {}
    for name, (module, dtypes) in modules.items():
        ins, outs = _io(name)
        out[name] = GraphDef(name, module.eval(), ins, outs, dtypes, rows.get(name, (1,) * len(ins)))
    return out


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


@torch.no_grad()
def sample_inputs(model: ESAN, lookahead: int, seed: int = 0, batch: int = 2) -> dict[str, dict[str, np.ndarray]]:
    """Realistic fp32/uint8 inputs for every graph, ``batch`` different items, chained through the fp32 graphs.

    Per item: random letterboxed frames (zero padding rows at top and bottom, a different amount per item)
    feed the encoder; its outputs for a window of 2T+1 frames feed the aligner, whose projections feed
    the cells, and so on. Items are concatenated stream-major (module docstring).
    """
    g = build_graphs(model, lookahead, "fp32")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    items = [_item_samples(model, g, lookahead, rng, gen, item) for item in range(batch)]
    return {name: {k: np.concatenate([it[name][k] for it in items]) for k in items[0][name]} for name in items[0]}


def _item_samples(model: ESAN, g: dict[str, GraphDef], lookahead: int, rng: np.random.Generator,
                  gen: torch.Generator, item: int) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """One stream's chained inputs for every graph (batch 1)."""
    cfg = model.cfg
    h, w = cfg.input_size
    pad = h // 8 * (1 + item % 2)
    valid = np.zeros((1, h, w, 1), np.uint8)
    valid[:, pad : h - pad] = 1
    encs = []
    for _ in range(cfg.window):
        frame = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8) * valid
        outs = g["encoder"].module(torch.from_numpy(frame), torch.from_numpy(valid))
        encs.append((frame, dict(zip(FEATURE_NAMES, outs, strict=True))))
    frame0, mid = encs[0][0], encs[cfg.radius][1]
    aligner = {wn: torch.cat([e[k] for _, e in encs]) for wn, k in zip(WINDOW_INPUTS, _WINDOW_KEYS, strict=True)}
    aligner.update({k: mid[k] for k in REFERENCE_NAMES})
    xf, xb = g["aligner"].module(**aligner)
    xs = torch.cat([xb + 0.2 * xb.std() * torch.randn(xb.shape, generator=gen) for _ in range(lookahead + 1)])
    zero_h, zero_c = model.zero_state(xf)
    h1, c1 = g["cell_fwd"].module(xf, zero_h, zero_c)
    hb = g["bwd_window"].module(xs)
    chained = {
        "aligner": {k: _np(v) for k, v in aligner.items()},
        "cell_fwd": {"x": _np(xf), "h": _np(h1), "c": _np(c1)},
        "cell_bwd": {"x": _np(xb), "h": _np(h1), "c": _np(c1)},
        "bwd_window": {"xs": _np(xs)},
        "decoder": {"hf": _np(h1), "hb": _np(hb)},
    }
    # random frames give near-identical deep features (a random net averages noise out): 20% noise per
    # stream keeps the magnitudes realistic and makes the streams of a batched check clearly different
    noisy = {g: {k: (v + 0.2 * v.std() * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in d.items()}
             for g, d in chained.items()}  # fmt: skip
    return {"encoder": {"frame": frame0, "valid": valid}, **noisy}


def split_items(graph: GraphDef, inputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Batched ``inputs`` of ``graph`` -> one batch-1 input dict per stream (views)."""
    rows = dict(zip(graph.input_names, graph.item_rows, strict=True))
    n = {len(inputs[k]) // rows[k] for k in graph.input_names}
    if len(n) != 1:
        raise ValueError(f"{graph.name}: inputs disagree on the batch size ({sorted(n)})")
    return [{k: inputs[k][b * rows[k] : (b + 1) * rows[k]] for k in graph.input_names} for b in range(n.pop())]


@torch.no_grad()
def run_torch_per_item(graph: GraphDef, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``run_torch`` on each stream of a batch alone (batch 1), outputs concatenated: the batched reference."""
    outs = [run_torch(graph, item) for item in split_items(graph, inputs)]
    return {k: np.concatenate([o[k] for o in outs]) for k in graph.output_names}


def cast_inputs(graph: GraphDef, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``inputs`` converted to the graph's input dtypes (e.g. float16 for fp16 bundles)."""
    return {
        n: np.ascontiguousarray(inputs[n].astype(torch.empty(0, dtype=dt).numpy().dtype))
        for n, dt in zip(graph.input_names, graph.input_dtypes, strict=True)
    }


@torch.no_grad()
def run_torch(graph: GraphDef, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a graph's PyTorch module on numpy inputs; returns numpy outputs by contract name."""
    args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in graph.input_names]
    outs = graph.module(*args)
    outs = outs if isinstance(outs, tuple) else (outs,)
    return {n: _np(o) for n, o in zip(graph.output_names, outs, strict=True)}
