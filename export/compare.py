"""``esan-rt compare BUNDLE --checkpoint CKPT [--backends ort,trt]``: every graph vs PyTorch, through Polygraphy.

Each graph of the bundle gets realistic inputs (the chained samples the export checks use).
Polygraphy's ``Comparator`` runs them on the reference (the checkpoint's fp32 PyTorch graph, wrapped
as a Polygraphy runner), on ONNX Runtime (``OnnxrtRunner``, CPU) and, where TensorRT, a usable GPU
and engines are present, on TensorRT (``TrtRunner`` on the bundle's engine); its
``compare_accuracy`` judges every output with the bundle precision's tolerance (fp32: max abs <=
1e-4, scaled by the reference's magnitude above 1; fp16: correlation >= 0.999 and relative L2 error
<= 1 %, so a wrong scale or offset fails too). On top, our table: max abs error, correlation and
relative L2 error per backend, graph and output. Unavailable backends are skipped with a
note. Then one end-to-end row (``--e2e-frames``, ``esan.export.compare_e2e``): the bundle streamed on ONNX
Runtime against the checkpoint streamed in fp32 PyTorch, maps judged by the precision's rule (for int8: mean
CC >= 0.99, mean KLD <= 0.02), its ``corr`` column the mean per-frame CC. Exit code 1 when an output misses
the tolerance. Helpers: ``esan.export.compare_runners``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from esan.runtime.core.bundle import Bundle, check_compatible, load_bundle
from esan.runtime.core.errors import UserError

BACKENDS = ("ort", "trt")
POLYGRAPHY_HINT = "pip install polygraphy (it comes with 'esan-rt[trt]' and 'esan-rt[dev]')"


def _trt_skip_reason(bundle: Bundle) -> str | None:
    from esan.export.trt_build import INSTALL_HINT, gpu_info, import_tensorrt

    if import_tensorrt() is None:
        return f"TensorRT is not installed ({INSTALL_HINT})"
    gpu = gpu_info()
    if not gpu.ok:
        return f"no usable NVIDIA GPU: {gpu.message}"
    if bundle.engines is None:
        return f"the bundle has no engines (esan-rt export CKPT --engines --out {bundle.root})"
    return None


def _prepare_trt(bundle: Bundle) -> None:
    """Refuse stale engines (one line) and register the plugins the engines need."""
    import tensorrt as trt

    from esan.runtime.backends import plugin_lib

    check_compatible(bundle, "trt", None, tensorrt_version=str(trt.__version__))
    # ONNX DeformConv was built into TensorRT's ModulatedDeformConv2d plugin (libnvinfer_plugin): Polygraphy's
    # engine loader registers those creators (with its process-wide logger); plugin bundles need our library.
    # Never the manifest's ``engines.plugin_library``: a bundle must not choose native code to load. The
    # library comes from $ESAN_PLUGIN_DIR or the default search (plugin_lib.search_dirs).
    if bundle.dcn == "plugin":
        try:
            plugin_lib.load_plugin_library(None)
        except (FileNotFoundError, RuntimeError) as exc:
            raise UserError(str(exc)) from exc


def compare_bundle(bundle_dir: str | Path, ckpt: str | Path, backends: tuple[str, ...] = BACKENDS,
                   e2e_frames: int = 0) -> tuple[list, list]:  # fmt: skip
    """``(rows, notes)``: rows are (backend, graph, output, max_abs, corr, rel_l2, ok), per graph and, with
    ``e2e_frames`` > 0 and ``ort`` among the backends, one ``end-to-end`` row (``esan.export.compare_e2e``)."""
    import torch

    from esan.export import graphs
    from esan.train import checkpoint

    try:
        from esan.export import compare_runners as cr
    except ImportError as exc:
        raise UserError(f"esan-rt compare runs the graphs through Polygraphy ({exc}): {POLYGRAPHY_HINT}") from None
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise UserError(f"unknown backend {unknown[0]!r}; choose from {', '.join(BACKENDS)}")
    if e2e_frames < 0:
        raise UserError(f"--e2e-frames must be >= 0, got {e2e_frames}")
    bundle = load_bundle(bundle_dir)
    model = checkpoint.load(ckpt)
    if json.loads(json.dumps(model.cfg.to_dict())) != bundle.config:
        raise UserError(f"checkpoint {ckpt} has another config than bundle {bundle.root}; pass its own checkpoint")
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    defs = graphs.build_graphs(model, bundle.lookahead, "fp32" if bundle.precision == "int8" else bundle.precision)
    refs = graphs.build_graphs(model, bundle.lookahead, "fp32")
    samples = graphs.sample_inputs(model, bundle.lookahead, batch=2 if bundle.batch == "dynamic" else 1)
    use, notes = [], []
    for b in backends:
        if b == "ort":
            use.append("ort")
            if bundle.dcn == "plugin":
                notes.append("ort: plugin nodes were rewritten to ONNX DeformConv to run on ONNX Runtime")
        elif (reason := _trt_skip_reason(bundle)) is not None:
            notes.append(f"trt: skipped: {reason}")
        else:
            _prepare_trt(bundle)
            use.append("trt")
    rows = []
    for name in graphs.GRAPH_NAMES:
        if not use:
            break
        feed = graphs.cast_inputs(defs[name], samples[name])
        runners: list[Any] = []
        if "ort" in use:
            runners.append(cr.ort_runner(bundle.graph_path(name)))
        if "trt" in use:
            runners.append(cr.trt_runner(bundle.engine_path(name)))
        metrics, _ = cr.compare_graph(cr.TorchReference(refs[name], feed), runners, feed, bundle.precision)
        for (backend, out), m in metrics.items():
            rows.append((backend, name, out, m["max_abs"], m["corr"], m["rel_l2"], m["ok"]))
    if e2e_frames and "ort" in use:
        from esan.export.compare_e2e import end_to_end

        e = end_to_end(bundle.root, ckpt, e2e_frames)
        rows.append(("ort", "end-to-end", "map", e["max_abs"], e["cc_mean"], e["rel_l2"], e["ok"]))
        notes.append(f"end-to-end: {e['frames']} sample-clip frames streamed, {e['precision']} bundle on ONNX Runtime "
                     f"vs the checkpoint in fp32 PyTorch: CC mean {e['cc_mean']:.5f} (min {e['cc_min']:.5f}), "
                     f"KLD mean {e['kld_mean']:.2e}; 'corr' is the mean per-frame CC")  # fmt: skip
    return rows, notes


def format_table(rows: list) -> str:
    head = f"{'backend':<8} {'graph':<11} {'output':<8} {'max_abs':>10} {'corr':>10} {'rel_l2':>10}  ok"
    lines = [head, "-" * len(head)]
    for b, g, o, max_abs, corr, rel_l2, ok in rows:
        lines.append(f"{b:<8} {g:<11} {o:<8} {max_abs:>10.3e} {corr:>10.6f} {rel_l2:>10.3e}  {'yes' if ok else 'NO'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handler of ``esan-rt compare``."""
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    rows, notes = compare_bundle(args.bundle, args.checkpoint, backends, args.e2e_frames)
    print(format_table(rows))
    for note in notes:
        print(f"note: {note}")
    if not rows:
        print("no backend could run the bundle")
        return 1
    return 0 if all(r[-1] for r in rows) else 1
