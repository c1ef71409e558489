"""Run ``tritonserver`` on a model repository: port checks, readiness, a clean stop, and its log."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from esan.runtime.core.errors import UserError
from esan.runtime.serving import protocol as P
from esan.runtime.serving.security import ServerTLS, server_flags
from esan.runtime.serving.server import TritonInstall


@dataclass(frozen=True)
class Endpoints:
    address: str = "127.0.0.1"
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    http_address: str | None = None  # Triton's HTTP endpoint, when not on ``address`` (security.http_address)

    def check_free(self) -> None:
        for flag, port, address in (("--grpc-port", self.grpc_port, self.address),
                                    ("--http-port", self.http_port, self.http_address or self.address),
                                    ("--metrics-port", self.metrics_port, self.address)):
            if not 0 < port < 65536:
                raise UserError(f"{flag} must be a port number (1-65535), got {port}")
            with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no conflict
                try:
                    s.bind((address, port))
                except OSError as exc:
                    raise UserError(f"cannot listen on {address}:{port} ({exc.strerror or exc}): "
                                    f"another server there? pass another {flag} or --address") from None

    @property
    def grpc(self) -> str:
        return f"{self.address}:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://{self.http_address or self.address}:{self.http_port}"

    @property
    def metrics(self) -> str:
        return f"http://{self.address}:{self.metrics_port}/metrics"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TritonProcess:
    """One ``tritonserver`` child (its own process group; it gets SIGTERM if this process dies)."""

    def __init__(self, install: TritonInstall, repo: Path, ends: Endpoints, *, exit_timeout_s: int = 3,
                 log_path: Path, verbose: bool = False, tls: ServerTLS | None = None) -> None:  # fmt: skip
        self.install, self.repo, self.ends = install, Path(repo), ends
        self.tls = tls
        self.exit_timeout_s = exit_timeout_s
        self.log_path = Path(log_path)
        self.verbose = verbose
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        e = self.ends
        return [str(self.install.binary), f"--model-repository={self.repo}",
                f"--backend-directory={self.install.backends}",
                f"--http-address={e.http_address or e.address}", f"--grpc-address={e.address}",
                f"--metrics-address={e.address}",
                f"--http-port={e.http_port}", f"--grpc-port={e.grpc_port}", f"--metrics-port={e.metrics_port}",
                "--allow-metrics=true", "--allow-gpu-metrics=false", "--disable-auto-complete-config",
                f"--exit-timeout-secs={self.exit_timeout_s}", f"--log-verbose={1 if self.verbose else 0}",
                *server_flags(e.address, self.tls)]

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child writes it for its whole life
        try:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.install.env(),
                                         start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as exc:
            raise UserError(f"cannot start {self.install.binary}: {exc.strerror or exc}") from exc
        finally:
            log.close()

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        keep = [ln for ln in text if " E" in ln[:2] or "error" in ln.lower()] or text
        return "\n".join(keep[-lines:])

    def ready(self) -> bool:
        url = f"{self.ends.http}/v2/models/{P.MODEL_NAME}/ready"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise UserError(f"tritonserver exited ({code}) before the model was ready; its log "
                                f"{self.log_path} says:\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.2)
        self.stop()
        raise UserError(f"model {P.MODEL_NAME} not ready after {timeout_s:g} s (see {self.log_path}); "
                        "raise --start-timeout")

    def stop(self) -> int | None:
        """SIGTERM, wait for Triton's exit timeout (+ slack), then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
