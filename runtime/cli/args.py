"""Argument definitions of the ``esan-rt`` subcommands (torch-free; handlers live elsewhere).

Each subcommand: one ``_<name>_args`` function and one ``COMMANDS.register`` call.
"""

from __future__ import annotations

import argparse

from esan.runtime.backends import AUTO, KINDS
from esan.runtime.cli.commands import COMMANDS


# -- stream / demo (handlers: esan.runtime.cli.stream, esan.runtime.cli.demo) ---------------------------
class _AddInput(argparse.Action):
    """``--camera`` and ``--source`` append ``(kind, value)`` to one list, in the order given (stream i = item i)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: object,
                 option_string: str | None = None) -> None:  # fmt: skip
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), (self.const, value)])


def _stream_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", dest="inputs", action=_AddInput, const="camera", type=int, metavar="N",
                   help="camera index (cv2.VideoCapture); repeat --camera/--source for several streams")
    p.add_argument("--source", dest="inputs", action=_AddInput, const="source", metavar="PATH|URL|DIR",
                   help="video file, RTSP/HTTP URL (live) or folder of frames (sorted by name); stream i is "
                        "the i-th --source/--camera given (0-based)")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--checkpoint", metavar="CKPT",
                       help="esan-rt checkpoint (.pt); ort/trt export it to a cached bundle on first use "
                            "(default: the bundled tiny demo model, trained on synthetic data)")
    model.add_argument("--bundle", metavar="DIR", help="exported bundle directory (esan-rt export)")
    p.add_argument("--backend", choices=(AUTO, *KINDS), default="auto",
                   help="inference backend (default: auto = TensorRT with a GPU, else ONNX Runtime on CUDA, "
                        "else ONNX Runtime on the CPU; the choice and why are printed and reported)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads of the inference library (ONNX Runtime intra-op, torch); default: ONNX Runtime "
                        "the cores this process may use (affinity, container quota), torch its own. 1 leaves the "
                        "other cores to capture and output threads")
    p.add_argument("--lookahead", type=int, default=8, metavar="L",
                   help="future frames the backward pass sees; delay = L + T frames (default: 8)")
    p.add_argument("--backward-chunk", type=int, default=1, metavar="C",
                   help="approximation: C frames share one backward run (default: 1 = exact)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default=None,
                   help="fp32, fp16 or int8 (default: the bundle's, fp32 for a checkpoint; a checkpoint is exported "
                        "in int8 with the generated sample clip as calibration: export your own with --calib)")
    p.add_argument("--show", action="store_true",
                   help="show the overlay in a window, streams tiled (q/Esc quit, space pauses, o toggles the overlay)")
    _view_args(p)
    p.add_argument("--save-video", metavar="OUT.mp4",
                   help="write the overlay video (mp4v, source fps); several streams: put {stream} in the path")
    p.add_argument("--save-maps", metavar="DIR",
                   help="write one saliency map per frame (000000.npy, ...); several streams: DIR/<i>/")
    p.add_argument("--maps-format", choices=("npy", "png"), default="npy",
                   help="npy: float32 at model output size; png: 8-bit at the frame size (default: npy)")
    p.add_argument("--report", metavar="report.json",
                   help="write fps, latency percentiles, delay, drops (several streams: aggregate + per stream)")
    p.add_argument("--plot", metavar="latency.png",
                   help="latency plot (needs matplotlib); several streams: put {stream} in the path")
    p.add_argument("--realtime", action="store_true",
                   help="pace a file at its fps and drop the oldest frames when behind (live simulation)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop each stream after N frames (then flush)")
    p.add_argument("--server", action="append", metavar="HOST:PORT",
                   help="compute on an esan-rt serve / Triton server (its gRPC port); repeat to shard streams")
    p.add_argument("--tls-ca", metavar="PEM", help="with --server: connect over TLS, checking the server's "
                   "certificate against this CA (esan-rt serve --tls-cert)")
    p.add_argument("--tls-cert", metavar="PEM", help="with --server: this client's certificate (mutual TLS)")
    p.add_argument("--tls-key", metavar="PEM", help="with --server: the private key of --tls-cert")
    p.add_argument("--queue-size", type=int, default=4, metavar="N",
                   help="capture queue length; live sources drop the oldest frame when full (default: 4)")
    p.add_argument("--max-batch-wait-ms", type=float, default=0.0, metavar="MS",
                   help="let a round wait up to MS ms for more streams to have a frame (bigger batches, "
                        "more latency; default: 0 = never wait)")
    from esan.runtime.cli.always_args import add_always_args

    add_always_args(p)
    p.epilog = ("--checkpoint with ort/trt exports once into $ESAN_CACHE_DIR (default ~/.cache/esan-rt/bundles). "
                "Exit codes: 0 done (every source ended, q, or SIGTERM), 1 a source failed for good (reconnect "
                "off or attempts used up), 2 usage or input error, 130 Ctrl-C (outputs are still flushed and "
                "written).")


def _view_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--view-port", type=int, metavar="PORT",
                   help="serve a live page of the overlays on http://127.0.0.1:PORT/ (0: any free port); "
                        "from another machine: ssh -L PORT:127.0.0.1:PORT this-host")
    p.add_argument("--view-address", default="127.0.0.1", metavar="ADDR",
                   help="address the live page listens on (default: 127.0.0.1, this machine only; "
                        "0.0.0.0 exposes it to the network, without any password)")
    p.add_argument("--view-allow-host", action="append", metavar="NAME",
                   help="a Host name the live page also answers (e.g. a reverse proxy's name; repeatable); "
                        "others get 403, against DNS rebinding (the bound address, localhost and loopback always work)")


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", metavar="PATH", help="video or folder to use instead of a generated sample clip")
    p.add_argument("--out", default="./esan-demo", metavar="DIR", help="output folder (default: ./esan-demo)")
    p.add_argument("--frames", type=int, default=120, metavar="N", help="frames to generate / process (default: 120)")
    p.add_argument("--lookahead", type=int, default=8, metavar="L", help="lookahead (default: 8)")
    p.add_argument("--show", action="store_true",
                   help="also show it in a window, at the clip's frame rate (q/Esc quit, space pauses, o overlay)")
    _view_args(p)
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)  # advanced: another checkpoint than the shipped one


COMMANDS.register("stream", "Stream saliency maps from a camera, video, URL or folder of frames.",
                  "esan.runtime.cli.stream:run", _stream_args)
COMMANDS.register("demo", "Run the bundled tiny model on a generated clip and write video, maps, report, plot.",
                  "esan.runtime.cli.demo:run", _demo_args)


# -- serve (handler: esan.runtime.cli.serve; options: esan.runtime.cli.serve_args) ------------------------
def _serve_args(p: argparse.ArgumentParser) -> None:
    from esan.runtime.cli.serve_args import add_serve_args

    add_serve_args(p)


COMMANDS.register("serve", "Serve the model on NVIDIA Triton Inference Server (stateful streams over gRPC).",
                  "esan.runtime.cli.serve:run", _serve_args)


# -- compare (handler: esan.export.compare; needs torch (train extra) and Polygraphy) ----------------
def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory (esan-rt export)")
    p.add_argument("--checkpoint", required=True, metavar="CKPT", help="the checkpoint the bundle was exported from")
    p.add_argument("--backends", default="ort,trt", help="comma-separated backends: ort, trt (default: ort,trt)")
    p.add_argument("--e2e-frames", type=int, default=24, metavar="N",
                   help="end to end: stream N sample-clip frames through the bundle (ONNX Runtime CPU) and the "
                        "checkpoint (PyTorch fp32) and compare the maps (default 24; 0: per graph only)")


COMMANDS.register("compare", "Run every bundle graph on ONNX Runtime / TensorRT against PyTorch, then stream the "
                  "whole bundle against the checkpoint; print the errors.",
                  "esan.export.compare:run", _compare_args)


# -- bench (handler: esan.bench.command; options: esan.runtime.cli.bench_args) ----------------------------
def _bench_args(p: argparse.ArgumentParser) -> None:
    from esan.runtime.cli.bench_args import add_bench_args

    add_bench_args(p)


COMMANDS.register("bench", "Latency benchmark: naive vs cached streaming schedule, side by side.",
                  "esan.bench.command:run", _bench_args)


# -- build-plugin (handler and options: esan.runtime.cli.build_plugin) -----------------------------------
def _build_plugin_args(p: argparse.ArgumentParser) -> None:
    from esan.runtime.cli.build_plugin import add_args

    add_args(p)


COMMANDS.register(
    "build-plugin", "Build the DCN kernel library (and TensorRT plugin) with CMake, where esan-rt finds it.",
    "esan.runtime.cli.build_plugin:run", _build_plugin_args,
)


# -- export (handler and options: esan.export.command; running it needs the train extra) ------------------
def _export_args(p: argparse.ArgumentParser) -> None:
    from esan.export.command import add_args

    add_args(p)


COMMANDS.register(
    "export", "Export a checkpoint to an ONNX bundle; with --engines also TensorRT engines (needs the train extra).",
    "esan.export.command:run", _export_args,
)
