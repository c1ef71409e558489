"""``esan-rt bench --precision fp32,int8``: one run, every precision's cached schedule on the same frames.

The tiny preset on ONNX Runtime CPU; speed is never asserted, only that the figures are the measured ones
and that each precision ran its own bundle (an int8 bundle has QDQ nodes, the fp32 one none).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from esan.bench import precisions as P  # noqa: E402
from esan.runtime.core.errors import UserError  # noqa: E402


def _latency_main():
    from esan.bench.latency import main

    return main


@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-precisions")
    argv = ["--preset", "tiny", "--backend", "ort", "--device", "cpu", "--precision", "fp32,int8", "--lookahead", "2",
            "--frames", "5", "--warmup", "1", "--threads", "1", "--calib-frames", "12", "--out", str(out)]
    assert _latency_main()(argv) == 0
    return out


def test_report_holds_each_precision_and_the_ratio_of_its_own_figures(run_out):
    r = json.loads((run_out / "precisions.json").read_text())
    res = r["results"]
    assert r["format"] == "esan-rt-precisions" and r["skipped"] == {}
    for prec in ("fp32", "int8"):
        assert res[prec]["frames"] == 5 and res[prec]["p50_ms"] > 0
        assert {"encode", "align", "forward", "backward", "decode"} <= set(res[prec]["stage_ms_per_frame"])
        assert res["speedup_p50"][prec] == pytest.approx(res["fp32"]["p50_ms"] / res[prec]["p50_ms"])
        assert res["speedup_mean"][prec] == pytest.approx(res["fp32"]["mean_ms"] / res[prec]["mean_ms"])
    assert res["speedup_p50"]["fp32"] == 1.0
    assert r["settings"]["unmeasured_frames"] == 2 + 2 + 1  # L + T fill + --warmup
    assert r["settings"]["calib"] == "sample clip"


def test_each_precision_ran_its_own_bundle(run_out):
    bundles = json.loads((run_out / "precisions.json").read_text())["settings"]["bundles"]
    ops = {p: {n.op_type for n in onnx.load(f"{d}/encoder.onnx").graph.node} for p, d in bundles.items()}
    assert "QuantizeLinear" not in ops["fp32"] and "QuantizeLinear" in ops["int8"]
    man = json.loads(open(f"{bundles['int8']}/manifest.json").read())
    assert man["precision"] == "int8" and man["int8"]["flavour"] == "ort"


def test_bundles_are_reused_on_a_second_run(run_out, capsys):
    argv = ["--preset", "tiny", "--backend", "ort", "--device", "cpu", "--precision", "fp32,int8", "--lookahead", "2",
            "--frames", "1", "--warmup", "0", "--threads", "1", "--calib-frames", "12", "--out", str(run_out)]
    assert _latency_main()(argv) == 0
    out = capsys.readouterr().out
    assert out.count("bench: reusing the") == 2 and "making the" not in out


def test_side_by_side_rotates_the_order_and_measures_after_the_fill(monkeypatch):
    calls: list[str] = []

    class Recorder:
        def __init__(self, name):
            self.name = name

        def push(self, frame):
            calls.append(self.name)
            return []

    import esan.runtime.core.processor as proc_mod

    monkeypatch.setattr(proc_mod, "StreamProcessor", lambda clock, lookahead: Recorder(clock._target))
    res = P.side_by_side({"a": "a", "b": "b", "c": "c"}, [np.zeros((2, 2, 3), np.uint8)] * 4, 1, fill=1)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert res["a"]["frames"] == 3 and set(res["speedup_p50"]) == {"a", "b", "c"}


@pytest.mark.parametrize("text", ["", "fp32,fp32", "fp8", "fp32,,int4"])
def test_bad_precision_lists_are_refused_in_one_line(text):
    with pytest.raises(UserError, match="--precision takes one of fp32, fp16, int8"):
        P.parse_precisions(text)


def test_comparison_mode_is_a_list_or_int8():
    assert P.is_comparison("fp32,int8") and P.is_comparison("int8") and P.is_comparison("fp32,fp16")
    assert not P.is_comparison("fp32") and not P.is_comparison("fp16")


def test_comparison_refuses_the_torch_backend(tmp_path, capsys):
    argv = ["--preset", "tiny", "--backend", "torch", "--precision", "fp32,int8", "--out", str(tmp_path)]
    assert _latency_main()(argv) == 2
    err = capsys.readouterr().err
    assert "compares exported bundles: use --backend ort" in err and len(err.strip().splitlines()) == 1
