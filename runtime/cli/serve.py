"""Handler of ``esan-rt serve``: write a Triton model repository for a bundle and run ``tritonserver`` on it.

Exit codes: 0 written (``--write-only``) or stopped with SIGTERM, 130 stopped with Ctrl-C, 2 a user error
(one line), 1 the server died on its own (the tail of its log is printed). SIGINT and SIGTERM are handled
explicitly (``esan.runtime.io.signals``); a second one while Triton shuts down kills it at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from esan.runtime.core.errors import UserError
from esan.runtime.io.signals import Terminated, installed


def _log(msg: str) -> None:
    print(f"esan-rt serve: {msg}", file=sys.stderr, flush=True)


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
    from esan.runtime.serving.launcher import Endpoints, TritonProcess
    from esan.runtime.serving.repository import write_repository
    from esan.runtime.serving.server import find_triton, install_server

    if args.install_server:
        install_server(log=_log)
        if args.checkpoint is None and args.bundle is None:
            return 0
    if args.backend == "torch":
        raise UserError("serve runs exported bundles: use --backend ort (CPU/CUDA) or trt (GPU)")
    from esan.runtime.serving.security import ServerTLS, exposure_warning, http_address

    tls = ServerTLS.from_args(args.tls_cert, args.tls_key, args.tls_client_ca)
    ends = Endpoints(args.address, args.grpc_port, args.http_port, args.metrics_port,
                     http_address=http_address(args.address, tls))
    install = None if args.write_only else find_triton(args.tritonserver)  # refuse early, before any export
    if args.checkpoint is None and args.bundle is None:
        from esan.runtime.core.assets import DEMO_CHECKPOINT

        args.checkpoint = str(DEMO_CHECKPOINT)
        _log(f"no --checkpoint/--bundle given: serving the bundled tiny demo model {DEMO_CHECKPOINT.name}")
    from esan.runtime import session as rt

    plan = rt.prepare(args.checkpoint, bundle=args.bundle, backend=args.backend, device=args.device,
                      lookahead=args.lookahead, backward_chunk=args.backward_chunk, precision=args.precision,
                      threads=args.threads, max_streams=args.max_streams, log=_log)  # fmt: skip
    args.backend, args.device = plan.backend, plan.device
    _log(plan.choice.line())
    bundle = plan.bundle  # exported (or checked) once; the repository links this bundle's files
    repo = Path(args.model_repository) if args.model_repository else default_repository(
        bundle.root, args.backend, args.device)
    model_dir = write_repository(bundle, repo, _options(args, plan.lookahead))
    bundle_dir = bundle.root
    _log(f"model repository: {repo} (model {model_dir.name}, bundle {bundle_dir})")
    if args.write_only:
        print(repo)
        return 0
    ends.check_free()
    if (warning := exposure_warning(args.address, tls)) is not None:
        _log(warning)
    server = TritonProcess(install, repo, ends, exit_timeout_s=args.exit_timeout_secs,
                           log_path=repo.parent / f"{repo.name}.tritonserver.log", verbose=args.verbose, tls=tls)
    code = 0
    with installed():  # explicit SIGINT/SIGTERM handlers, also when not run through the CLI's main
        try:
            server.start()
            server.wait_ready(args.start_timeout)
            tls_hint = " --tls-ca CA.pem" if tls else ""
            print(f"esan-rt serve: ready: model esan on grpc {ends.grpc} (stream with esan-rt stream --server "
                  f"{ends.grpc}{tls_hint}), http {ends.http}, metrics {ends.metrics}; log {server.log_path}; "
                  "Ctrl-C stops", flush=True)
            rc = server.proc.wait()
            _log(f"tritonserver exited on its own ({rc}); its log says:\n{server.log_tail()}")
            code = 1
        except Terminated:
            _log("SIGTERM: stopping")
        except KeyboardInterrupt:
            _log("Ctrl-C: stopping")
            code = 130
        finally:
            _stop_server(server)
    _log("stopped")
    return code


def _stop_server(server) -> None:
    """Stop tritonserver gracefully; a second SIGINT/SIGTERM meanwhile kills it at once."""
    try:
        server.stop()
    except KeyboardInterrupt:
        _log("second signal: killing tritonserver now")
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
