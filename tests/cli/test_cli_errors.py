"""``esan-rt stream`` refuses bad input with one clear line and a non-zero exit, before streaming."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from esan.runtime.cli import main

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; from esan.runtime.cli import main; sys.exit(main(sys.argv[1:]))"


pytestmark = pytest.mark.usefixtures("shared_cache")  # one bundle cache for the session, one thread


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"{i:03d}.png"), np.full((30, 40, 3), 40 * i, np.uint8))
    return d


def run_cli(capfd: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    err = capfd.readouterr().err
    return rc, err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("esan-rt: error:")]
    assert len(errors) == 1, err
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    return errors[0]


def test_no_camera_fails_fast(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    ckpt = tmp_path / "any.pt"
    ckpt.write_bytes(b"x")
    rc, err = run_cli(capfd, "stream", "--camera", "99", "--checkpoint", str(ckpt))
    assert rc == 2
    assert "camera 99" in one_error_line(err)


def test_missing_checkpoint(frames: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    rc, err = run_cli(capfd, "stream", "--source", str(frames), "--checkpoint", str(tmp_path / "nope.pt"))
    assert rc == 2 and "does not exist" in one_error_line(err)


@pytest.mark.parametrize("backend", ["torch", "ort"])
def test_corrupt_checkpoint(frames: Path, tmp_path: Path, capfd: pytest.CaptureFixture, backend: str) -> None:
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    rc, err = run_cli(capfd, "stream", "--source", str(frames), "--checkpoint", str(bad), "--backend", backend)
    assert rc == 2
    assert "not a readable checkpoint" in one_error_line(err)


@pytest.mark.parametrize("option", ["--report", "--save-video", "--plot", "--save-maps", "--save-maps-file"])
def test_unwritable_output_refused_before_the_source(tmp_path: Path, capfd, option: str) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("I am a file, not a directory")
    ckpt = tmp_path / "any.pt"
    ckpt.write_bytes(b"x")
    if option == "--save-maps-file":
        args = ["--save-maps", str(blocker)]
    else:
        args = [option, str(blocker / ("out" if option == "--save-maps" else "out.ext"))]
    # --camera 99 would fail too: the output check must come first
    rc, err = run_cli(capfd, "stream", "--camera", "99", "--checkpoint", str(ckpt), *args)
    line = one_error_line(err)
    assert rc == 2 and args[0] in line and "camera" not in line


def test_bundle_for_the_wrong_backend(frames: Path, l8_bundle: Path, tmp_path: Path, capfd) -> None:
    base = ["stream", "--source", str(frames), "--bundle", str(l8_bundle)]
    rc, err = run_cli(capfd, *base, "--backend", "trt", "--device", "cuda")
    assert rc == 2 and "no TensorRT engines" in one_error_line(err)
    rc, err = run_cli(capfd, *base, "--backend", "torch")
    assert rc == 2 and "--checkpoint" in one_error_line(err)
    rc, err = run_cli(capfd, *base, "--backend", "ort", "--precision", "fp16")
    assert rc == 2 and "fp32" in one_error_line(err)
    plugin = tmp_path / "plugin_bundle"
    shutil.copytree(l8_bundle, plugin)
    man = json.loads((plugin / "manifest.json").read_text())
    man["dcn"] = "plugin"
    (plugin / "manifest.json").write_text(json.dumps(man))
    rc, err = run_cli(capfd, "stream", "--source", str(frames), "--bundle", str(plugin), "--backend", "ort")
    assert rc == 2 and "plugin" in one_error_line(err)
    rc, err = run_cli(capfd, "stream", "--source", str(frames), "--bundle", str(tmp_path), "--backend", "ort")
    assert rc == 2 and "not a bundle" in one_error_line(err)


def test_bundle_with_another_lookahead_runs_with_a_note(frames: Path, l8_bundle: Path, capfd) -> None:
    rc, err = run_cli(capfd, "stream", "--source", str(frames), "--bundle", str(l8_bundle), "--lookahead", "3")
    assert rc == 0 and "built for lookahead 8" in err


def _blocked(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, *argv], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_help_without_torch() -> None:
    for argv in (["--help"], ["stream", "--help"], ["demo", "--help"]):
        proc = _blocked(*argv)
        assert proc.returncode == 0, proc.stderr
        assert "usage: esan-rt" in proc.stdout
    assert "--save-video" in _blocked("stream", "--help").stdout


def test_checkpoint_export_without_torch_is_one_clear_error(frames: Path, tiny_checkpoint: Path, tmp_path) -> None:
    proc = _blocked("stream", "--source", str(frames), "--checkpoint", str(tiny_checkpoint), "--backend", "ort",
                    env={"ESAN_CACHE_DIR": str(tmp_path / "empty-cache")})
    assert proc.returncode == 2
    assert "needs PyTorch" in one_error_line(proc.stderr)


def test_bad_numbers(frames: Path, tmp_path: Path, capfd) -> None:
    ckpt = tmp_path / "any.pt"
    ckpt.write_bytes(b"x")
    for opt, value in (("--lookahead", "-1"), ("--backward-chunk", "0"), ("--queue-size", "0")):
        rc, err = run_cli(capfd, "stream", "--source", str(frames), "--checkpoint", str(ckpt), opt, value)
        assert rc == 2 and opt in one_error_line(err)
