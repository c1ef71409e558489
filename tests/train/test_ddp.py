"""Data-parallel training (torchrun + DDP, gloo on the CPU): 2 processes with b clips each reach the
weights of 1 process with 2b clips, and a resumed 2-process run equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from esan.train import checkpoint, fit_state
from esan.train.config import ESANConfig
from esan.train.data import StepSampler
from esan.train.fit import FitOptions, train
from esan.train.loss import saliency_loss
from esan.train.model import ESAN
from esan.train.synth import SynthSpec, write_dataset

torch.set_num_threads(1)
ARGS = ["--setting", "synth", "--preset", "tiny", "--batch-size", "4", "--clip-len", "3", "--lr", "1e-3",
        "--val-videos", "0", "--workers", "0", "--seed", "5", "--device", "cpu"]
STEPS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("ddp") / "d", SynthSpec(videos=3, test_videos=1, frames=6,
                                                                         size=(40, 56), seed=4))


def _run(argv, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _fit_2proc(data, out, steps, resume=False, via_torchrun=False):
    """``esan-train fit --nproc 2`` (which runs torchrun), or torchrun itself."""
    fit = ["fit", "--data", str(data), "--out", str(out), "--steps", str(steps), *ARGS] + (["--resume"] if resume
                                                                                          else [])
    if via_torchrun:
        return _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                     "-m", "esan.train", *fit])
    return _run([sys.executable, "-m", "esan.train", *fit, "--nproc", "2"])


@pytest.fixture(scope="module")
def two_proc_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "r2"
    proc = _fit_2proc(data, out, STEPS)
    return out, proc


def _weights(run):
    return checkpoint.load(run / fit_state.LAST).state_dict()


def test_step_sampler_splits_each_step_across_ranks():
    one = list(StepSampler(6, 2, 5))
    ranks = [list(StepSampler(2, 2, 5, rank=r, world=3)) for r in range(3)]
    per_step = [sum((r[s * 2:(s + 1) * 2] for r in ranks), []) for s in range(3)]
    assert sum(per_step, []) == one and all(len(r) == len(StepSampler(2, 2, 5, 0, 3)) for r in ranks)


def test_split_nss_term_averages_to_the_whole_batch_loss():
    """The NSS term over uneven halves (one without fixations) averages back to the whole batch's."""
    gen = torch.Generator().manual_seed(0)
    pred = torch.rand(4, 3, 1, 6, 10, generator=gen, requires_grad=True)
    gt = torch.rand(4, 3, 1, 6, 10, generator=gen)
    fix = (torch.rand(4, 3, 1, 6, 10, generator=gen) > 0.8).float()
    fix[:2, 1:] = 0  # the first half has far fewer frames with fixations
    whole, _ = saliency_loss(pred, gt, fix)
    (g_whole,) = torch.autograd.grad(whole, pred)
    count = float((fix.flatten(-2) > 0).any(-1).sum()) / 2
    halves = [saliency_loss(pred[s], gt[s], fix[s], nss_frames=count)[0] for s in (slice(0, 2), slice(2, 4))]
    (g_split,) = torch.autograd.grad((halves[0] + halves[1]) / 2, pred)
    assert torch.allclose((halves[0] + halves[1]) / 2, whole, atol=1e-6)
    assert torch.allclose(g_split, g_whole, atol=1e-7)


def test_two_processes_match_one_process_with_the_whole_batch(data, two_proc_run, tmp_path):
    out2, proc = two_proc_run
    assert proc.stdout.count("done: step 3") == 1  # one process reports
    log = [json.loads(x) for x in (out2 / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # one writer
    one = train(FitOptions(data=str(data), setting="synth", out=str(tmp_path / "r1"), preset="tiny", steps=STEPS,
                           lr=1e-3, batch_size=4, clip_len=3, val_videos=0, workers=0, seed=5, device="cpu"),
                progress=False)
    a, b = _weights(tmp_path / "r1"), _weights(out2)
    torch.manual_seed(5)
    start = ESAN(ESANConfig.tiny()).state_dict()
    moved = max((a[k] - start[k]).abs().max().item() for k in a)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"max |w1 - w2| = {worst:.2e} after {STEPS} steps (weights moved up to {moved:.2e})")
    assert moved > 1e-3 and worst < 5e-5
    for r1, r2 in zip(one["history"], log, strict=True):
        assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-5, abs=1e-6)


@pytest.mark.slow  # two torchrun launches: about 20 s on 2 idle cores
def test_resumed_two_process_run_equals_uninterrupted(data, two_proc_run, tmp_path):
    out2, _ = two_proc_run
    _fit_2proc(data, tmp_path / "rr", 2, via_torchrun=True)
    proc = _fit_2proc(data, tmp_path / "rr", STEPS, resume=True, via_torchrun=True)
    assert proc.stdout.count("done: step 3") == 1
    a, b = _weights(tmp_path / "rr"), _weights(out2)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = [json.loads(x)["step"] for x in (tmp_path / "rr" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]


def test_nproc_errors_come_before_the_launch(data, tmp_path, capsys):
    from esan.train.cli import main as esan_train

    assert esan_train(["fit", "--data", str(data), "--out", str(tmp_path / "x"), "--steps", "1", *ARGS,
                       "--nproc", "3"]) == 2
    assert "divide --batch-size 4" in capsys.readouterr().err
    # checked before torchrun starts: one line, no launch
    assert esan_train(["fit", "--data", str(data), "--out", str(tmp_path / "x"), "--steps", "1", *ARGS,
                       "--nproc", "2", "--backbone-weights", "imagenet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "use --preset paper" in err[0], err
