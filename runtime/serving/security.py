"""TLS and API restrictions for ``esan-rt serve`` (Triton's own flags) and TLS for its gRPC clients.

Server (``--tls-cert/--tls-key [--tls-client-ca]``): Triton's gRPC SSL (mutual with a client CA). Always:
``--model-control-mode=explicit --load-model=esan`` (only our model is loaded, whatever else the repository
holds). Bound to a non-loopback address: shared memory, model control, logging and tracing need a header
value nobody knows (``--grpc-restricted-protocol`` / ``--http-restricted-api``), i.e. they are off, and
with TLS Triton's HTTP endpoint (which has no TLS) stays on 127.0.0.1. Client (``--tls-ca [--tls-cert
--tls-key]``): ``configure_client_tls`` before ``client.connect``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from esan.runtime.core.errors import UserError
from esan.runtime.core.netguard import is_loopback
from esan.runtime.serving import protocol as P

RESTRICTED = "shared-memory,model-repository,logging,trace"


def _pem(path: str | Path | None, flag: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{flag} {p}: cannot read it ({getattr(exc, 'strerror', None) or exc}); "
                        "give a PEM file") from None
    if "-----BEGIN " not in text:
        raise UserError(f"{flag} {p} is not a PEM file (no -----BEGIN line); give a PEM certificate or key")
    return p.resolve()


@dataclass(frozen=True)
class ServerTLS:
    """PEM files of the server's certificate and key, and optionally a CA that client certificates must chain to."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @classmethod
    def from_args(cls, cert: str | None, key: str | None, client_ca: str | None) -> ServerTLS | None:
        if cert is None and key is None:
            if client_ca is not None:
                raise UserError("--tls-client-ca needs --tls-cert and --tls-key (the server's own certificate)")
            return None
        if cert is None or key is None:
            raise UserError("TLS needs both --tls-cert CERT.pem and --tls-key KEY.pem")
        return cls(_pem(cert, "--tls-cert"), _pem(key, "--tls-key"), _pem(client_ca, "--tls-client-ca"))

    def flags(self) -> list[str]:
        out = ["--grpc-use-ssl=true", f"--grpc-server-cert={self.cert}", f"--grpc-server-key={self.key}"]
        if self.client_ca is not None:
            out += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={self.client_ca}"]
        return out


def server_flags(address: str, tls: ServerTLS | None) -> list[str]:
    """Triton flags for a server bound to ``address``: only ``esan`` loaded; TLS; restricted APIs off the loopback."""
    flags = ["--model-control-mode=explicit", f"--load-model={P.MODEL_NAME}"]
    if tls is not None:
        flags += tls.flags()
    if not is_loopback(address):
        key = f"esan-restricted={secrets.token_hex(16)}"  # a value no client has: the APIs are off
        flags += [f"--grpc-restricted-protocol={RESTRICTED}:{key}", f"--http-restricted-api={RESTRICTED}:{key}"]
    return flags


def http_address(address: str, tls: ServerTLS | None) -> str:
    """Where Triton's HTTP endpoint listens: loopback when TLS guards gRPC (HTTP has no TLS in Triton)."""
    return "127.0.0.1" if tls is not None and not is_loopback(address) else address


def exposure_warning(address: str, tls: ServerTLS | None) -> str | None:
    """The warning line for a server reachable from the network without TLS (``None`` when there is none)."""
    if is_loopback(address) or tls is not None:
        return None
    return (f"warning: serving on {address}, reachable from the network without TLS: anyone who reaches the port "
            "can send frames; add --tls-cert/--tls-key (and --tls-client-ca), or keep 127.0.0.1 and use an SSH "
            "tunnel (README, Security)")


@dataclass(frozen=True)
class ClientTLS:
    """What a gRPC client checks the server with (``ca``) and shows it (``cert``/``key``, for mutual TLS)."""

    ca: Path | None
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def from_args(cls, ca: str | None, cert: str | None = None, key: str | None = None) -> ClientTLS | None:
        if ca is None and cert is None and key is None:
            return None
        if (cert is None) != (key is None):
            raise UserError("a client certificate needs both --tls-cert CERT.pem and --tls-key KEY.pem")
        return cls(_pem(ca, "--tls-ca"), _pem(cert, "--tls-cert"), _pem(key, "--tls-key"))

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments of ``tritonclient.grpc.InferenceServerClient``."""
        return {"ssl": True, "root_certificates": str(self.ca) if self.ca else None,
                "private_key": str(self.key) if self.key else None,
                "certificate_chain": str(self.cert) if self.cert else None}
