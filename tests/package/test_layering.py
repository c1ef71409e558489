"""The package's layering (docs/contracts.md, "Where things live") holds, and no esan module is in an import cycle.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``) and are checked with import-linter, the
same tool a developer runs as ``lint-imports``. A second test copies the sources under another root name,
adds one forbidden import, and shows that the contracts then fail and name that import.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp", reason="import-linter is not installed: pip install -e '.[dev]'")

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"runtime": "runtime", "train": "train", "export": "export", "bench": "benchmarks"}


def _lint_imports(config: Path, cwd: Path, pythonpath: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, str(config), "--no-cache"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def test_layering_contracts_hold():
    proc = _lint_imports(REPO / "pyproject.toml", REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def _copy_as(root_name: str, dst: Path) -> Path:
    """The four source trees under the namespace ``root_name`` (imports rewritten), and a matching config."""
    pkg = dst / root_name
    pkg.mkdir(parents=True)
    for sub, folder in ROOTS.items():
        shutil.copytree(REPO / folder, pkg / sub, ignore=shutil.ignore_patterns("__pycache__", "*.pt", "*.png"))
        for py in (pkg / sub).rglob("*.py"):
            py.write_text(re.sub(r"\besan\.", f"{root_name}.", py.read_text()))
    config = re.sub(r"\besan\.", f"{root_name}.", (REPO / "pyproject.toml").read_text())
    (dst / "pyproject.toml").write_text(config)
    return dst / "pyproject.toml"


def test_a_forbidden_import_breaks_the_contracts(tmp_path):
    config = _copy_as("esanlayer", tmp_path)
    assert _lint_imports(config, tmp_path, str(tmp_path)).returncode == 0  # the copy itself is clean
    letterbox = tmp_path / "esanlayer" / "runtime" / "core" / "letterbox.py"
    letterbox.write_text(letterbox.read_text() + "\n\ndef _bad():\n    import torch  # noqa: F401\n")
    proc = _lint_imports(config, tmp_path, str(tmp_path))
    assert proc.returncode != 0
    assert "esanlayer.runtime.core.letterbox -> torch" in proc.stdout, proc.stdout


def test_a_core_module_importing_io_breaks_the_layers(tmp_path):
    config = _copy_as("esanlayer", tmp_path)
    processor = tmp_path / "esanlayer" / "runtime" / "core" / "processor.py"
    processor.write_text(processor.read_text() + "\nfrom esanlayer.runtime.io import sources  # noqa: E402, F401\n")
    proc = _lint_imports(config, tmp_path, str(tmp_path))
    assert proc.returncode != 0
    assert "esanlayer.runtime.core.processor -> esanlayer.runtime.io.sources" in proc.stdout, proc.stdout


def test_no_import_cycles():
    graph = grimp.build_graph("esan.runtime", "esan.train", "esan.export", "esan.bench")
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain:
                cycles.append(" -> ".join((module, *chain)))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
