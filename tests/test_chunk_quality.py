"""benchmarks/chunk_quality.py: C = 1 is the exact schedule (CC = 1), chunked maps stay close (tiny)."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import REPO

pytest.importorskip("torch")


def test_chunk_one_is_exact_and_json_is_written(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import chunk_quality

    out = tmp_path / "cq.json"
    argv = ["--preset", "tiny", "--clips", "1", "--frames", "10", "--lookahead", "2", "--chunks", "1,4"]
    argv += ["--out", str(out)]
    assert chunk_quality.main(argv) == 0
    result = json.loads(out.read_text())
    rows = {r["chunk"]: r for r in result["rows"]}
    assert rows[1]["mean_cc"] == 1.0 and rows[1]["max_abs"] == 0.0
    assert 0.9 < rows[4]["mean_cc"] <= 1.0 and rows[4]["frames"] == 10
    sys.modules.pop("chunk_quality", None)
