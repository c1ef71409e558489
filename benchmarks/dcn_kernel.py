"""GPU parity and timing of the ESAN DCNv2 CUDA launcher against torchvision and a plain convolution.

Usage (after ``cmake -S plugins -B build && cmake --build build -j2``)::

    python benchmarks/dcn_kernel.py [--lib-dir build] [--iters 50]

Prints one table row per paper shape and dtype. Without a CUDA device it prints a SKIP line and exits 0.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import types
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# (N, C, Cout, H, W), 3x3 kernel, padding 1, 8 deformable groups.
PAPER_SHAPES = ((5, 512, 512, 32, 40), (5, 512, 512, 16, 20), (5, 512, 512, 8, 10))


def import_plugin_lib() -> types.ModuleType:
    """``esan.runtime.backends.plugin_lib``, also when the package is not installed."""
    try:
        return importlib.import_module("esan.runtime.backends.plugin_lib")
    except ImportError:
        esan = sys.modules.setdefault("esan", types.ModuleType("esan"))
        esan.__path__ = []  # type: ignore[attr-defined]
        runtime = types.ModuleType("esan.runtime")
        runtime.__path__ = [str(REPO_ROOT / "runtime")]  # type: ignore[attr-defined]
        sys.modules["esan.runtime"] = runtime
        return importlib.import_module("esan.runtime.backends.plugin_lib")


def make_inputs(
    shape: tuple[int, ...],
    dtype,
    device: str = "cuda",
    *,
    kernel=(3, 3),
    stride=(1, 1),
    padding=(1, 1),
    dilation=(1, 1),
    groups: int = 1,
    dg: int = 8,
    bias: bool = True,
    offset_scale: float = 2.0,
    seed: int = 0,
) -> dict:
    """Random DCN inputs (torch tensors) plus the attributes, torchvision layouts."""
    import torch

    n, c, cout, h, w = shape
    kh, kw = kernel
    ho = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    gen = torch.Generator().manual_seed(seed)

    def rnd(*size: int, scale: float = 1.0):
        return (torch.randn(*size, generator=gen) * scale).to(device=device, dtype=dtype)

    return {
        "x": rnd(n, c, h, w),
        "offset": rnd(n, 2 * dg * kh * kw, ho, wo, scale=offset_scale),
        "mask": torch.rand(n, dg * kh * kw, ho, wo, generator=gen).to(device=device, dtype=dtype),
        "weight": rnd(cout, c // groups, kh, kw, scale=(c // groups * kh * kw) ** -0.5),
        "bias": rnd(cout) if bias else None,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "dg": dg,
    }


class EsanDcn:
    """Callable wrapper of ``esan_dcn_forward_cuda`` for torch CUDA tensors (workspace held by torch)."""

    def __init__(self, use_cublas: bool = True) -> None:
        self.pl = import_plugin_lib()
        self.handle = self.pl.create_cublas_handle() if use_cublas else None
        self._workspace = None

    def close(self) -> None:
        self.pl.destroy_cublas_handle(self.handle)
        self.handle = None

    def __call__(self, inp: dict):
        import torch

        x, weight = inp["x"], inp["weight"]
        params = self.pl.make_params(
            tuple(x.shape),
            tuple(weight.shape),
            inp["stride"],
            inp["padding"],
            inp["dilation"],
            inp["groups"],
            inp["dg"],
        )
        dtype = self.pl.FLOAT16 if x.dtype == torch.float16 else self.pl.FLOAT32
        nbytes = self.pl.workspace_size(params, dtype, self.handle is not None)
        if self._workspace is None or self._workspace.numel() < nbytes:
            self._workspace = torch.empty(nbytes, dtype=torch.uint8, device=x.device)
        out = torch.empty(params.batch, params.outChannels, params.outH, params.outW, dtype=x.dtype, device=x.device)
        tensors = [x, inp["offset"], inp["mask"], weight]
        if any(not t.is_contiguous() for t in tensors):
            raise ValueError("inputs must be contiguous")
        bias = inp["bias"]
        ptrs = [t.data_ptr() for t in tensors] + [bias.data_ptr() if bias is not None else None, out.data_ptr()]
        stream = torch.cuda.current_stream(x.device).cuda_stream
        self.pl.forward_cuda(params, dtype, ptrs, self._workspace.data_ptr(), nbytes, self.handle, stream)
        return out


def torchvision_dcn(inp: dict):
    """Reference: torchvision.ops.deform_conv2d on the same tensors."""
    from torchvision.ops import deform_conv2d

    return deform_conv2d(
        inp["x"],
        inp["offset"],
        inp["weight"],
        inp["bias"],
        stride=inp["stride"],
        padding=inp["padding"],
        dilation=inp["dilation"],
        mask=inp["mask"],
    )


def plain_conv(inp: dict):
    """Same-sized ordinary convolution (cuDNN), for scale."""
    import torch.nn.functional as F

    return F.conv2d(inp["x"], inp["weight"], inp["bias"], inp["stride"], inp["padding"], inp["dilation"], inp["groups"])


def time_ms(fn: Callable[[], object], iters: int = 50, warmup: int = 5) -> float:
    """Mean milliseconds per call, CUDA events."""
    import torch

    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def errors(out, ref) -> tuple[float, float]:
    """(max abs error, relative L2 error) in fp32."""
    diff = out.float() - ref.float()
    return float(diff.abs().max()), float(diff.norm() / ref.float().norm().clamp_min(1e-12))


def benchmark_rows(iters: int = 50) -> list[dict]:
    """Parity + timing rows for the paper shapes, fp32 and fp16."""
    import torch

    rows = []
    runners = {"cublas": EsanDcn(use_cublas=True), "builtin": EsanDcn(use_cublas=False)}
    try:
        for shape in PAPER_SHAPES:
            for dtype in (torch.float32, torch.float16):
                inp = make_inputs(shape, dtype)
                ref32 = torchvision_dcn({k: (v.float() if torch.is_tensor(v) else v) for k, v in inp.items()})
                row = {"shape": "x".join(map(str, shape)), "dtype": str(dtype).removeprefix("torch.")}
                for name, runner in runners.items():
                    if name == "cublas" and runner.handle is None:
                        continue
                    row[f"{name}_err"] = errors(runner(inp), ref32)
                    row[f"{name}_ms"] = time_ms(partial(runner, inp), iters)
                row["tv_err"] = errors(torchvision_dcn(inp), ref32)
                row["tv_ms"] = time_ms(partial(torchvision_dcn, inp), iters)
                row["conv_ms"] = time_ms(partial(plain_conv, inp), iters)
                rows.append(row)
    finally:
        for runner in runners.values():
            runner.close()
    return rows


def format_rows(rows: list[dict]) -> str:
    """Fixed-width table."""
    head = (
        f"{'shape N,C,Cout,H,W':<22}{'dtype':<9}{'esan cublas ms':>15}{'esan builtin ms':>16}"
        f"{'torchvision ms':>15}{'conv2d ms':>11}   max|err| / rel err (esan cublas, builtin, torchvision)"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        errs = "  ".join(
            f"{r[k][0]:.2e}/{r[k][1]:.1e}" if k in r else "n/a" for k in ("cublas_err", "builtin_err", "tv_err")
        )
        cub = f"{r['cublas_ms']:.3f}" if "cublas_ms" in r else "n/a"
        lines.append(
            f"{r['shape']:<22}{r['dtype']:<9}{cub:>15}{r['builtin_ms']:>16.3f}{r['tv_ms']:>15.3f}"
            f"{r['conv_ms']:>11.3f}   {errs}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lib-dir", help="folder with libesan_dcn_kernels (default: $ESAN_PLUGIN_DIR, build/)")
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("SKIP: torch is not installed")
        return 0
    if not torch.cuda.is_available():
        print("SKIP: no CUDA device (torch.cuda.is_available() is False)")
        return 0
    if args.lib_dir:
        os.environ["ESAN_PLUGIN_DIR"] = args.lib_dir
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print("errors are vs torchvision fp32 on the same (for fp16: fp16-rounded) inputs")
    print(format_rows(benchmark_rows(args.iters)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
