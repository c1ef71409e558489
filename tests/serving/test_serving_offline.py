"""Serving pieces that need no server: the repository ``esan-rt serve --write-only`` writes, its errors,
and the request router (the Triton model's logic) on the real scheduler and ORT backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import BUNDLE_LOOKAHEAD, make_clip

from esan.runtime.cli import main
from esan.runtime.serving import protocol as P
from esan.runtime.serving.router import Request, StreamRouter


def test_write_only_repository(tiny_bundle, tmp_path, capsys) -> None:
    repo = tmp_path / "repo"
    rc = main(["serve", "--bundle", str(tiny_bundle), "--model-repository", str(repo), "--write-only",
               "--max-streams", "6", "--idle-timeout", "2.5", "--max-frame-pixels", "1000"])
    captured = capsys.readouterr()
    assert rc == 0 and captured.out.strip() == str(repo)
    assert "esan-rt serve: backend ort on cpu:" in captured.err  # --backend/--device auto, said in one line
    model = repo / "esan"
    config = (model / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and "max_batch_size: 6" in config
    assert "max_sequence_idle_microseconds: 2500000" in config and "oldest {" in config
    assert "preferred_batch_size: [ 6 ]" in config and "max_candidate_sequences: 14" in config
    for kind in ("CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_CORRID"):
        assert kind in config
    assert "kind: KIND_CPU" in config and 'dims: [ -1, 32, 48 ]' in config
    params = dict(re.findall(r'key: "(\w+)" value: \{ string_value: "([^"]*)" \}', config))
    assert set(params) == set(P.PARAM_KEYS)
    assert params["lookahead"] == str(BUNDLE_LOOKAHEAD) and params["max_frame_pixels"] == "1000"
    assert "esan.runtime.serving.triton_model import TritonPythonModel" in (model / "1" / "model.py").read_text()
    copied = model / "1" / "bundle" / "encoder.onnx"
    assert copied.read_bytes() == (tiny_bundle / "encoder.onnx").read_bytes()
    assert os.stat(copied).st_ino == os.stat(tiny_bundle / "encoder.onnx").st_ino  # hard-linked, not copied
    # writing again replaces the model whole
    assert main(["serve", "--bundle", str(tiny_bundle), "--model-repository", str(repo), "--write-only",
                 "--device", "cuda"]) == 0
    assert "kind: KIND_GPU" in (model / "config.pbtxt").read_text()
    assert sorted(p.name for p in repo.iterdir()) == ["esan"]


def test_serve_help_and_errors_name_the_install(tmp_path, tiny_bundle) -> None:
    env = {**os.environ, "ESAN_TRITON_DIR": str(tmp_path / "none"), "PYTHONNOUSERSITE": "1"}
    help_text = subprocess.run([sys.executable, "-m", "esan.runtime.cli", "serve", "--help"], capture_output=True,
                               text=True, env=env, timeout=60).stdout
    assert "--install-server" in help_text and "esan-rt[serve]" in help_text
    import importlib.util

    if importlib.util.find_spec("pytriton") is None:  # no server anywhere: one line saying how to get one
        proc = subprocess.run([sys.executable, "-m", "esan.runtime.cli", "serve", "--bundle", str(tiny_bundle)],
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1
        assert "esan-rt serve --install-server" in proc.stderr
    bad = subprocess.run([sys.executable, "-m", "esan.runtime.cli", "stream", "--server", "localhost", "--source",
                          str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def router(ort_backend):
    from esan.runtime.core.scheduler import MultiStreamScheduler

    clock = Clock()
    sched = MultiStreamScheduler(ort_backend, BUNDLE_LOOKAHEAD, max_streams=2)
    return StreamRouter(sched, max_frame_pixels=10_000, idle_timeout_s=5.0, clock=clock), clock


def test_router_interleaved_sequences_errors_and_idle(router, ort_backend) -> None:
    from esan.runtime.core.processor import StreamProcessor

    r, clock = router
    a, b = make_clip(5, (40, 90), seed=1), make_clip(4, (70, 50), seed=2)
    got: dict[int, dict[int, np.ndarray]] = {1: {}, 2: {}}
    for i in range(5):
        reqs = [Request(1, i == 0, False, a[i])]
        if i < 4:
            reqs.append(Request(2, i == 0, False, b[i]))
        if i == 1:
            reqs.append(Request(3, True, False, a[0]))  # a third stream: refused (max 2)
            reqs.append(Request(2, False, False, np.zeros((200, 60, 3), np.uint8)))  # oversized: rejected alone
        outs = r.handle(reqs)
        if i == 1:
            assert outs[2].error.startswith(P.REFUSED) and outs[3].error.startswith(P.BAD_FRAME)
            assert outs[0].error is None and outs[1].error is None
        for req, out in zip(reqs, outs, strict=True):
            for res in out.results:
                got[req.corrid][res.index] = res.saliency
        clock.t += 1.0
    ends = r.handle([Request(1, False, True, np.zeros((0, 0, 3), np.uint8)),
                     Request(2, False, True, np.zeros((0, 0, 3), np.uint8))])  # END without a frame: flush
    for sid, out in zip((1, 2), ends, strict=True):
        assert out.error is None
        got[sid].update({res.index: res.saliency for res in out.results})
    for sid, clip in ((1, a), (2, b)):
        proc = StreamProcessor(ort_backend, BUNDLE_LOOKAHEAD)
        ref = {x.index: x.saliency for f in clip for x in proc.push(f)} | {x.index: x.saliency for x in proc.finish()}
        assert sorted(got[sid]) == sorted(ref)
        assert max(float(np.abs(got[sid][k] - ref[k]).max()) for k in ref) <= 1e-4
    assert r.active == 0 and r.stats.refused == 1 and r.stats.rejected == 1
    unknown = r.handle([Request(2, False, False, b[0])])[0]
    assert unknown.error.startswith(P.UNKNOWN_STREAM)
    r.handle([Request(4, True, False, b[0])])
    clock.t += 5.5
    assert r.reap() == [4] and r.active == 0 and r.stats.idle_freed == 1


def test_router_rejects_malformed_frames_through_the_schedulers_one_check(router) -> None:
    """The frame's type and shape are checked once on the server, by the scheduler's push: a malformed
    frame fails its request only; a stream it would have started is not kept, an open stream goes on."""
    r, _ = router
    clip = make_clip(3, (40, 90), seed=3)
    first = r.handle([Request(7, True, False, np.zeros((20, 30, 3), np.float32))])[0]
    assert first.error.startswith(P.BAD_FRAME) and "uint8" in first.error and r.active == 0
    assert r.handle([Request(7, True, False, clip[0])])[0].error is None
    grey = r.handle([Request(7, False, False, np.zeros((20, 30, 4), np.uint8))])[0]
    assert grey.error.startswith(P.BAD_FRAME) and "[20, 30, 4]" in grey.error and r.active == 1
    assert r.handle([Request(7, False, False, clip[1])])[0].error is None
    end = r.handle([Request(7, False, True, clip[2])])[0]
    assert end.error is None and r.active == 0 and r.stats.rejected == 2 and r.stats.frames == 3
