"""Handler of ``esan-rt serve``: write a Triton model repository for a bundle and run ``tritonserver`` on it.

Exit codes: 0 written (``--write-only``) or stopped with SIGTERM, 130 stopped with Ctrl-C, 2 a user error
(one line), 1 the server died on its own (the tail of its log is printed).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from esan.runtime.core.errors import UserError


class _Terminated(Exception):
    pass


def _log(msg: str) -> None:
    print(f"esan-rt serve: {msg}", file=sys.stderr, flush=True)


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


def default_repository(bundle_dir: Path, backend: str, device: str) -> Path:
    from esan.runtime.core.bundle import sha256_file
    from esan.runtime.core.cache_paths import cache_root

    key = sha256_file(bundle_dir / "manifest.json")[:16]
    return cache_root() / "triton" / f"{key}-{backend}-{device.replace(':', '')}"


def _options(args: argparse.Namespace, lookahead: int):
    from esan.runtime.serving.repository import ServeOptions

    return ServeOptions(backend=args.backend, device=args.device, lookahead=lookahead,
                        backward_chunk=args.backward_chunk, max_streams=args.max_streams,
                        max_frame_pixels=args.max_frame_pixels, idle_timeout_s=args.idle_timeout,
                        threads=args.threads, instances=args.instances)


def run(args: argparse.Namespace) -> int:
    """``esan-rt serve``."""
    from esan.runtime.cli.stream import check_bundle, resolve_bundle
    from esan.runtime.serving.launcher import Endpoints, TritonProcess
    from esan.runtime.serving.repository import write_repository
    from esan.runtime.serving.server import find_triton, install_server

    if args.install_server:
        install_server(log=_log)
        if args.checkpoint is None and args.bundle is None:
            return 0
    if args.backend == "torch":
        raise UserError("serve runs exported bundles: use --backend ort (CPU/CUDA) or trt (GPU)")
    ends = Endpoints(args.address, args.grpc_port, args.http_port, args.metrics_port)
    install = None if args.write_only else find_triton(args.tritonserver)  # refuse early, before any export
    if args.checkpoint is None and args.bundle is None:
        from esan.runtime.core.assets import DEMO_CHECKPOINT

        args.checkpoint = str(DEMO_CHECKPOINT)
        _log(f"no --checkpoint/--bundle given: serving the bundled tiny demo model {DEMO_CHECKPOINT.name}")
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise UserError(f"checkpoint {args.checkpoint} does not exist; check the path")
    from esan.runtime.backends.select import choose_backend

    choice = choose_backend(args.backend, args.device, bundle=args.bundle)  # resolves --backend/--device auto
    args.backend, args.device = choice.backend, choice.device
    _log(choice.line())
    lookahead = args.lookahead
    if lookahead is None:
        lookahead = 8 if args.bundle is None else _bundle_lookahead(args.bundle)
    bundle_dir = resolve_bundle(args.backend, checkpoint=args.checkpoint, bundle=args.bundle,
                                lookahead=lookahead, precision=args.precision or "fp32")
    check_bundle(bundle_dir, args.backend, lookahead)
    repo = Path(args.model_repository) if args.model_repository else default_repository(
        Path(bundle_dir), args.backend, args.device)
    model_dir = write_repository(bundle_dir, repo, _options(args, lookahead))
    _log(f"model repository: {repo} (model {model_dir.name}, bundle {bundle_dir})")
    if args.write_only:
        print(repo)
        return 0
    ends.check_free()
    server = TritonProcess(install, repo, ends, exit_timeout_s=args.exit_timeout_secs,
                           log_path=repo.parent / f"{repo.name}.tritonserver.log", verbose=args.verbose)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    code = 0
    try:
        server.start()
        server.wait_ready(args.start_timeout)
        print(f"esan-rt serve: ready: model esan on grpc {ends.grpc} (stream with esan-rt stream --server "
              f"{ends.grpc}), http {ends.http}, metrics {ends.metrics}; log {server.log_path}; Ctrl-C stops",
              flush=True)
        rc = server.proc.wait()
        _log(f"tritonserver exited on its own ({rc}); its log says:\n{server.log_tail()}")
        code = 1
    except _Terminated:
        _log("SIGTERM: stopping")
    except KeyboardInterrupt:
        _log("Ctrl-C: stopping")
        code = 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    _log("stopped")
    return code


def _bundle_lookahead(bundle: str) -> int:
    from esan.runtime.core.bundle import load_bundle

    if not (Path(bundle) / "manifest.json").is_file():
        raise UserError(f"{bundle} is not a bundle (no manifest.json); export one with `esan-rt export CKPT --out DIR`")
    return load_bundle(bundle, verify_hashes=False).lookahead
