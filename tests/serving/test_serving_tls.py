"""``esan-rt serve --tls-cert/--tls-key --tls-client-ca`` and ``esan-rt stream --tls-ca``: a real tritonserver
with certificates made here; model control off on a network bind; only ``esan`` loaded; warning lines."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import numpy as np
import pytest
from conftest import make_clip
from support.serving_helpers import Server, require_triton, start_server

from esan.runtime.core.errors import UserError
from esan.runtime.serving.security import ServerTLS, exposure_warning, http_address, server_flags


def _pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    out: dict[str, Path] = {}

    def write(name: str, key, cert) -> None:
        out[f"{name}.key"] = folder / f"{name}.key"
        out[f"{name}.key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        out[f"{name}.pem"] = folder / f"{name}.pem"
        out[f"{name}.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def cert(subject: str, key, issuer, issuer_key, *, ca: bool, san=None):
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "esan test CA")])
    write("ca", ca_key, cert("esan test CA", ca_key, ca_name, ca_key, ca=True))
    for name in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        write(name, key, cert(name, key, ca_name, ca_key, ca=False, san=san if name == "server" else None))
    return out


def test_flags_for_loopback_and_network_binds(tmp_path) -> None:
    pki = _pki(tmp_path)
    tls = ServerTLS.from_args(str(pki["server.pem"]), str(pki["server.key"]), str(pki["ca.pem"]))
    local = server_flags("127.0.0.1", None)
    assert local == ["--model-control-mode=explicit", "--load-model=esan"]
    net = server_flags("0.0.0.0", tls)
    assert "--grpc-use-ssl-mutual=true" in net and f"--grpc-root-cert={pki['ca.pem']}" in net
    restricted = [f for f in net if "restricted" in f]
    assert len(restricted) == 2 and all("shared-memory,model-repository,logging,trace:esan-restricted=" in f
                                        for f in restricted)
    assert http_address("0.0.0.0", tls) == "127.0.0.1" and http_address("0.0.0.0", None) == "0.0.0.0"
    assert "without TLS" in exposure_warning("0.0.0.0", None)
    assert exposure_warning("0.0.0.0", tls) is None and exposure_warning("::1", None) is None
    with pytest.raises(UserError, match="needs both --tls-cert"):
        ServerTLS.from_args(str(pki["server.pem"]), None, None)
    with pytest.raises(UserError, match="--tls-key .*: cannot read it"):
        ServerTLS.from_args(str(pki["server.pem"]), str(tmp_path), None)  # a folder
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UserError, match="is not a PEM file"):
        ServerTLS.from_args(str(tmp_path / "x.txt"), str(pki["server.key"]), None)


@pytest.fixture(scope="module")
def tls_server(tiny_bundle, tmp_path_factory):
    require_triton()
    folder = tmp_path_factory.mktemp("tls")
    pki = _pki(folder)
    repo = folder / "repo"
    (repo / "other").mkdir(parents=True)  # another model folder in the repository: never loaded
    (repo / "other" / "config.pbtxt").write_text('name: "other"\nbackend: "python"\n')
    srv = start_server(tiny_bundle, repo, "--address", "0.0.0.0", "--tls-cert", str(pki["server.pem"]),
                       "--tls-key", str(pki["server.key"]), "--tls-client-ca", str(pki["ca.pem"]))
    yield srv, pki
    assert srv.stop() == 0


def test_mutual_tls_stream_and_nothing_else(tls_server) -> None:
    import tritonclient.grpc as g
    from tritonclient.utils import InferenceServerException

    from esan.runtime.serving import client as C
    from esan.runtime.serving.security import ClientTLS

    srv, pki = tls_server
    srv: Server
    text = srv.log.read_text()
    assert "--tls-ca CA.pem" in text and "warning" not in text  # TLS on: no exposure warning
    try:
        C.configure_client_tls(ClientTLS.from_args(str(pki["ca.pem"]), str(pki["client.pem"]), str(pki["client.key"])))
        stream = C.RemoteStream(srv.grpc)
        clip = make_clip(4, (40, 60), seed=3)
        maps = [r for f in clip for r in stream.push(f)] + stream.finish()
        stream.close()
        assert sorted(r.index for r in maps) == [0, 1, 2, 3] and all(np.isfinite(r.saliency).all() for r in maps)
        admin = g.InferenceServerClient(srv.grpc, **C.CLIENT_TLS.client_kwargs())
        with pytest.raises(InferenceServerException, match="(?i)restricted|header|unavailable|permission"):
            admin.unload_model("esan")  # model control is off on a network bind
        assert not admin.is_model_ready("other")  # explicit mode: only esan was loaded
        admin.close()
        C.configure_client_tls(ClientTLS.from_args(str(pki["ca.pem"])))  # no client certificate
        with pytest.raises(C.ServerError, match="no Triton server answering"):
            C.connect(srv.grpc, timeout_s=5)
        C.configure_client_tls(None)  # plain gRPC against a TLS port
        with pytest.raises(C.ServerError, match="no Triton server answering"):
            C.connect(srv.grpc, timeout_s=5)
    finally:
        C.configure_client_tls(None)
