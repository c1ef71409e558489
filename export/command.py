"""``esan-rt export``: the installed form of ``export/to_onnx.py`` and (``--engines``) ``export/to_trt.py``.

    esan-rt export CKPT --out DIR [--lookahead 8] [--dcn standard|plugin] [--precision fp32|fp16]
                       [--opset 19] [--no-verify] [--batch dynamic|1]
    esan-rt export CKPT --engines [--out DIR] [--precision fp16|fp32] [--lookahead L] [--dcn ...]
                       [--plugin-lib PATH] [--workspace MB] [--timing-cache PATH] [--max-streams N]

Defining the options imports neither torch nor onnx (``esan-rt --help`` works on the base install);
running without them is one line naming the ``train`` extra.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from esan.export.to_onnx import add_export_args, add_int8_args
from esan.export.trt_profiles import DEFAULT_MAX_STREAMS
from esan.runtime.core.errors import UserError

TRAIN_EXTRA_HINT = "pip install 'esan-rt[train]'"
# option -> its value when not given; an option of one mode given in the other is refused
_ONNX_ONLY = {"no_verify": False, "batch": "dynamic"}
_ENGINE_ONLY = {"plugin_lib": None, "workspace": None, "timing_cache": None, "max_streams": None}


def add_args(p: argparse.ArgumentParser) -> None:
    add_export_args(p)
    p.add_argument("--out", metavar="DIR",
                   help="bundle directory to create or replace (required without --engines; with --engines "
                        "default: CKPT without suffix + '.bundle')")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                   help="fp32, fp16 or int8 (calibrated, see --calib) (default: fp32; fp16 with --engines)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument("--batch", choices=("dynamic", "1"), default="dynamic",
                   help="dynamic (default): one call serves many streams; 1: static batch-1 graphs (format 1)")
    add_int8_args(p, default_flavour="ort, tensorrt with --engines")
    trt = p.add_argument_group("TensorRT engines", "--engines also builds one TensorRT engine per graph "
                                                   "(exit code 3, ONNX bundle kept, without TensorRT or a GPU)")
    trt.add_argument("--engines", action="store_true", help="build TensorRT engines too (needs TensorRT and a GPU)")
    trt.add_argument("--plugin-lib", type=Path, metavar="PATH", help="our TensorRT DCN plugin library (dcn=plugin)")
    trt.add_argument("--workspace", type=int, metavar="MB", help="builder workspace (default 4096)")
    trt.add_argument("--timing-cache", type=Path, metavar="PATH", help="timing cache (default: DIR.timing-cache)")
    trt.add_argument("--max-streams", type=int, metavar="N",
                     help=f"largest batch (streams per engine call) the engines serve (default {DEFAULT_MAX_STREAMS})")


def _given(args: argparse.Namespace, defaults: dict[str, object]) -> list[str]:
    return ["--" + k.replace("_", "-") for k, v in defaults.items() if getattr(args, k) != v]


def check_train_extra() -> None:
    """Refuse in one line when torch or onnx (the ``train`` extra) is not installed."""
    missing = [m for m in ("torch", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(f"esan-rt export needs {' and '.join(missing)} (not installed): {TRAIN_EXTRA_HINT}")


def run(args: argparse.Namespace) -> int:
    """``esan-rt export``."""
    if args.engines:
        wrong = _given(args, _ONNX_ONLY)
        if wrong:
            raise UserError(f"{', '.join(wrong)} only apply without --engines")
    else:
        wrong = _given(args, _ENGINE_ONLY)
        if wrong:
            raise UserError(f"{', '.join(wrong)} only apply with --engines")
        if not args.out:
            raise UserError("--out DIR is required (the bundle directory to write)")
    if not Path(args.checkpoint).is_file():
        raise UserError(f"checkpoint {args.checkpoint} does not exist")
    check_train_extra()
    if args.int8_flavour not in ("ort", "tensorrt"):  # not given: the flavour of the target
        args.int8_flavour = "tensorrt" if args.engines else "ort"
    if not args.engines:
        from esan.export.to_onnx import export

        args.precision = args.precision or "fp32"
        return export(args)
    from esan.export.to_trt import build

    args.precision = args.precision or "fp16"
    args.workspace = 4096 if args.workspace is None else args.workspace
    args.max_streams = DEFAULT_MAX_STREAMS if args.max_streams is None else args.max_streams
    return build(args, prog="esan-rt export")
