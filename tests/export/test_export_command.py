"""``esan-rt export`` (the installed form of export/to_onnx.py and to_trt.py) and ``esan-rt --version``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from esan.runtime.cli import main
from esan.runtime.core.version import package_version


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"esan-rt {package_version()}"


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--engines", "--no-verify"], "--no-verify only apply without --engines"),
        (["--engines", "--batch", "1"], "--batch only apply without --engines"),
        (["--out", "B", "--max-streams", "4"], "--max-streams only apply with --engines"),
        (["--out", "B", "--workspace", "10", "--plugin-lib", "x.so"], "--plugin-lib, --workspace only apply"),
        ([], "--out DIR is required"),
    ],
)
def test_mode_options_refused(argv: list[str], expect: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"not read")
    assert main(["export", str(ckpt), *argv]) == 2
    assert expect in _err_line(capsys)
    assert not (tmp_path / "B").exists()


def test_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "b")]) == 2
    assert "does not exist" in _err_line(capsys)
    assert not (tmp_path / "b").exists()


def test_without_torch_names_the_train_extra(tmp_path: Path) -> None:
    """torch and onnx made unimportable: one line naming the extra, exit code 2."""
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"x")
    code = (
        "import sys\n"
        "sys.modules['torch'] = sys.modules['onnx'] = None  # what `import torch` sees when it is absent\n"
        "from esan.runtime.cli import main\n"
        f"sys.exit(main(['export', {str(ckpt)!r}, '--out', {str(tmp_path / 'b')!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "pip install 'esan-rt[train]'" in proc.stderr and "torch" in proc.stderr


@pytest.mark.slow
def test_export_writes_a_bundle(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bundle"
    assert main(["export", str(tiny_checkpoint), "--out", str(out), "--lookahead", "2", "--no-verify"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lookahead"] == 2 and manifest["precision"] == "fp32"
    assert f"bundle written to {out}" in capsys.readouterr().out
