"""Latency benchmark plumbing (tiny preset): files, fields, ratio from the measured numbers, FLOP counts.

Speed is never asserted.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import REPO

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = ["--preset", "tiny", "--backend", "torch", "--lookahead", "1", "--backward-chunk", "2", "--frames", "3",
            "--warmup", "1", "--threads", "1", "--out", str(out)]
    assert _latency_main()(argv) == 0
    return out


def test_files_and_fields(bench_out):
    for name in ("latency.json", "latency.md", "latency_over_time.png", "stages.png"):
        assert (bench_out / name).stat().st_size > 0
    r = json.loads((bench_out / "latency.json").read_text())
    for key in ("naive_ms_p50", "cached_ms_p50", "speedup", "settings", "machine", "versions", "memory", "command"):
        assert key in r
    assert r["memory"]["peak_rss_mb"] > 0
    assert r["versions"]["numpy"] == np.__version__
    assert r["settings"]["backward_chunk"] == 2 and r["settings"]["naive_backward_chunk"] == 1
    for name in ("naive", "cached"):
        s = r["schedules"][name]
        m = s["ms_per_frame"]
        assert m["n"] == 2  # 3 frames rounded up to a multiple of C = 2 -> 2 blocks
        assert len(s["push_ms"]) == 4 and len(s["samples_ms"]) == 2
        assert set(m) >= {"p50", "p95", "p99", "iqr", "std"} and s["fps"] > 0
        assert s["gflops_per_frame"] > 0 and s["achieved_gflops_s"] > 0
        assert {"encode", "align", "forward", "backward", "decode", "other"} <= set(s["stages_ms_per_frame"])
    assert r["schedules"]["naive"]["gflops_per_frame"] > r["schedules"]["cached"]["gflops_per_frame"]
    assert "speedup" in (bench_out / "latency.md").read_text()


def test_device_auto_is_resolved_and_reported(bench_out):
    import torch

    settings = json.loads((bench_out / "latency.json").read_text())["settings"]
    choice = settings["backend_choice"]
    assert (choice["requested_backend"], choice["requested_device"]) == ("torch", "auto")
    assert settings["device"] == choice["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert choice["reason"]


def test_ratio_is_computed_from_the_measured_samples(bench_out):
    r = json.loads((bench_out / "latency.json").read_text())
    p50 = {n: float(np.percentile(r["schedules"][n]["samples_ms"], 50)) for n in ("naive", "cached")}
    for n in ("naive", "cached"):
        pushes = r["schedules"][n]["push_ms"]
        blocks = [np.mean(pushes[i : i + 2]) for i in range(0, len(pushes), 2)]
        assert np.allclose(blocks, r["schedules"][n]["samples_ms"], atol=2e-3)
        assert r[f"{n}_ms_p50"] == pytest.approx(p50[n], abs=2e-3)
    assert r["speedup"] == pytest.approx(r["naive_ms_p50"] / r["cached_ms_p50"], rel=1e-3)
    ratios = np.divide(r["schedules"]["naive"]["samples_ms"], r["schedules"]["cached"]["samples_ms"])
    assert r["speedup_blockwise_median"] == pytest.approx(float(np.median(ratios)), rel=1e-3)


def test_cli_registers_bench():
    from esan.runtime.cli import main
    from esan.runtime.cli.commands import COMMANDS

    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0 and "bench" in COMMANDS.commands


def test_dcn_flop_formula():
    from esan.bench.flops import BILINEAR_FLOPS, dcn_flops

    got = dcn_flops((2, 16, 8, 8), (32, 8, 3, 3), (2, 36, 8, 8), (2, 18, 8, 8), (32,), out_shape=(2, 32, 6, 7))
    assert got == 2 * 2 * 32 * 8 * 9 * 6 * 7 + BILINEAR_FLOPS * 2 * 16 * 9 * 6 * 7


def test_counted_flops_match_layer_shapes():
    """FlopCounterMode on meta tensors vs conv shapes: cells, encoder backbone, and the DCN's explicit count."""
    import torch

    from esan.bench.flops import BILINEAR_FLOPS, count, stage_flops
    from esan.train.config import ESANConfig
    from esan.train.model import ESAN

    cfg = ESANConfig.tiny()
    calls = stage_flops(cfg)
    h1, w1 = cfg.level_size(1)
    g, hid, nf = 4 * cfg.hidden, cfg.hidden, cfg.nf
    assert calls["cached"]["cell_bwd"] == 2 * g * hid * 9 * h1 * w1
    assert calls["naive"]["cell_bwd"] == 2 * g * (nf + hid) * 9 * h1 * w1
    model = ESAN(cfg).eval()
    h, w = cfg.input_size
    convs = [m for m in model.base if isinstance(m, torch.nn.Conv2d)]
    expect, size, pools = 0, (h, w), {1, 3, 6, 9}  # conv index after which a max-pool halves the size
    for i, conv in enumerate(convs):
        expect += 2 * conv.out_channels * conv.in_channels * 9 * size[0] * size[1]
        if i in pools:
            size = (size[0] // 2, size[1] // 2)
    assert count(model.backbone, torch.zeros(1, 3, h, w)) == expect
    l1 = model.L1_conv[0]
    assert calls["naive"]["encode"] == expect + 2 * l1.out_channels * l1.in_channels * h1 * w1
    dcn = model.pcd_align.L1_dcnpack
    s, o = torch.randn(1, nf, h1, w1), torch.randn(1, nf, h1, w1)
    conv_om = 2 * dcn.conv_offset_mask.out_channels * nf * 9 * h1 * w1
    assert count(dcn, s, o) == conv_om + 2 * nf * nf * 9 * h1 * w1 + BILINEAR_FLOPS * nf * 9 * h1 * w1


def _latency_main():
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import latency
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return latency.main


def test_fast_path_runners_on_cpu(tmp_path):
    """--channels-last / --naive-fast-paths use the static-ring steppers (eager on CPU)."""
    argv = ["--preset", "tiny", "--backend", "torch", "--lookahead", "0", "--frames", "1", "--warmup", "0",
            "--threads", "1", "--channels-last", "--naive-fast-paths", "--no-plots", "--out", str(tmp_path)]
    assert _latency_main()(argv) == 0
    r = json.loads((tmp_path / "latency.json").read_text())
    assert "stepper" in r["schedules"]["cached"]["detail"] and "stepper" in r["schedules"]["naive"]["detail"]
    assert r["settings"]["channels_last"] is True


def test_cuda_graph_needs_cuda(tmp_path, capsys):
    argv = ["--preset", "tiny", "--backend", "torch", "--cuda-graph", "--out", str(tmp_path)]
    assert _latency_main()(argv) == 2
    assert "--cuda-graph needs --device cuda" in capsys.readouterr().err


def test_stats_extend_the_report_percentiles():
    from esan.bench.report import stats
    from esan.runtime.io.report import percentiles

    v = [1.0, 2.0, 4.0, 8.0]
    s = stats(v)
    assert {k: s[k] for k in percentiles(v)} == percentiles(v)
    assert s["n"] == 4 and s["min"] == 1.0 and s["iqr"] == pytest.approx(np.subtract(*np.percentile(v, (75, 25))))
    assert s["std"] == pytest.approx(np.std(v, ddof=1), abs=1e-3)
    empty = stats([])
    assert empty["n"] == 0 and all(empty[k] is None for k in ("p50", "std", "iqr", "min", "max"))


def test_shift_in_drops_the_oldest_slot():
    import torch

    from esan.bench.torch_fast_paths import _shift_in

    ring = torch.zeros(3, 2)
    _shift_in(ring, torch.full((1, 2), 1.0), first=True)
    for v in (2.0, 3.0, 4.0):
        _shift_in(ring, torch.full((1, 2), v), first=False)
    assert ring[:, 0].tolist() == [2.0, 3.0, 4.0]
    one = torch.zeros(1, 2)
    _shift_in(one, torch.full((1, 2), 5.0), first=False)
    assert one.tolist() == [[5.0, 5.0]]


def test_multistream_entries_from_the_measured_rounds(tmp_path):
    """--streams: one entry per stream count, fps and ratio from the recorded round times, both modes exact."""
    argv = ["--preset", "tiny", "--backend", "torch", "--lookahead", "1", "--frames", "3", "--warmup", "1",
            "--threads", "1", "--streams", "3,1", "--out", str(tmp_path)]
    assert _latency_main()(argv) == 0
    r = json.loads((tmp_path / "latency.json").read_text())
    assert [e["streams"] for e in r["multistream"]] == [1, 3] and r["settings"]["streams"] == [1, 3]
    for e in r["multistream"]:
        n = e["streams"]
        assert e["rounds"] == 3 and len(e["batched_round_ms"]) == 3 == len(e["independent_round_ms"])
        for mode in ("batched", "independent"):
            fps = n * e["rounds"] / (sum(e[f"{mode}_round_ms"]) / 1e3)
            assert e[f"{mode}_fps"] == pytest.approx(fps, rel=1e-2)
        assert e["ratio"] == pytest.approx(e["batched_fps"] / e["independent_fps"], rel=1e-3)
        per_round = np.divide(e["independent_round_ms"], e["batched_round_ms"])
        assert e["ratio_roundwise_median"] == pytest.approx(float(np.median(per_round)), rel=1e-2)
        assert e["batched_ms_p50"] == pytest.approx(float(np.percentile(e["batched_round_ms"], 50)), abs=2e-3)
        assert e["batched_ms_p99"] >= e["batched_ms_p50"] > 0
        assert e["maps_compared"] == 3 * n and e["max_abs_diff"] <= 1e-4
        assert {"encode", "align", "decode"} <= set(e["batched_stages_ms_per_round"])
    assert (tmp_path / "multistream.png").stat().st_size > 0
    assert "batched scheduler vs N independent" in (tmp_path / "latency.md").read_text()


def test_streams_option_is_checked(tmp_path, capsys):
    argv = ["--preset", "tiny", "--backend", "torch", "--streams", "2,0", "--out", str(tmp_path)]
    assert _latency_main()(argv) == 2
    assert "--streams takes stream counts >= 1" in capsys.readouterr().err
