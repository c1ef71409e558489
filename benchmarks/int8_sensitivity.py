"""Per-part INT8 sensitivity: quantize one part at a time, measure the end-to-end map error.

For each quantized graph of an int8 bundle, a bundle that is fp32 but for that one graph (quantized with
the int8 bundle's own calibration cache, so no new calibration) streams held-out clips, and its maps are
scored against the fp32 bundle's (CC, KLD, max abs; ``esan.bench.int8_fidelity``). Extra rows: the encoder
with its first convolution quantized too (the default keeps it float), and the whole default int8 bundle.
``record`` writes the table into the int8 bundle's manifest (``int8.sensitivity``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from esan.export import quantize
from esan.export.manifest_writer import graph_entry, read_manifest, write_manifest


def _variant(fp32_dir: Path, int8_dir: Path, out: Path, graph: str, flavour: str, exclude: Sequence[str]) -> Path:
    """``out``: the fp32 bundle (hard links) with ``graph`` quantized from the int8 bundle's calibration cache."""
    out.mkdir(parents=True)
    for f in fp32_dir.iterdir():
        if f.suffix == ".onnx" and f.stem != graph:
            try:
                os.link(f, out / f.name)
            except OSError:
                shutil.copyfile(f, out / f.name)
    cache = int8_dir / quantize.CALIB_DIR / f"{graph}.json"
    quantize.quantize_graph(fp32_dir / f"{graph}.onnx", out / f"{graph}.onnx", [], flavour, quantize.PART_OPS[graph],
                            cache, exclude)  # fmt: skip
    man = read_manifest(fp32_dir)
    man["graphs"][graph] = graph_entry(out / f"{graph}.onnx")
    write_manifest(out, man)
    return out


def sensitivity_table(fp32_dir: str | os.PathLike, int8_dir: str | os.PathLike, clips: Sequence[Sequence[np.ndarray]],
                      threads: int = 1, progress: Callable[[str], None] = print) -> list[dict]:  # fmt: skip
    """Rows ``{part, quantized, cc_mean, cc_min, kld_mean, kld_max, max_abs}``, one part at a time, then all."""
    from esan.bench.int8_fidelity import compare_bundles

    fp32_dir, int8_dir = Path(fp32_dir), Path(int8_dir)
    rec = read_manifest(int8_dir)["int8"]
    flavour = rec["flavour"]
    cases = []
    for g, d in rec["graphs"].items():
        if d.get("quantized"):
            cases.append((g, g, d.get("float_nodes_kept", []), "default"))
            if d.get("float_nodes_kept"):
                cases.append((f"{g} (incl. {', '.join(d['float_nodes_kept'])})", g, [], "all nodes"))
    rows = []
    work = Path(tempfile.mkdtemp(prefix="esan-int8-sens-"))
    try:
        for i, (label, g, exclude, what) in enumerate(cases):
            bundle = _variant(fp32_dir, int8_dir, work / f"v{i}", g, flavour, exclude)
            fid = compare_bundles(fp32_dir, bundle, clips, threads)["all"]
            rows.append({"part": label, "quantized": f"{g} only ({what})", **_round(fid)})
            progress(f"sensitivity {label}: CC {fid['cc_mean']:.4f} KLD {fid['kld_mean']:.4f}")
            shutil.rmtree(bundle, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fid = compare_bundles(fp32_dir, int8_dir, clips, threads)["all"]
    rows.append({"part": "all (default int8 bundle)", "quantized": "every quantized part", **_round(fid)})
    return rows


def _round(fid: dict) -> dict:
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in fid.items()}


def record(int8_dir: str | os.PathLike, rows: list[dict], footage: str) -> None:
    """Store the table in the int8 bundle's manifest (graphs untouched: their checksums stay valid)."""
    man = read_manifest(Path(int8_dir))
    man["int8"]["sensitivity"] = {"footage": footage, "rows": rows}
    write_manifest(Path(int8_dir), man)


def markdown(rows: list[dict]) -> str:
    """The table as Markdown (the export report and the README)."""
    head = "| quantized part | CC mean | CC min | KLD mean | KLD max | max abs |\n|---|---|---|---|---|---|\n"
    return head + "".join(
        f"| {r['part']} | {r['cc_mean']:.4f} | {r['cc_min']:.4f} | {r['kld_mean']:.4f} | {r['kld_max']:.4f} | "
        f"{r['max_abs']:.3g} |\n" for r in rows
    )
