"""Write ``manifest.json`` per docs/contracts.md (torch-free: onnx + json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from esan.runtime.core import plugin_spec as ps
from esan.runtime.core.bundle import FORMAT, FORMAT_VERSION, MANIFEST, batch_rows, sha256_file
from esan.runtime.core.fsutil import atomic_write_text
from esan.runtime.core.version import package_version, utc_now

_ONNX_DTYPES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


def tensor_specs(values) -> list[dict[str, Any]]:
    """``[{name, shape, dtype}]`` of ONNX graph inputs/outputs: static, but for a symbolic batch dimension 0.

    Dimension 0 is ``"batch"`` or ``"K*batch"`` (the exporter's names; ``esan.runtime.core.bundle.batch_rows``).
    """
    out = []
    for v in values:
        t = v.type.tensor_type
        shape: list[int | str] = []
        for i, d in enumerate(t.shape.dim):
            if d.HasField("dim_value"):
                shape.append(d.dim_value)
                continue
            name = d.dim_param.replace(" ", "")
            try:
                if i != 0:
                    raise ValueError
                batch_rows(name)
            except ValueError:
                raise ValueError(f"tensor {v.name} has a dynamic dimension {i} ({d.dim_param!r}); "
                                 "bundles are static but for a batch dimension 0") from None
            shape.append(name)
        if t.elem_type not in _ONNX_DTYPES:
            raise ValueError(f"tensor {v.name} has unsupported ONNX elem_type {t.elem_type}")
        out.append({"name": v.name, "shape": shape, "dtype": _ONNX_DTYPES[t.elem_type]})
    return out


def graph_entry(path: Path) -> dict[str, Any]:
    """Manifest entry of one graph file: file name, sha256, input and output specs."""
    model = onnx.load(path, load_external_data=False)
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "inputs": tensor_specs(model.graph.input),
        "outputs": tensor_specs(model.graph.output),
    }


def build_manifest(
    *,
    config: dict[str, Any],
    lookahead: int,
    precision: str,
    fp32_parts: list[str],
    dcn: str,
    opset: int,
    batch: int | str,
    graphs: dict[str, dict[str, Any]],
    checks: dict[str, Any],
    checkpoint: Path,
    checkpoint_sha256: str,
) -> dict[str, Any]:
    """The manifest dict; ``batch=1`` writes a format 1 manifest (static batch 1, no ``batch`` field)."""
    h, w = config["input_size"]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION if batch == "dynamic" else 1,
        "package_version": package_version(),
        "created_at": utc_now("microseconds"),
        "config": config,
        "input_size": [h, w],
        "output_size": [h // 2, w // 2],
        "radius": config["radius"],
        "lookahead": lookahead,
        "normalization": {
            "mean": list(config["mean"]),
            "std": list(config["std"]),
            "in_graph": True,
            "padding": "zero after normalisation",
        },
        "precision": precision,
        "fp32_parts": fp32_parts,
        "dcn": dcn,
        "plugin": (
            {
                "name": ps.PLUGIN_NAME,
                "version": ps.PLUGIN_VERSION,
                "namespace": ps.PLUGIN_NAMESPACE,
                "domain": ps.ONNX_DOMAIN,
            }
            if dcn == "plugin"
            else None
        ),
        "opset": opset,
        "batch": batch,
        "graphs": graphs,
        "checks": checks,
        "source_checkpoint": {"path": str(checkpoint), "sha256": checkpoint_sha256},
    }
    if batch != "dynamic":
        del manifest["batch"]
    return manifest


def write_manifest(bundle_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically (the bundle's commit point)."""
    path = Path(bundle_dir) / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    return json.loads((Path(bundle_dir) / MANIFEST).read_text())
