"""The naive schedule (authors' recompute-everything order) gives the cached schedule's maps (tiny)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import BUNDLE_LOOKAHEAD, make_clip, reference_maps

pytest.importorskip("torch")


def stream(processor, frames) -> np.ndarray:
    out = []
    for f in frames:
        out += processor.push(f)
    out += processor.finish()
    assert [r.index for r in out] == list(range(len(frames)))
    return np.stack([r.saliency for r in out])


def naive_processor(engine, model, lookahead):
    """The naive schedule: the real ``StreamProcessor`` on a ``NaiveBackend`` (C = 1)."""
    from esan.bench.naive_torch import NaiveBackend
    from esan.runtime.core.processor import StreamProcessor

    return StreamProcessor(NaiveBackend(engine, model.cfg), lookahead, backward_chunk=1)


@pytest.mark.parametrize(("n", "lookahead"), [(7, 0), (7, 2), (3, 8)])
def test_torch_naive_equals_cached_and_reference(tiny_model, n, lookahead):
    from esan.bench.naive_torch import TorchNaiveEngine
    from esan.runtime.backends.torch_backend import TorchBackend
    from esan.runtime.core.processor import StreamProcessor

    frames = make_clip(n, seed=n + lookahead)
    naive = stream(naive_processor(TorchNaiveEngine(tiny_model), tiny_model, lookahead), frames)
    cached = stream(StreamProcessor(TorchBackend(model=tiny_model), lookahead), frames)
    assert np.abs(naive - cached).max() <= 1e-4
    assert np.abs(naive - reference_maps(tiny_model, frames, lookahead)).max() <= 1e-4


@pytest.mark.parametrize("cls_name", ["CachedStepper", "NaiveStepper"])
def test_fast_path_steppers_eager_on_cpu(tiny_model, cls_name):
    """The static-ring steppers behind --cuda-graph / --channels-last (eager here) give the reference maps."""
    from esan.bench import torch_fast_paths

    lookahead = 2
    frames = make_clip(8, seed=5)
    ref = reference_maps(tiny_model, frames, lookahead)
    model = copy.deepcopy(tiny_model)  # the steppers take ownership (channels_last converts it in place)
    stepper = getattr(torch_fast_paths, cls_name)(model, lookahead, "cpu", "fp32", channels_last=True)
    got = [m for f in frames for m in stepper.push(f)]
    assert len(got) == len(frames) - lookahead - tiny_model.cfg.radius
    assert np.abs(np.stack(got) - ref[: len(got)]).max() <= 1e-4


def test_ort_naive_graphs_equal_cached_bundle(tiny_model, tiny_bundle, tmp_path):
    from esan.bench.naive_onnx import OrtNaiveEngine, export_naive_graphs, read_naive_manifest
    from esan.runtime.backends.ort_backend import OrtBackend
    from esan.runtime.core.processor import StreamProcessor

    naive_dir = export_naive_graphs(tiny_model, tmp_path / "naive", progress=lambda m: None)
    assert read_naive_manifest(naive_dir)["graphs"]["naive_aligner"] == "naive_aligner.onnx"
    frames = make_clip(6, seed=3)
    L = BUNDLE_LOOKAHEAD
    naive = stream(naive_processor(OrtNaiveEngine(naive_dir, threads=1), tiny_model, L), frames)
    cached = stream(StreamProcessor(OrtBackend(tiny_bundle, threads=1), L), frames)
    assert np.abs(naive - cached).max() <= 1e-4
    assert np.abs(naive - reference_maps(tiny_model, frames, L)).max() <= 1e-4


def test_naive_backend_stages_are_the_engine_calls(tiny_model):
    """Through the bench's StageClock: 2T+1 naive encodes per aligned frame, L+1 backward steps per map."""
    from esan.bench.latency import StageClock
    from esan.bench.naive_torch import NaiveBackend, TorchNaiveEngine
    from esan.runtime.core.processor import StreamProcessor

    calls = {}

    class Counting(StageClock):
        def __getattr__(self, name):
            calls[name] = calls.get(name, 0) + 1
            return super().__getattr__(name)

    lookahead, radius = 1, tiny_model.cfg.radius
    engine = Counting(TorchNaiveEngine(tiny_model))
    proc = StreamProcessor(NaiveBackend(engine, tiny_model.cfg), lookahead)
    frames = make_clip(radius + lookahead + 1, seed=1)
    out = [r for f in frames for r in proc.push(f)]
    assert [r.index for r in out] == [0]
    assert calls["encode"] == (2 * radius + 1) * 2 and calls["align"] == 2  # frames 0 and 1 aligned
    assert calls["decode"] == 1 and set(engine.ms) == {"encode", "align", "forward", "backward", "decode"}
    proc.backend.close()
    assert engine.mods == {}
