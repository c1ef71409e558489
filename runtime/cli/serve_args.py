"""Options of ``esan-rt serve`` (torch-free)."""

from __future__ import annotations

import argparse

EPILOG = ("Needs a Triton server: `esan-rt serve --install-server` puts nvidia-pytriton's tritonserver (Python "
          "backend, CPU) in its own folder, or pass --tritonserver PATH; clients need pip install 'esan-rt[serve]' "
          "(tritonclient). --write-only writes the repository for any Triton server, e.g. NVIDIA's container "
          "(README, Serving). Exit codes: 0 written / stopped by SIGTERM, 130 Ctrl-C, 2 usage error, "
          "1 the server died.")


def add_serve_args(p: argparse.ArgumentParser) -> None:
    model = p.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", metavar="CKPT", help="checkpoint to export and serve (default: the bundled "
                       "tiny demo model)")
    model.add_argument("--bundle", metavar="DIR", help="exported bundle directory to serve")
    p.add_argument("--model-repository", metavar="DIR",
                   help="where to write the Triton model repository (default: under the bundle cache)")
    p.add_argument("--write-only", action="store_true", help="write the repository, print its path and stop")
    p.add_argument("--install-server", action="store_true",
                   help="install tritonserver (nvidia-pytriton) into its own folder first, then go on")
    p.add_argument("--tritonserver", metavar="PATH", help="a tritonserver binary or install (default: the one "
                   "--install-server put in $ESAN_TRITON_DIR, else nvidia-pytriton in this Python)")
    p.add_argument("--backend", choices=("auto", "ort", "trt"), default="auto",
                   help="engines (default: auto = TensorRT with a GPU, else ONNX Runtime on CUDA, else on the CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (GPU instances) (default: auto)")
    p.add_argument("--lookahead", type=int, metavar="L", help="default: the bundle's (8 for a checkpoint)")
    p.add_argument("--backward-chunk", type=int, default=1, metavar="C", help="approximation (default: 1 = exact)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default=None, help="default: the bundle's")
    p.add_argument("--address", default="127.0.0.1",
                   help="address the server binds (default: 127.0.0.1; 0.0.0.0 serves every interface)")
    p.add_argument("--grpc-port", type=int, default=8001, help="default: 8001 (clients: --server HOST:PORT)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve gRPC over TLS with this certificate (with --tls-key); "
                   "clients then pass --tls-ca. Triton's HTTP port, which has no TLS, stays on 127.0.0.1")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--tls-client-ca", metavar="PEM", help="also require client certificates signed by this CA "
                   "(mutual TLS; clients pass --tls-cert/--tls-key)")
    p.add_argument("--http-port", type=int, default=8000, help="default: 8000")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics (default: 8002)")
    p.add_argument("--max-streams", type=int, default=16, metavar="N",
                   help="streams per model instance; stream N+1 is refused with a clear error (default: 16)")
    p.add_argument("--max-frame-pixels", type=int, default=7680 * 4320, metavar="N",
                   help="larger frames are refused, for that request only (default: 8K)")
    p.add_argument("--idle-timeout", type=float, default=30.0, metavar="S",
                   help="a stream that sends nothing for S seconds is freed (default: 30)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU intra-op threads per instance (default: the usable cores)")
    p.add_argument("--instances", type=int, default=1, metavar="N", help="model instances (default: 1)")
    p.add_argument("--exit-timeout-secs", type=int, default=3, metavar="S",
                   help="how long a stopping server waits for requests in flight (default: 3)")
    p.add_argument("--start-timeout", type=float, default=120.0, metavar="S", help="default: 120")
    p.add_argument("--verbose", action="store_true", help="verbose server log")
    p.epilog = EPILOG
