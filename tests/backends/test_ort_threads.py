"""ONNX Runtime's intra-op threads by default: the cores this process may use (``esan.runtime.core.cpus``)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("onnxruntime")

from esan.runtime.backends import ort_backend as ob  # noqa: E402
from esan.runtime.core import cpus  # noqa: E402


@pytest.mark.parametrize("cpu_max, affinity, expected", [
    ("max 100000\n", {0, 1, 2, 3}, 4),      # no quota: the affinity mask
    ("150000 100000\n", {0, 1, 2, 3}, 2),   # 1.5 CPUs of quota: rounded to 2
    ("50000 100000\n", {0, 1, 2, 3}, 1),    # half a CPU: at least one thread
    ("800000 100000\n", {0, 1, 2}, 3),      # quota above the mask: the mask
    ("garbage", {0, 1}, 2),                 # unreadable quota: the mask
])  # fmt: skip
def test_usable_cores_follows_affinity_and_quota(tmp_path, monkeypatch, cpu_max, affinity, expected):
    f = tmp_path / "cpu.max"
    f.write_text(cpu_max)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: affinity)
    assert cpus.usable_cores(f) == expected
    assert cpus.usable_cores(tmp_path / "absent") == len(affinity)


def test_sessions_get_the_usable_cores_unless_told(monkeypatch):
    monkeypatch.setattr(ob, "usable_cores", lambda: 3)
    assert ob.session_options(None).intra_op_num_threads == 3
    assert ob.session_options(1).intra_op_num_threads == 1
    so = ob.session_options(None)
    assert so.inter_op_num_threads == 1 and so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
