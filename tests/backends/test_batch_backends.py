"""Backends with a real batch axis: one ONNX Runtime call per stage for B streams, old batch-1 bundles,
torch's native batched stages, the bundle cache's format tag and the export check of a batch of 2.

Exactness of every stream against the single-stream processor (on ort and torch, batched overrides in
place) is tests/core/test_scheduler.py; here: how the calls are made.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import BUNDLE_LOOKAHEAD, make_clip

from esan.runtime.backends import open_backend
from esan.runtime.core.bundle import batch_rows, load_bundle, sha256_file
from esan.runtime.core.processor import StreamProcessor
from esan.runtime.core.scheduler import MultiStreamScheduler

TOL = 1e-4


class CountingSession:
    """Wraps an ``InferenceSession``; records the batch (streams) of every ``run``."""

    def __init__(self, session, graph, log: list) -> None:
        self.session, self.graph, self.log = session, graph, log

    def run(self, names, feeds):
        batches = {len(feeds[t.name]) // t.rows for t in self.graph.inputs}
        assert len(batches) == 1, (self.graph.name, batches)
        self.log.append((self.graph.name, batches.pop()))
        return self.session.run(names, feeds)

    def __getattr__(self, name):
        return getattr(self.session, name)


def counted(backend) -> list:
    """Wrap every session of ``backend`` (its single-stream and its dynamic ones) in a ``CountingSession``."""
    log: list = []
    sessions = backend.session_set
    sessions.open_all()
    for g, spec in backend.bundle.graphs.items():
        for table in (sessions.single, sessions.dynamic):
            if not isinstance(table[g], CountingSession):
                table[g] = CountingSession(table[g], spec, log)
    return log


def static_batch1_bundle(src: Path, dst: Path) -> Path:
    """``src`` as esan-rt wrote bundles before the batch axis: graph interfaces fixed to one stream, format 1."""
    shutil.copytree(src, dst)
    man = json.loads((dst / "manifest.json").read_text())
    for g in man["graphs"].values():
        model = onnx.load(dst / g["file"])
        for v in [*model.graph.input, *model.graph.output]:
            dim = v.type.tensor_type.shape.dim[0]
            rows = batch_rows(dim.dim_param)
            dim.Clear()
            dim.dim_value = rows
        onnx.save(model, dst / g["file"])
        g["sha256"] = sha256_file(dst / g["file"])
        for t in g["inputs"] + g["outputs"]:
            t["shape"][0] = batch_rows(t["shape"][0])
    man["format_version"] = 1
    del man["batch"]
    (dst / "manifest.json").write_text(json.dumps(man))
    return dst


def lockstep(backend, clips, lookahead) -> tuple[dict, list]:
    """All streams push one frame per round (then finish); maps per stream and the per-round results."""
    sched = MultiStreamScheduler(backend, lookahead)
    got: dict[int, dict[int, np.ndarray]] = {i: {} for i in range(len(clips))}
    for i in range(len(clips)):
        sched.open_stream(i)
    for k in range(len(clips[0])):
        for i, c in enumerate(clips):
            sched.push(i, c[k])
        for r in sched.run():
            got[r.stream_id][r.index] = r.saliency
    for i in range(len(clips)):
        sched.finish(i)
    while sched.has_work():
        for r in sched.run():
            got[r.stream_id][r.index] = r.saliency
    return got


def alone(backend, frames, lookahead) -> list[np.ndarray]:
    proc = StreamProcessor(backend, lookahead)
    return [r.saliency for f in frames for r in proc.push(f)] + [r.saliency for r in proc.finish()]


def test_ort_one_session_call_per_stage_for_all_streams(tiny_bundle):
    backend = open_backend("ort", bundle_dir=tiny_bundle, threads=1)
    assert backend.batched and backend.bundle.batch == "dynamic"
    log = counted(backend)
    clips = [make_clip(8, hw, seed=40 + i) for i, hw in enumerate([(50, 120), (96, 64), (64, 96)])]
    sched = MultiStreamScheduler(backend, BUNDLE_LOOKAHEAD)
    for i in range(3):
        sched.open_stream(i)
    for k in range(8):
        for i in range(3):
            sched.push(i, clips[i][k])
        del log[:]
        results = sched.run()
    assert len(results) == 3  # steady state: every stream got a map this round
    assert sorted(log) == sorted([(g, 3) for g in ("encoder", "aligner", "cell_fwd", "bwd_window", "decoder")])
    backend.close()


def test_old_batch1_bundle_runs_one_stream_per_call(tiny_bundle, tmp_path):
    old = static_batch1_bundle(tiny_bundle, tmp_path / "old")
    bundle = load_bundle(old)
    assert bundle.batch == 1 and bundle.manifest["format_version"] == 1
    assert bundle.graphs["aligner"].inputs[0].shape == (5, 16, 8, 12)
    backend = open_backend("ort", bundle_dir=old, threads=1)
    assert not backend.batched
    with pytest.raises(Exception, match="(?i)dimension"):  # the static graph itself refuses a batch of 2
        backend.sessions["decoder"].run(None, {"hf": np.zeros((2, 16, 8, 12), np.float32),
                                               "hb": np.zeros((2, 16, 8, 12), np.float32)})  # fmt: skip
    log = counted(backend)
    clips = [make_clip(7, hw, seed=50 + i) for i, hw in enumerate([(50, 120), (80, 60)])]
    got = lockstep(backend, clips, BUNDLE_LOOKAHEAD)
    assert {b for _, b in log} == {1} and len(log) > 0
    new = open_backend("ort", bundle_dir=tiny_bundle, threads=1)
    for i, clip in enumerate(clips):
        exp = alone(new, clip, BUNDLE_LOOKAHEAD)
        assert sorted(got[i]) == list(range(len(clip)))
        assert max(float(np.abs(got[i][k] - exp[k]).max()) for k in range(len(clip))) <= TOL
    backend.close()
    new.close()


def test_torch_batched_stages_are_single_model_calls(torch_backend, monkeypatch):
    calls: list = []
    model = torch_backend.model
    for name in ("encode", "align", "cell_step", "decode"):
        original = getattr(model, name)

        def wrapper(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(model, name, wrapper)
    clips = [make_clip(6, hw, seed=60 + i) for i, hw in enumerate([(50, 120), (64, 96), (70, 40), (32, 96)])]
    sched = MultiStreamScheduler(torch_backend, lookahead=1)
    for i in range(4):
        sched.open_stream(i)
    for k in range(6):
        for i in range(4):
            sched.push(i, clips[i][k])
        del calls[:]
        assert len(sched.run()) == (4 if k >= 3 else 0)
    # one round for 4 streams: one encode, one align, one forward step, L + 1 = 2 backward steps, one decode
    assert sorted(calls) == sorted(["encode", "align", "cell_step", "cell_step", "cell_step", "decode"])


def test_cache_key_has_the_format_and_old_entries_are_rebuilt(tiny_bundle, tiny_checkpoint, tmp_path, monkeypatch):
    from esan.export import bundle_cache
    from esan.runtime.core.cache_paths import bundle_key

    key = bundle_key(tiny_checkpoint, 2)
    assert key.endswith("-L2-fp32-standard-f2-g2")
    monkeypatch.setenv("ESAN_CACHE_DIR", str(tmp_path / "cache"))
    entry = static_batch1_bundle(tiny_bundle, tmp_path / "cache" / key)  # an old entry under the new key
    assert not bundle_cache._valid_bundle(entry)
    exported = []
    monkeypatch.setattr(bundle_cache, "export_bundle", lambda ckpt, out, *a, **k: exported.append(out) or
                        shutil.copytree(tiny_bundle, out))  # fmt: skip
    path = bundle_cache.ensure_bundle(tiny_checkpoint, 2, log=lambda _: None)
    assert exported == [path] and load_bundle(path).batch == "dynamic"
    assert bundle_cache.ensure_bundle(tiny_checkpoint, 2, log=lambda _: None) == path and len(exported) == 1
