"""``esan.runtime.session``: options checked once with one clear line, a bundle loaded once, a ready scheduler."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BUNDLE_LOOKAHEAD, make_clip

import esan.runtime
from esan.runtime.core import bundle as bundle_module
from esan.runtime.core.errors import UserError
from esan.runtime.core.processor import StreamProcessor
from esan.runtime.core.scheduler import MultiStreamScheduler
from esan.runtime.core.scheduler_api import EngineInfo, Scheduler
from esan.runtime.session import prepare


def test_import_stays_light() -> None:
    code = ("import sys, esan.runtime; assert 'esan.runtime.session' not in sys.modules; "
            "assert 'onnxruntime' not in sys.modules and 'torch' not in sys.modules; "
            "assert callable(esan.runtime.open) and 'esan.runtime.session' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"lookahead": -1}, "--lookahead"),
    ({"lookahead": True}, "--lookahead"),
    ({"backward_chunk": 0}, "--backward-chunk"),
    ({"threads": 0}, "--threads"),
    ({"max_streams": 0}, "--max-streams"),
    ({"max_batch": 2.5}, "--max-batch"),
    ({"precision": "int4"}, "precision"),
    ({"backend": "tflite"}, "unknown backend"),
    ({"device": "gpu"}, "unknown device"),
])
def test_bad_options_are_one_line_before_anything_is_read(tmp_path: Path, kwargs: dict, says: str) -> None:
    with pytest.raises(UserError, match=says) as exc:
        prepare(tmp_path / "missing.pt", **kwargs)  # the options are refused before the missing checkpoint
    assert "\n" not in str(exc.value)


def test_model_errors(tmp_path: Path, tiny_bundle: Path) -> None:
    with pytest.raises(UserError, match="give one of"):
        prepare()
    with pytest.raises(UserError, match="give one of"):
        prepare(tmp_path / "a.pt", bundle=tiny_bundle)
    with pytest.raises(UserError, match="does not exist"):
        prepare(tmp_path / "missing.pt")
    with pytest.raises(UserError, match="not a bundle"):
        prepare(bundle=tmp_path)
    with pytest.raises(UserError, match="--checkpoint"):
        prepare(bundle=tiny_bundle, backend="torch")
    with pytest.raises(UserError, match="no TensorRT engines"):
        prepare(bundle=tiny_bundle, backend="trt", device="cuda")


def test_bundle_loaded_once_and_a_ready_scheduler(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    real = bundle_module.load_bundle
    monkeypatch.setattr(bundle_module, "load_bundle", lambda *a, **k: loads.append(a) or real(*a, **k))
    notes: list[str] = []
    session = prepare(bundle=tiny_bundle, backend="ort", device="cpu", threads=1, max_streams=3, log=notes.append)
    assert session.lookahead == BUNDLE_LOOKAHEAD and not notes  # the bundle's own lookahead by default
    with session.scheduler() as scheduler:
        assert isinstance(scheduler, MultiStreamScheduler) and isinstance(scheduler, Scheduler)
        assert scheduler.engine == EngineInfo("ort", "cpu", "fp32") and scheduler.location(0) is None
        assert scheduler.max_streams == 3 and scheduler.delay_frames == BUNDLE_LOOKAHEAD + 2  # tiny: T = 2
        sid = scheduler.open_stream()
        for f in make_clip(3, seed=4):
            scheduler.push(sid, f)
            scheduler.run()
    assert len(loads) == 1  # prepare's one load: auto-choice, fit check and the backend use that object
    assert scheduler.streams == []  # shut down by the with block


def test_other_lookahead_gets_a_note_and_single_gives_a_processor(tiny_bundle: Path) -> None:
    notes: list[str] = []
    proc = esan.runtime.open(bundle=tiny_bundle, backend="ort", device="cpu", lookahead=4, threads=1, single=True,
                             log=notes.append)  # fmt: skip
    with proc:
        assert isinstance(proc, StreamProcessor) and proc.lookahead == 4
        assert len(notes) == 1 and "built for lookahead 2" in notes[0]
        got = [r for f in make_clip(7, seed=5) for r in proc.push(f)] + proc.finish()
    assert [r.index for r in got] == list(range(7))
