"""The INT8 step of ``export_bundle``: calibrate on real frames, quantize, check against the float graphs.

``quantize_bundle_graphs(fp32_dir, out_dir, ...)``: the fp32 graphs (already exported and checked) run
the streaming schedule over the calibration frames (``calib_data``), ONNX Runtime's tool quantizes each
graph (``quantize``), and every int8 graph is compared with its fp32 graph on calibration inputs it did
not calibrate on where there are any (correlation, recorded in the manifest's ``checks``). Returns the
manifest's ``int8`` record.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from esan.export import calib_data, calib_frames, parity, quantize
from esan.runtime.core.errors import UserError

MIN_CORR = 0.98  # an int8 graph that correlates less with its float graph is reported loudly


def quantize_bundle_graphs(
    fp32_dir: Path, out_dir: Path, cfg: dict, lookahead: int, *, calib: str | None, calib_frames_n: int,
    flavour: str, threads: int = 0, progress: Callable[[str], None] = print, parts=None,
) -> tuple[dict, dict]:  # fmt: skip
    """Quantize the graphs of ``fp32_dir`` into ``out_dir``; returns ``(int8 manifest record, checks)``."""
    if flavour not in quantize.FLAVOURS:
        raise UserError(f"--int8-flavour must be one of {', '.join(quantize.FLAVOURS)}, got {flavour!r}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs, source = calib_frames.load_calibration_frames(calib, calib_frames_n)
    for w in caught:
        progress(f"warning: {w.message}")
    chain = calib_data.FloatChain(fp32_dir, cfg, lookahead, threads)
    work = Path(tempfile.mkdtemp(prefix="esan-calib-"))
    try:
        with tqdm(total=source["frames"], desc="calibration (float graphs)", unit="frame", leave=False) as bar:
            samples = calib_data.collect(chain, runs, work, per_graph=max(calib_frames_n, 8), progress=bar.update)
        held = {g: p[1::2] for g, p in samples.items()}  # odd inputs: checked against fp32, never calibrated on
        used = {g: p[0::2] if len(p) > 1 else p for g, p in samples.items()}
        parts_done = quantize.quantize_graphs(fp32_dir, out_dir, used, flavour, parts=parts, progress=progress)
        checks = {g: _check(fp32_dir, out_dir, g, held[g] or used[g], threads)
                  for g, d in parts_done.items() if d["quantized"]}  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for g, c in checks.items():
        progress(f"int8 {g} vs fp32 on {c['inputs']} held-out inputs: corr={c['corr']:.5f} max_abs={c['max_abs']:.3g}")
        if c["corr"] < MIN_CORR:
            progress(f"warning: int8 {g} correlates only {c['corr']:.4f} with fp32; calibrate on more, or "
                     "more representative, footage (--calib)")  # fmt: skip
    record = {**quantize.flavour_record(flavour), "calibration_source": source,
              "float_parts": list(quantize.FLOAT_PARTS), "graphs": parts_done}  # fmt: skip
    return record, checks


def _check(fp32_dir: Path, out_dir: Path, graph: str, inputs: list[Path], threads: int) -> dict:
    """The int8 graph against its fp32 graph on saved inputs: worst correlation and max abs over outputs."""
    ref_s = parity.ort_session(fp32_dir / f"{graph}.onnx", threads)
    q_s = parity.ort_session(out_dir / f"{graph}.onnx", threads)
    refs, outs = [], []
    for p in inputs[:16]:
        feed = calib_data.load_inputs(p)
        refs.append(parity.run_ort(ref_s, feed))
        outs.append(parity.run_ort(q_s, feed))
    names = list(refs[0])
    per_output = parity.compare_outputs(
        {n: np.concatenate([r[n].ravel() for r in refs]) for n in names},
        {n: np.concatenate([o[n].ravel() for o in outs]) for n in names},
    )
    return {**parity.summarize(per_output, "onnxruntime (int8 vs fp32 graph)"), "inputs": len(refs)}


def quantize_bundle(
    fp32_bundle: str | Path, out: str | Path, *, calib: str | None = None, calib_frames_n: int = 240,
    flavour: str = "ort", threads: int = 0, progress: Callable[[str], None] = print,
) -> Path:  # fmt: skip
    """An int8 bundle at ``out`` from an existing fp32 (standard DCN) bundle: same graphs, quantized."""
    from esan.export.bundle_files import install_bundle, prepare_target
    from esan.export.graphs import GRAPH_NAMES
    from esan.export.manifest_writer import graph_entry, read_manifest, write_manifest
    from esan.runtime.core.bundle import load_bundle
    from esan.runtime.core.version import utc_now

    src = load_bundle(fp32_bundle)
    if src.precision != "fp32" or src.dcn != "standard":
        raise UserError(f"{fp32_bundle} is a {src.precision} / {src.dcn} bundle; int8 quantizes fp32 bundles "
                        "with --dcn standard")  # fmt: skip
    out = Path(out)
    prepare_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "fp32").mkdir()
        for g in GRAPH_NAMES:
            shutil.copyfile(src.graph_path(g), tmp / "fp32" / f"{g}.onnx")
        record, checks = quantize_bundle_graphs(
            tmp / "fp32", tmp, src.config, src.lookahead, calib=calib, calib_frames_n=calib_frames_n,
            flavour=flavour, threads=threads, progress=progress,
        )  # fmt: skip
        shutil.rmtree(tmp / "fp32")
        manifest = read_manifest(Path(fp32_bundle))
        manifest.pop("engines", None)
        old_checks = manifest.get("checks") or {}
        manifest.update(
            created_at=utc_now("microseconds"), precision="int8", fp32_parts=record["float_parts"], int8=record,
            graphs={g: graph_entry(tmp / f"{g}.onnx") for g in GRAPH_NAMES},
            checks={g: {"fp32_vs_torch": old_checks.get(g), "int8_vs_fp32": checks.get(g)} for g in GRAPH_NAMES},
        )  # fmt: skip
        write_manifest(tmp, manifest)
        install_bundle(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
