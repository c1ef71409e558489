"""The Triton installer pins its wheel by hash and never writes into the install it found (maybe site-packages)."""

from __future__ import annotations

import sys

from esan.runtime.serving import server


def test_install_command_requires_the_pinned_hashes(tmp_path):
    cmd = server.install_command(tmp_path)
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert {"--require-hashes", "--isolated", "--no-deps", "--only-binary=:all:"} <= set(cmd)
    req = (tmp_path / "requirements.txt").read_text().split()
    assert req[0] == server.PYTRITON and len(req) == 1 + len(server.PYTRITON_SHA256)
    assert all(r.startswith("--hash=sha256:") and len(r) == len("--hash=sha256:") + 64 for r in req[1:])
    assert cmd[cmd.index("--target") + 1] == str(tmp_path / "site")


def test_a_found_install_is_left_untouched(tmp_path, monkeypatch):
    """nvidia-pytriton in some site-packages: the backend copy goes under $ESAN_TRITON_DIR, not beside it."""
    monkeypatch.setenv("ESAN_TRITON_DIR", str(tmp_path / "ours"))
    site = tmp_path / "site-packages"
    dist = site / "pytriton" / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for f in ("bin/tritonserver", f"python_backend_stubs/{version}/triton_python_backend_stub",
              "backends/python/libtriton_python.so"):
        (dist / f).parent.mkdir(parents=True, exist_ok=True)
        (dist / f).write_bytes(b"x")
    before = sorted(p.relative_to(site) for p in site.rglob("*"))
    install = server._from_pytriton(site)
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before
    assert install.backends.is_relative_to(tmp_path / "ours")
    assert (install.backends / "python" / "triton_python_backend_stub").is_file()
    assert (install.backends / "python" / "libtriton_python.so").is_file()
    assert server._from_pytriton(site).backends == install.backends  # found again, not copied again
