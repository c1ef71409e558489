"""``esan-rt compare BUNDLE --checkpoint CKPT [--backends ort,trt]``: every graph vs PyTorch.

Runs each graph of the bundle on each requested backend with realistic inputs (the same chained
samples the export checks use) and prints max abs error and correlation per output against the
fp32 PyTorch graphs of the checkpoint. Unavailable backends are skipped with a note. Exit code 1
when an output misses the bundle precision's tolerance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from esan.runtime.core.bundle import Bundle, load_bundle
from esan.runtime.core.errors import UserError

BACKENDS = ("ort", "trt")


def _ort_outputs(bundle: Bundle, name: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from esan.export import parity

    return parity.run_ort(parity.ort_session(bundle.graph_path(name), threads=1), feed)


class _TrtRunner:
    """Runs the bundle's engines with torch CUDA buffers (compare is a diagnostic; keep it thin)."""

    def __init__(self, bundle: Bundle) -> None:
        import tensorrt as trt
        import torch

        from esan.runtime.core.bundle import check_compatible

        check_compatible(bundle, "trt", None, tensorrt_version=str(trt.__version__))  # one clear line if stale
        self.trt, self.torch, self.bundle = trt, torch, bundle
        self.logger = trt.Logger(trt.Logger.WARNING)
        # ONNX DeformConv was built into TensorRT's ModulatedDeformConv2d plugin (libnvinfer_plugin):
        # register those creators before deserializing, or the engines will not load.
        trt.init_libnvinfer_plugins(self.logger, "")
        if bundle.dcn == "plugin":
            from esan.runtime.backends import plugin_lib

            built_with = (bundle.manifest.get("engines") or {}).get("plugin_library")
            plugin_lib.load_plugin_library(built_with if built_with and Path(built_with).is_file() else None)
        self.runtime = trt.Runtime(self.logger)

    def __call__(self, name: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        trt, torch = self.trt, self.torch
        engine = self.runtime.deserialize_cuda_engine(self.bundle.engine_path(name).read_bytes())
        if engine is None:
            raise UserError(f"TensorRT could not load {self.bundle.engine_path(name)}; rebuild with export/to_trt.py")
        ctx = engine.create_execution_context()
        bufs, outs = {}, []
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        for tname in inputs:  # inputs first: a dynamic batch fixes the output shapes
            bufs[tname] = torch.from_numpy(np.ascontiguousarray(feed[tname])).cuda()
            ctx.set_input_shape(tname, tuple(feed[tname].shape))
        for tname in names:
            if tname not in inputs:
                dtype = torch.from_numpy(np.empty(0, trt.nptype(engine.get_tensor_dtype(tname)))).dtype
                bufs[tname] = torch.empty(tuple(ctx.get_tensor_shape(tname)), dtype=dtype, device="cuda")
                outs.append(tname)
        for tname in names:
            ctx.set_tensor_address(tname, bufs[tname].data_ptr())
        stream = torch.cuda.current_stream()
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run {name}")
        stream.synchronize()
        return {n: bufs[n].cpu().numpy() for n in outs}


def _trt_skip_reason(bundle: Bundle) -> str | None:
    from esan.export.trt_build import INSTALL_HINT, import_tensorrt

    if import_tensorrt() is None:
        return f"TensorRT is not installed ({INSTALL_HINT})"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU visible to torch"
    except ImportError:
        return "torch is needed for the TensorRT comparison buffers"
    if bundle.engines is None:
        return f"the bundle has no engines (python export/to_trt.py CKPT --out {bundle.root})"
    return None


def compare_bundle(bundle_dir: str | Path, ckpt: str | Path, backends: tuple[str, ...] = BACKENDS) -> tuple[list, list]:
    """``(rows, notes)``: rows are (backend, graph, output, max_abs, corr, ok)."""
    import torch

    from esan.export import graphs, parity
    from esan.train import checkpoint

    bundle = load_bundle(bundle_dir)
    model = checkpoint.load(ckpt)
    if json.loads(json.dumps(model.cfg.to_dict())) != bundle.config:
        raise UserError(f"checkpoint {ckpt} has another config than bundle {bundle.root}; pass its own checkpoint")
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    defs = graphs.build_graphs(model, bundle.lookahead, bundle.precision)
    refs = graphs.build_graphs(model, bundle.lookahead, "fp32")
    samples = graphs.sample_inputs(model, bundle.lookahead, batch=2 if bundle.batch == "dynamic" else 1)
    runners, notes = {}, []
    for b in backends:
        if b == "ort":
            runners["ort"] = lambda name, feed: _ort_outputs(bundle, name, feed)
            if bundle.dcn == "plugin":
                notes.append("ort: plugin nodes were rewritten to ONNX DeformConv to run on ONNX Runtime")
        elif b == "trt":
            reason = _trt_skip_reason(bundle)
            if reason:
                notes.append(f"trt: skipped: {reason}")
            else:
                runners["trt"] = _TrtRunner(bundle)
        else:
            raise UserError(f"unknown backend {b!r}; choose from {', '.join(BACKENDS)}")
    rows = []
    for name in graphs.GRAPH_NAMES:
        feed = graphs.cast_inputs(defs[name], samples[name])
        ref_in = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in feed.items()}
        ref = graphs.run_torch_per_item(refs[name], ref_in)  # each stream alone: batching must not mix them
        for b, run in runners.items():
            for out, m in parity.compare_outputs(ref, run(name, feed)).items():
                rows.append((b, name, out, m["max_abs"], m["corr"], parity.passes(m, bundle.precision)))
    return rows, notes


def format_table(rows: list) -> str:
    head = f"{'backend':<8} {'graph':<11} {'output':<8} {'max_abs':>10} {'corr':>10}  ok"
    lines = [head, "-" * len(head)]
    for b, g, o, max_abs, corr, ok in rows:
        lines.append(f"{b:<8} {g:<11} {o:<8} {max_abs:>10.3e} {corr:>10.6f}  {'yes' if ok else 'NO'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handler of ``esan-rt compare``."""
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    rows, notes = compare_bundle(args.bundle, args.checkpoint, backends)
    print(format_table(rows))
    for note in notes:
        print(f"note: {note}")
    if not rows:
        print("no backend could run the bundle")
        return 1
    return 0 if all(r[-1] for r in rows) else 1
