"""Options of ``esan-rt bench`` / ``benchmarks/latency.py`` (torch-free, shared by both entry points)."""

from __future__ import annotations

import argparse

from esan.runtime.backends import AUTO, KINDS


def add_bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=("paper", "tiny"), default="paper",
                   help="network size (default: paper); ignored with --checkpoint (its config is used)")
    p.add_argument("--checkpoint", metavar="CKPT", help="esan-rt checkpoint (default: seeded random weights)")
    p.add_argument("--backend", choices=(AUTO, *KINDS), default="auto",
                   help="default: auto = trt with a GPU, else ort on CUDA, else ort on the CPU (printed and reported)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto")
    p.add_argument("--precision", default="fp32", metavar="P[,P...]",
                   help="fp32 (default), fp16, or a comma list of fp32, fp16, int8 (e.g. fp32,int8): the cached "
                        "schedule in each precision side by side in one run, speed-ups over the first (with int8, "
                        "a list or alone, only this comparison runs: there are no naive int8 graphs)")
    p.add_argument("--calib", metavar="VIDEO|DIR|URL",
                   help="int8: footage to calibrate on (default: the generated sample clip; real footage is better)")
    p.add_argument("--calib-frames", type=int, default=240, metavar="N", help="int8: calibration frames (default 240)")
    p.add_argument("--lookahead", type=int, default=8, metavar="L", help="default: 8")
    p.add_argument("--backward-chunk", type=int, default=1, metavar="C",
                   help="cached schedule only (approximation); the naive schedule is always exact (default: 1)")
    p.add_argument("--frames", type=int, default=16, metavar="N",
                   help="measured frames per schedule, rounded up to a multiple of C (default: 16)")
    p.add_argument("--warmup", type=int, default=2, metavar="W",
                   help="unmeasured frames after the pipeline is full (default: 2); the L+T fill frames are "
                        "always unmeasured too")
    p.add_argument("--out", default="./esan-bench", metavar="DIR", help="output folder (default: ./esan-bench)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="intra-op threads (default: ONNX Runtime the usable cores, torch its own)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="torch + cuda: capture the cached per-frame step as a CUDA graph")
    p.add_argument("--channels-last", action="store_true", help="torch: channels_last memory format (cached)")
    p.add_argument("--naive-fast-paths", action="store_true",
                   help="torch: give the naive schedule the same --cuda-graph/--channels-last fast paths")
    p.add_argument("--bundle-cache", metavar="DIR",
                   help="where the ort/trt benchmark exports (and reuses) its graphs (default: OUT/bundles)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and frames (default: 0)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--streams", metavar="N,N,...",
                   help="also measure, per stream count N (e.g. 1,2,4,8), the batched multi-stream scheduler vs "
                        "N independent single-stream processors on the same frames (--frames rounds each)")
    serve = p.add_argument_group("through a Triton server (esan-rt serve)")
    serve.add_argument("--server", action="append", metavar="HOST:PORT",
                       help="load-generate against this server's gRPC port instead, --streams counts (default "
                            "1,2,4,8); repeat to shard streams")
    serve.add_argument("--bundle", metavar="DIR", help="the bundle the server runs, for the in-process figures")
    serve.add_argument("--source", metavar="PATH", help="video or folder to replay (default: the generated demo clip)")
