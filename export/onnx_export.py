"""Export a checkpoint to a split ONNX bundle (docs/contracts.md) and check it before it counts.

Every graph goes through ``torch.onnx.export(..., dynamo=True)`` with our DCN translation and a dynamic
batch axis (``esan.export.graphs``), weight slices folded into initializers (``onnx_fold``), then
``onnx.checker``, then ONNX Runtime vs PyTorch on realistic inputs: a batch of 2 streams with different
inputs, run in one ORT call, against PyTorch on each stream alone (plugin graphs run with the plugin node
rewritten to ``DeformConv``).
Files are written to a hidden temp directory beside the target and moved into place only when
everything passed, so a failed export never leaves a bundle that looks valid.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import onnx
import torch

from esan.export import dcn_onnx, graphs, parity
from esan.export.bundle_files import install_bundle, prepare_target
from esan.export.manifest_writer import build_manifest, graph_entry, write_manifest
from esan.export.onnx_fold import fold_initializer_slices
from esan.runtime.core.bundle import sha256_file
from esan.runtime.core.errors import UserError
from esan.train import checkpoint
from esan.train.model import ESAN

MIN_OPSET = 19


def export_graph(
    graph: graphs.GraphDef, example: dict, path: Path, dcn: str, opset: int, dynamic: bool = True
) -> onnx.ModelProto:
    """Export one graph with the dynamo exporter, name its I/O per the contract, check and save it.

    ``dynamic``: dimension 0 is the symbolic batch axis; else the example's shapes are fixed (batch 1).
    """
    args = tuple(torch.from_numpy(example[n]) for n in graph.input_names)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph.module,
                args,
                dynamo=True,
                opset_version=opset,
                input_names=list(graph.input_names),
                output_names=list(graph.output_names),
                dynamic_shapes=graph.dynamic_shapes() if dynamic else None,
                custom_translation_table=dcn_onnx.translation_table(dcn),
                verbose=False,
                external_data=False,
            )
    except Exception as exc:
        raise RuntimeError(f"exporting {graph.name} failed: {exc}\n{log.getvalue()[-2000:]}") from exc
    model = program.model_proto
    fold_initializer_slices(model)
    if dynamic:  # every output has one row per stream: name its derived batch symbol (e.g. "s26") "batch"
        for out in model.graph.output:
            dim = out.type.tensor_type.shape.dim[0]
            if not dim.HasField("dim_value"):
                dim.dim_param = graphs.BATCH_DIM
    model.producer_name = "esan-rt"
    model.doc_string = f"ESAN-RT {graph.name} graph"
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != list(graph.input_names) or got_out != list(graph.output_names):
        raise RuntimeError(f"{graph.name}: exported I/O {got_in} -> {got_out} does not match the contract")
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return model


def check_graph(
    graph: graphs.GraphDef, ref_graph: graphs.GraphDef, model: onnx.ModelProto, sample: dict, precision: str
) -> dict:
    """ONNX Runtime on the batched ``sample`` (one call) vs the fp32 PyTorch graph on each stream alone.

    Raises if the tolerance is missed.
    """
    feed = graphs.cast_inputs(graph, sample)
    ref_in = {k: (v.astype("float32") if v.dtype.kind == "f" else v) for k, v in feed.items()}
    ref = graphs.run_torch_per_item(ref_graph, ref_in)
    out = parity.run_ort(parity.ort_session(model, threads=torch.get_num_threads()), feed)
    per_output = parity.compare_outputs(ref, out)
    backend = "onnxruntime" if not dcn_onnx.plugin_nodes(model) else "onnxruntime (plugin node as DeformConv)"
    summary = {**parity.summarize(per_output, backend), "batch": len(graphs.split_items(graph, feed))}
    bad = {n: m for n, m in per_output.items() if not parity.passes(m, precision)}
    if bad:
        detail = ", ".join(
            f"{n}: max_abs={m['max_abs']:.3g} corr={m['corr']:.6f} rel_l2={m['rel_l2']:.3g}" for n, m in bad.items()
        )
        rule = parity.rule(precision)
        raise RuntimeError(f"{graph.name}: ONNX Runtime disagrees with PyTorch ({rule} violated): {detail}")
    return summary


def export_bundle(
    ckpt: str | Path,
    out: str | Path,
    lookahead: int = 8,
    dcn: str = "standard",
    precision: str = "fp32",
    opset: int = MIN_OPSET,
    verify: bool = True,
    progress: Callable[[str], None] = print,
    model: ESAN | None = None,
    batch: int | str = "dynamic",
    calib: str | None = None,
    calib_frames: int = 240,
    int8_flavour: str = "ort",
) -> Path:
    """Export ``ckpt`` to the bundle directory ``out``; returns its path. See the module docstring.

    ``batch="dynamic"`` (default): one graph call serves any number of streams. ``batch=1``: static batch-1
    graphs in a format 1 manifest, as older esan-rt versions wrote and read them.
    """
    ckpt, out = Path(ckpt), Path(out)
    if opset < MIN_OPSET:
        raise UserError(f"--opset {opset} is too old: DeformConv needs opset >= {MIN_OPSET}")
    if lookahead < 0:
        raise UserError(f"--lookahead must be >= 0, got {lookahead}")
    int8 = precision == "int8"
    if dcn not in dcn_onnx.DCN_MODES or (precision not in graphs.PRECISIONS and not int8):
        raise UserError(f"--dcn must be one of {dcn_onnx.DCN_MODES} and --precision one of "
                        f"{(*graphs.PRECISIONS, 'int8')}")  # fmt: skip
    if int8 and dcn == "plugin":
        raise UserError("--precision int8 needs --dcn standard (the plugin node cannot be calibrated in ONNX Runtime)")
    graph_precision = "fp32" if int8 else precision
    if batch not in ("dynamic", 1):
        raise UserError(f"--batch must be 'dynamic' or 1, got {batch!r}")
    prepare_target(out)
    model = model if model is not None else checkpoint.load(ckpt)
    ckpt_sha = sha256_file(ckpt)
    defs = graphs.build_graphs(model, lookahead, graph_precision)
    refs = graphs.build_graphs(model, lookahead, "fp32")
    samples = graphs.sample_inputs(model, lookahead, batch=2 if batch == "dynamic" else 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        entries, checks, int8_record = {}, {}, None
        graph_dir = tmp / "fp32" if int8 else tmp
        graph_dir.mkdir(exist_ok=True)
        for i, name in enumerate(graphs.GRAPH_NAMES, 1):
            t0 = time.perf_counter()
            path = graph_dir / f"{name}.onnx"
            example = graphs.cast_inputs(defs[name], samples[name])
            proto = export_graph(defs[name], example, path, dcn, opset, dynamic=batch == "dynamic")
            msg = f"[{i}/{len(graphs.GRAPH_NAMES)}] {name}: exported {path.stat().st_size / 1e6:.1f} MB"
            if verify:
                checks[name] = check_graph(defs[name], refs[name], proto, samples[name], graph_precision)
                msg += f", ORT max_abs={checks[name]['max_abs']:.2e} corr={checks[name]['corr']:.6f}"
            del proto
            entries[name] = graph_entry(path)
            progress(f"{msg} ({time.perf_counter() - t0:.1f} s)")
        if int8:
            from esan.export.int8_export import quantize_bundle_graphs

            int8_record, int8_checks = quantize_bundle_graphs(
                graph_dir, tmp, model.cfg.to_dict(), lookahead, calib=calib, calib_frames_n=calib_frames,
                flavour=int8_flavour, threads=torch.get_num_threads(), progress=progress,
            )  # fmt: skip
            checks = {g: {"fp32_vs_torch": checks.get(g), "int8_vs_fp32": int8_checks.get(g)}
                      for g in graphs.GRAPH_NAMES}  # fmt: skip
            shutil.rmtree(graph_dir)
            entries = {name: graph_entry(tmp / f"{name}.onnx") for name in graphs.GRAPH_NAMES}
        manifest = build_manifest(
            config=model.cfg.to_dict(),
            lookahead=lookahead,
            precision=precision,
            fp32_parts=list(graphs.FP32_PARTS_FP16) if precision == "fp16" else (
                int8_record["float_parts"] if int8_record else []),
            dcn=dcn,
            opset=opset,
            batch=batch,
            graphs=entries,
            checks=checks,
            checkpoint=ckpt.resolve(),
            checkpoint_sha256=ckpt_sha,
        )
        if int8_record is not None:
            manifest["int8"] = int8_record
        write_manifest(tmp, manifest)
        install_bundle(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
