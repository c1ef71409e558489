"""Build TensorRT engines for a bundle, exporting the ONNX bundle first when it is missing or stale.

    python export/to_trt.py CKPT [--out BUNDLE_DIR] [--precision fp16|fp32|int8] [--lookahead L]
                             [--dcn standard|plugin] [--plugin-lib PATH] [--workspace MB]
                             [--timing-cache PATH] [--max-streams N] [--calib VIDEO|DIR|URL] [--calib-frames N]

One engine per graph (``<graph>.plan``), recorded in the manifest's ``engines`` with the TensorRT
version, GPU name and compute capability. Dynamic-batch bundles get one optimisation profile over
1 .. ``--max-streams`` streams (recorded as ``engines.max_batch``). Without TensorRT or a GPU the ONNX bundle is still
written; the script then exits with code 3 and one line saying what is missing.
Installed as ``esan-rt export CKPT --engines`` (same options).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from esan.export.to_onnx import add_export_args, add_int8_args
from esan.export.trt_profiles import DEFAULT_MAX_STREAMS
from esan.runtime.core.errors import UserError

if TYPE_CHECKING:
    from esan.runtime.backends.cuda_probe import GpuStatus

EXIT_MISSING = 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="to_trt.py", description="Build TensorRT engines for an ESAN bundle.")
    add_export_args(p)
    p.add_argument("--out", help="bundle directory (default: CKPT without suffix + '.bundle')")
    p.add_argument("--precision", choices=("fp16", "fp32", "int8"), default="fp16",
                   help="int8: calibrated Q/DQ graphs in TensorRT's flavour (symmetric int8), see --calib")
    add_int8_args(p, default_flavour="tensorrt")
    p.add_argument("--plugin-lib", type=Path, help="our TensorRT DCN plugin library (dcn=plugin)")
    p.add_argument("--workspace", type=int, default=4096, metavar="MB", help="builder workspace (default 4096)")
    p.add_argument("--timing-cache", type=Path, help="timing cache file (default: BUNDLE_DIR.timing-cache)")
    p.add_argument("--max-streams", type=int, default=DEFAULT_MAX_STREAMS, metavar="N",
                   help=f"largest batch (streams per engine call) the engines serve (default {DEFAULT_MAX_STREAMS})")
    return p


def _reusable(out: Path, ckpt_sha: str, args: argparse.Namespace) -> bool:
    """True when ``out`` holds a valid bundle of this checkpoint with the requested options."""
    from esan.runtime.core.bundle import load_bundle

    try:
        b = load_bundle(out)
    except UserError:
        return False
    want = (args.precision, args.lookahead, args.dcn, args.opset, ckpt_sha, "dynamic")
    flavour = (b.manifest.get("int8") or {}).get("flavour") if b.precision == "int8" else None
    if flavour != (args.int8_flavour if args.precision == "int8" else None):
        return False
    return (b.precision, b.lookahead, b.dcn, b.opset, b.source_checkpoint.get("sha256"), b.batch) == want


def _plugin_library(arg: Path | None) -> Path:
    if arg is not None:
        if not arg.is_file():
            raise UserError(f"--plugin-lib {arg} does not exist")
        return arg
    try:
        from esan.runtime.backends import plugin_lib
        from esan.runtime.core import plugin_spec
    except ImportError as exc:
        raise UserError("a plugin bundle needs the DCN plugin library: pass --plugin-lib PATH") from exc
    try:
        return plugin_lib.find_library(plugin_spec.PLUGIN_LIBRARY_BASENAME)
    except FileNotFoundError as exc:
        raise UserError(f"a plugin bundle needs the DCN plugin library ({exc}); or pass --plugin-lib PATH") from exc


def build_engines(out: Path, args: argparse.Namespace, trt, gpu: GpuStatus) -> None:
    """Build and record one engine per graph; the manifest is rewritten only after all succeeded."""
    from esan.export.manifest_writer import read_manifest, write_manifest
    from esan.export.trt_build import EngineBuilder
    from esan.export.trt_profiles import is_dynamic
    from esan.runtime.core.bundle import GRAPH_NAMES, sha256_file
    from esan.runtime.core.fsutil import atomic_path

    manifest = read_manifest(out)
    if manifest.pop("engines", None) is not None:
        write_manifest(out, manifest)  # stale engines are forgotten before any .plan is replaced
    plugin = _plugin_library(args.plugin_lib) if manifest["dcn"] == "plugin" else None
    cache = args.timing_cache or out.with_name(out.name + ".timing-cache")
    builder = EngineBuilder(trt, manifest["precision"], args.workspace, cache, plugin)
    files = {}
    for i, name in enumerate(GRAPH_NAMES, 1):
        t0 = time.perf_counter()
        graph = manifest["graphs"][name]
        with atomic_path(out / f"{name}.plan") as tmp:
            builder.build(out / graph["file"], graph["inputs"], tmp, args.max_streams)
        size = (out / f"{name}.plan").stat().st_size
        files[name] = {"file": f"{name}.plan", "sha256": sha256_file(out / f"{name}.plan")}
        print(f"[{i}/{len(GRAPH_NAMES)}] {name}: engine {size / 1e6:.1f} MB ({time.perf_counter() - t0:.1f} s)")
    builder.save_timing_cache()
    manifest["engines"] = {
        "tensorrt_version": str(trt.__version__),
        "gpu": gpu.name,
        "compute_capability": gpu.compute_capability,
        "strongly_typed": builder.strongly_typed,
        "plugin_library": str(plugin) if plugin else None,
        "max_batch": args.max_streams if is_dynamic(manifest) else 1,
        "files": files,
    }
    write_manifest(out, manifest)


def build(args: argparse.Namespace, prog: str = "to_trt.py") -> int:
    """Export (or reuse) the ONNX bundle, then build its engines; also ``esan-rt export --engines``.

    Returns 0, or ``EXIT_MISSING`` after one line on stderr when TensorRT or a GPU is missing;
    raises ``UserError`` on bad input.
    """
    if args.max_streams < 1:
        raise UserError(f"--max-streams must be >= 1, got {args.max_streams}")
    from esan.export.trt_build import INSTALL_HINT, gpu_info, import_tensorrt
    from esan.runtime.core.bundle import sha256_file

    ckpt = Path(args.checkpoint)
    if not ckpt.is_file():
        raise UserError(f"checkpoint {ckpt} does not exist")
    out = Path(args.out) if args.out else ckpt.with_suffix(".bundle")
    if _reusable(out, sha256_file(ckpt), args):
        print(f"using the existing ONNX bundle {out}")
    else:
        from esan.export.onnx_export import export_bundle

        export_bundle(ckpt, out, lookahead=args.lookahead, dcn=args.dcn, precision=args.precision,
                      opset=args.opset, calib=args.calib, calib_frames=args.calib_frames,
                      int8_flavour=args.int8_flavour)  # fmt: skip
        print(f"ONNX bundle written to {out}")
    trt = import_tensorrt()
    if trt is None:
        print(f"{prog}: TensorRT is not installed (import tensorrt failed): {INSTALL_HINT}; "
              f"the ONNX bundle is ready in {out}", file=sys.stderr)  # fmt: skip
        return EXIT_MISSING
    gpu = gpu_info()
    if not gpu.ok:
        print(f"{prog}: no usable NVIDIA GPU: {gpu.message} (TensorRT builds engines on the GPU that runs "
              f"them); the ONNX bundle is ready in {out}", file=sys.stderr)  # fmt: skip
        return EXIT_MISSING
    print(f"building TensorRT {trt.__version__} engines on {gpu.message}")
    build_engines(out, args, trt, gpu)
    print(f"engines written to {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return build(args)
    except UserError as exc:
        print(f"to_trt.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
