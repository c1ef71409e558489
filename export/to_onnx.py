"""Export an ESAN checkpoint to a split ONNX bundle.

    python export/to_onnx.py CKPT --out BUNDLE_DIR [--lookahead 8] [--dcn standard|plugin]
                             [--precision fp32|fp16|int8] [--opset 19] [--no-verify]
                             [--calib VIDEO|DIR|URL] [--calib-frames N] [--int8-flavour ort|tensorrt]

Also importable as ``esan.export.to_onnx`` (``main(argv)``); installed as ``esan-rt export CKPT --out DIR``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from esan.runtime.core.errors import UserError


def add_export_args(p: argparse.ArgumentParser) -> None:
    """Options shared by ``to_onnx.py`` and ``to_trt.py`` (without ``--out``)."""
    p.add_argument("checkpoint", help="esan-rt checkpoint (.pt)")
    p.add_argument("--lookahead", type=int, default=8, help="L of the unrolled bwd_window graph (default 8)")
    p.add_argument("--dcn", choices=("standard", "plugin"), default="standard",
                   help="standard: ONNX DeformConv (ORT, TensorRT built-in); plugin: our TensorRT plugin node")
    p.add_argument("--opset", type=int, default=19, help="ONNX opset (>= 19)")


def add_int8_args(p: argparse.ArgumentParser, default_flavour: str) -> None:
    """INT8 calibration options (``to_onnx.py``, ``to_trt.py`` and the installed export command)."""
    g = p.add_argument_group("int8 (with --precision int8)")
    g.add_argument("--calib", metavar="VIDEO|DIR|URL", default=None,
                   help="real footage to calibrate on (default: the generated sample clip, with a warning)")
    g.add_argument("--calib-frames", type=int, default=240, metavar="N",
                   help="calibration frames, taken as runs of consecutive frames spread over the source (default 240)")
    g.add_argument("--int8-flavour", choices=("ort", "tensorrt"), default=default_flavour, metavar="{ort,tensorrt}",
                   help=f"ort: uint8 activations for ONNX Runtime on CPUs; tensorrt: symmetric int8 for TensorRT "
                        f"(default {default_flavour})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="to_onnx.py", description="Export an ESAN checkpoint to a split ONNX bundle.")
    add_export_args(p)
    p.add_argument("--out", required=True, help="bundle directory to create or replace")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32",
                   help="int8: post-training static quantization (ONNX Runtime's tool) calibrated on --calib")
    add_int8_args(p, default_flavour="ort")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument("--batch", choices=("dynamic", "1"), default="dynamic",
                   help="dynamic (default): one call serves many streams; 1: static batch-1 graphs (format 1 "
                        "bundle, for esan-rt versions before the batch axis)")
    return p


def export(args: argparse.Namespace) -> int:
    """Write the bundle the parsed options describe (``UserError`` on bad input); also ``esan-rt export``."""
    from esan.export.onnx_export import export_bundle

    t0 = time.perf_counter()
    out = export_bundle(
        args.checkpoint, args.out, lookahead=args.lookahead, dcn=args.dcn, precision=args.precision,
        opset=args.opset, verify=not args.no_verify, batch="dynamic" if args.batch == "dynamic" else 1,
        calib=args.calib, calib_frames=args.calib_frames, int8_flavour=args.int8_flavour,
    )  # fmt: skip
    print(f"bundle written to {out} in {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return export(args)
    except UserError as exc:
        print(f"to_onnx.py: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
