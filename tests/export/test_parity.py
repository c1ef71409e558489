"""The export's tolerance (``esan.export.parity``): fp16 is judged on scale and offset too, not on correlation alone."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")

from esan.export import parity  # noqa: E402


def _ref() -> np.ndarray:
    return np.random.default_rng(3).normal(0.4, 1.0, (2, 5, 7)).astype(np.float32)


def test_fp16_rounding_passes():
    ref = _ref()
    m = parity.metrics(ref, ref.astype(np.float16))
    assert m["corr"] > 0.9999 and 0 < m["rel_l2"] < 1e-3
    assert parity.passes(m, "fp16")


@pytest.mark.parametrize(
    "wrong", [lambda r: 2 * r, lambda r: 0.9 * r, lambda r: r + 0.3 * np.abs(r).mean()], ids=["x2", "x0.9", "bias"]
)
def test_fp16_wrong_scale_or_offset_fails_although_correlation_is_perfect(wrong):
    ref = _ref()
    m = parity.metrics(ref, wrong(ref))
    assert m["corr"] == pytest.approx(1.0, abs=1e-9)  # the old correlation-only rule let these through
    assert m["rel_l2"] > parity.FP16_MAX_REL_L2
    assert not parity.passes(m, "fp16")


def test_rel_l2_value_and_zero_reference():
    ref = np.array([3.0, 4.0])
    assert parity.metrics(ref, [3.0, 4.5])["rel_l2"] == pytest.approx(0.1)
    assert parity.metrics(np.zeros(4), np.zeros(4))["rel_l2"] == 0.0
    assert parity.metrics(np.zeros(4), [0, 0, 0, 1e-3])["rel_l2"] == float("inf")
    assert not parity.passes(parity.metrics(np.zeros(4), [0, 0, 0, 1e-3]), "fp16")


def test_fp32_rule_is_absolute_and_scales_above_one():
    ref = np.linspace(-1, 1, 11)
    assert parity.passes(parity.metrics(ref, ref + 9e-5), "fp32")
    assert not parity.passes(parity.metrics(ref, ref + 2e-4), "fp32")
    big = 100 * ref  # |ref| up to 100: 1e-4 * 100 = 1e-2 allowed
    assert parity.passes(parity.metrics(big, big + 9e-3), "fp32")
    assert not parity.passes(parity.metrics(big, big + 2e-2), "fp32")


def test_metrics_reject_shape_mismatch_and_summarize_takes_the_worst():
    with pytest.raises(ValueError, match="shape mismatch"):
        parity.metrics(np.zeros((2, 3)), np.zeros((3, 2)))
    ref = _ref()
    per = {"a": parity.metrics(ref, ref), "b": parity.metrics(ref, 1.5 * ref)}
    s = parity.summarize(per, "onnxruntime")
    assert s["backend"] == "onnxruntime" and s["outputs"] is per
    assert s["max_abs"] == per["b"]["max_abs"] and s["rel_l2"] == pytest.approx(0.5)
    assert s["corr"] == min(per["a"]["corr"], per["b"]["corr"])
    assert "rel L2" in parity.rule("fp16") and "rel L2" not in parity.rule("fp32")
