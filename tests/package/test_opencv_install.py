"""Which OpenCV the install brings, and what a machine that cannot load it is told."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEELS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def _name(req: str) -> str:
    return req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("~")[0].strip().lower()


def test_one_opencv_wheel_the_gui_one_and_no_extra_pulls_another() -> None:
    """The wheels share the ``cv2`` module and overwrite each other: the install must name exactly one."""
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads pyproject.toml")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = [_name(r) for r in project["dependencies"]]
    assert [n for n in base if n in WHEELS] == ["opencv-python"]  # GUI build: --show works out of the box
    for extra, reqs in project["optional-dependencies"].items():
        assert not [r for r in reqs if _name(r) in WHEELS], extra


def test_an_opencv_missing_system_libraries_gets_one_line_saying_what_to_do(tmp_path: Path) -> None:
    """What ``import cv2`` of the GUI wheel raises on a slim image (no libGL), from a stand-in ``cv2``."""
    fake = tmp_path / "site" / "cv2"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        'raise ImportError("libGL.so.1: cannot open shared object file: No such file or directory")\n')
    code = (f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r}); from esan.runtime.cli import main; "
            "sys.exit(main(['stream', '--source', 'clip.mp4']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "libGL.so.1" in lines[0] and "apt-get install libgl1" in lines[0]
    assert "pip uninstall -y opencv-python && pip install opencv-python-headless" in lines[0]


def test_other_import_errors_are_not_disguised(tmp_path: Path) -> None:
    from esan.runtime.core.clikit import opencv_import_hint

    try:
        import esan_no_such_module  # noqa: F401
    except ImportError as exc:
        assert opencv_import_hint(exc) is None
