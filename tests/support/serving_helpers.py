"""Real ``esan-rt serve`` processes on loopback for the serving tests (bounded in time, always stopped)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.proctools import preexec

READY_TIMEOUT_S = 90.0


def require_triton() -> None:
    """Skip without a Triton server or client; in CI (``CI`` set) that is a failure: .ci/run installs them."""
    pytest.importorskip("tritonclient.grpc", reason="pip install 'esan-rt[serve]'")
    from esan.runtime.core.errors import UserError
    from esan.runtime.serving.server import find_triton

    try:
        find_triton()
    except UserError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the serving tests: {exc}")
        pytest.skip(str(exc))


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Server:
    proc: subprocess.Popen
    grpc: str
    metrics_url: str
    log: Path

    def metric(self, name: str) -> float:
        """Sum of a metric over its series (e.g. ``esan_active_streams``)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            text = resp.read().decode()
        values = re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
        return sum(float(v) for v in values)

    def wait_metric(self, name: str, value: float, timeout_s: float = 15.0) -> float:
        deadline = time.monotonic() + timeout_s
        while True:
            got = self.metric(name)
            if got == value or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    def triton_pid(self) -> int:
        """The tritonserver child of the ``esan-rt serve`` process."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return int(children[0])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(bundle: Path, repo: Path, *extra: str, attempts: int = 3) -> Server:
    """``esan-rt serve --bundle`` on free loopback ports; returns once it printed its ready line.

    The ports are free when picked, but another process may take one before the server binds it (the machine
    is shared): a start that fails on a port in use is retried on fresh ports.
    """
    for attempt in range(attempts):
        server = _start_server(bundle, repo, *extra)
        if server.proc.poll() is None:
            return server
        text = server.log.read_text()
        if attempt + 1 == attempts or not re.search(r"address already in use|port .* in use", text, re.I):
            pytest.fail(f"esan-rt serve did not get ready:\n{text[-3000:]}")
    raise AssertionError("unreachable")


def _start_server(bundle: Path, repo: Path, *extra: str) -> Server:
    grpc, http, metrics = free_ports(3)
    cmd = [sys.executable, "-m", "esan.runtime.cli", "serve", "--bundle", str(bundle), "--model-repository",
           str(repo), "--grpc-port", str(grpc), "--http-port", str(http), "--metrics-port", str(metrics),
           "--threads", "1", "--exit-timeout-secs", "1", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = repo.parent / f"{repo.name}.serve.out"
    out = open(log, "w")  # noqa: SIM115 - the child writes it
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, text=True, preexec_fn=preexec())
    out.close()
    server = Server(proc, f"127.0.0.1:{grpc}", f"http://127.0.0.1:{metrics}/metrics", log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        text = log.read_text()
        if "esan-rt serve: ready:" in text:
            return server
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    server.stop()
    return server  # exited (or not ready in time, now stopped): start_server reads its log
