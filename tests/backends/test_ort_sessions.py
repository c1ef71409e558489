"""ONNX Runtime sessions chosen by the streams in a call (esan.runtime.backends.ort_sessions): one stream runs
graphs with the batch axis fixed, several streams the dynamic-batch graphs, and both give the same maps."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import BUNDLE_LOOKAHEAD, make_clip, reference_maps

from esan.runtime.backends import open_backend
from esan.runtime.backends.ort_sessions import SessionSet, fixed_batch_dims
from esan.runtime.core.bundle import load_bundle
from esan.runtime.core.processor import StreamProcessor

TOL = 1e-4


def test_fixed_dims_name_every_symbolic_input_dimension(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert fixed_batch_dims(bundle, "encoder") == {"batch": 1}
    window = 2 * bundle.radius + 1
    assert fixed_batch_dims(bundle, "aligner") == {f"{window}*batch": window, "batch": 1}
    assert fixed_batch_dims(bundle, "bwd_window") == {f"{BUNDLE_LOOKAHEAD + 1}*batch": BUNDLE_LOOKAHEAD + 1}


def test_one_stream_runs_fixed_shapes_only_and_matches_the_reference(tiny_bundle, tiny_model):
    backend = open_backend("ort", bundle_dir=tiny_bundle, threads=1)
    sessions = backend.session_set
    assert sessions.specialise and sessions.dynamic == {}
    frames = make_clip(7, (50, 120), seed=3)  # wider than the 64x96 input: letterboxed
    proc = StreamProcessor(backend, BUNDLE_LOOKAHEAD)
    got = [r.saliency for f in frames for r in proc.push(f)] + [r.saliency for r in proc.finish()]
    assert sessions.dynamic == {}  # a single-stream run never opens the dynamic graphs
    exp = reference_maps(tiny_model, frames, BUNDLE_LOOKAHEAD)
    assert len(got) == len(frames)
    assert max(float(np.abs(g - e).max()) for g, e in zip(got, exp, strict=True)) <= TOL
    zeros = np.zeros((2, *backend.bundle.graphs["decoder"].inputs[0].shape[1:]), np.float32)
    with pytest.raises(Exception, match="(?i)dimension|shape"):  # the batch axis really is fixed to one stream
        sessions.single["decoder"].run(None, {"hf": zeros, "hb": zeros})
    assert len(sessions.for_batch("decoder", 2).run(None, {"hf": zeros, "hb": zeros})[0]) == 2
    assert set(sessions.dynamic) == {"decoder"}  # opened on its first multi-stream call, for that graph only
    backend.close()


def test_fixed_and_dynamic_sessions_agree_on_every_graph(tiny_bundle):
    backend = open_backend("ort", bundle_dir=tiny_bundle, threads=1)
    rng = np.random.default_rng(7)
    for name, spec in backend.bundle.graphs.items():
        feeds = {}
        for t in spec.inputs:
            shape, dtype = t.at_batch(1), np.dtype(t.dtype)
            feeds[t.name] = (rng.integers(0, 256, shape, dtype=np.uint8) if dtype == np.uint8
                             else rng.standard_normal(shape).astype(dtype))  # fmt: skip
        fixed = backend.session_set.for_batch(name, 1).run(None, feeds)
        dynamic = backend.session_set.for_batch(name, 2).run(None, feeds)
        assert backend.session_set.for_batch(name, 1) is not backend.session_set.for_batch(name, 2)
        for a, b in zip(fixed, dynamic, strict=True):
            assert a.shape == b.shape and float(np.abs(a - b).max()) <= 1e-5 * max(1.0, float(np.abs(b).max()))
    backend.close()


def test_without_specialisation_one_session_per_graph_serves_every_batch(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    opened: list[tuple[str, ort.SessionOptions]] = []

    def open_(graph, so):
        opened.append((graph, so))
        return object()

    sessions = SessionSet(bundle, ort.SessionOptions, open_, specialise=False)
    assert [g for g, _ in opened] == list(bundle.graphs)
    for g in bundle.graphs:
        assert sessions.for_batch(g, 1) is sessions.for_batch(g, 5)
    assert len(opened) == len(bundle.graphs)  # nothing opened twice
    specialised = SessionSet(bundle, ort.SessionOptions, open_, specialise=True)
    specialised.open_all()
    assert len(opened) == 3 * len(bundle.graphs)
    assert all(specialised.for_batch(g, 1) is not specialised.for_batch(g, 2) for g in bundle.graphs)
