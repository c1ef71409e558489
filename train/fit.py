"""``esan-train fit``: train ESAN on a paper setting (i-iv) or the synthetic set.

Adam, ``L = -NSS - SIM - CC + KL`` on clips of consecutive frames (paper: 15 frames, batch 4),
optional step/cosine schedule, mixed precision on CUDA (autocast + GradScaler), gradient clipping,
periodic validation (CC, NSS, SIM, KLD, AUC-J on a few videos of the val split) and atomic
checkpoints in the run directory. ``--resume`` continues bit-for-bit: step ``s`` always trains on
the same clips and every state (weights, optimiser, scheduler, scaler, RNG) is restored.
Ctrl-C saves a usable checkpoint of the last finished step before exiting. Several processes
(``torchrun --nproc-per-node N -m esan.train fit`` or ``--nproc N``) train with DistributedDataParallel
(:mod:`esan.train.distributed`): ``--batch-size`` stays the clips per step over all processes, so
a run (and its resume) sees the same clips whatever N is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from esan.train import backbone, distributed, fit_state
from esan.train.config import ESANConfig
from esan.train.data import ClipDataset, datasets_of, make_loader, scan_setting, scan_split, splits_of
from esan.train.errors import UserError
from esan.train.loss import saliency_loss
from esan.train.model import ESAN
from esan.train.schedule import SCHEDULES, make_scheduler

DEFAULTS = {"paper": {"steps": 20000, "lr": 1e-4}, "tiny": {"steps": 300, "lr": 3e-3}}


@dataclass
class FitOptions:
    data: str
    setting: str
    out: str
    preset: str = "paper"
    steps: int | None = None
    lr: float | None = None
    schedule: str = "constant"
    batch_size: int = 4
    clip_len: int = 15
    grad_clip: float = 5.0
    val_every: int = 500
    val_videos: int = 4
    val_frames: int = 30
    save_every: int = 500
    backbone_weights: str | None = None
    seed: int = 0
    device: str | None = None
    workers: int = 2
    amp: bool = True
    resume: bool = False
    config: ESANConfig | None = None  # overrides the preset (tests, custom sizes)

    def resolved(self) -> FitOptions:
        if self.preset not in DEFAULTS:
            raise UserError(f"unknown preset {self.preset!r}; choose paper or tiny")
        d = DEFAULTS[self.preset]
        o = dataclasses.replace(self, steps=self.steps if self.steps is not None else d["steps"],
                                lr=self.lr if self.lr is not None else d["lr"])
        for name in ("steps", "batch_size", "clip_len"):
            if getattr(o, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(o, name)}")
        if o.lr <= 0:
            raise UserError(f"--lr must be > 0, got {o.lr}")
        if o.schedule not in SCHEDULES:
            raise UserError(f"unknown --schedule {o.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        datasets_of(o.setting)  # validates the setting name
        return o

    def record(self) -> dict[str, Any]:
        """JSON/weights_only-safe summary stored in checkpoints."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "config"}
        return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None}


def validate(model: ESAN, videos, opts: FitOptions, device) -> dict[str, float]:
    """Mean CC, NSS, SIM, KLD, AUC-J of the first val videos/frames (full bidirectional)."""
    from esan.train.evaluate import evaluate_videos, model_predictor

    was_training = model.training
    model.eval()
    try:
        res = evaluate_videos(videos, model_predictor(model, None, "streaming", 32, device),
                              max_frames=opts.val_frames, blur_sigma=0, shuffled=False, seed=opts.seed)
    finally:
        model.train(was_training)
    return {k: v["mean"] for k, v in res["raw"].items()}


@contextlib.contextmanager
def _defer_sigint():
    """Hold Ctrl-C while the weights are being updated, so a checkpoint is never half a step."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got:
            raise KeyboardInterrupt


def _best_cc(run_dir: Path) -> float:
    from esan.train import checkpoint

    try:
        return float(checkpoint.load_meta(run_dir / fit_state.BEST).get("val", {}).get("cc", -float("inf")))
    except (UserError, TypeError, ValueError):
        return -float("inf")


def _val_subset(opts: FitOptions) -> list:
    """The first ``val_videos`` videos of the val/test splits, taken round-robin over the datasets."""
    if opts.val_videos <= 0:
        return []
    per = [scan_split(opts.data, ds, splits_of(ds)[1]) for ds in datasets_of(opts.setting)]
    mixed = [v for group in itertools.zip_longest(*per) for v in group if v is not None]
    return mixed[: opts.val_videos]


def _log(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / "log.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")


def train(opts: FitOptions, on_step: Callable[[int], None] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run; returns ``{"step", "val", "history"}``.

    Under torchrun (``WORLD_SIZE > 1``) every process calls this: DDP, ``batch_size / world`` clips per
    process and step, rank 0 alone writes. ``on_step(step)`` is called after each finished step (tests
    use it to interrupt a run).
    """
    opts = opts.resolved()
    dist = distributed.from_env()
    if opts.batch_size % dist.world:
        raise UserError(f"--batch-size {opts.batch_size} is not divisible by the {dist.world} processes; "
                        f"it is the clips per step over all of them")
    device = distributed.device_for(dist, opts.device)
    distributed.setup(dist, device)
    try:
        result = _train(opts, dist, device, on_step, progress and dist.main)
        distributed.barrier(dist)  # return once rank 0 has written everything
        return result
    finally:
        distributed.teardown(dist)


def _build(opts: FitOptions, run_dir: Path, dist: distributed.Dist) -> tuple[ESAN, dict[str, Any] | None]:
    """A fresh model (seeded, backbone weights) or the one to resume, with its training state."""
    if opts.resume:
        model, _, state = fit_state.load_run(run_dir)
        return model, state
    torch.manual_seed(opts.seed)
    model = ESAN(opts.config or ESANConfig.preset(opts.preset))
    main = dist.main
    if opts.backbone_weights == backbone.IMAGENET and dist.enabled:  # rank 0 downloads, the others wait
        if main:
            backbone.imagenet_for(model.cfg)
        distributed.barrier(dist)
    if opts.backbone_weights:
        n = fit_state.load_backbone(model, opts.backbone_weights)
        if main:
            print(f"loaded {n} backbone tensors from {opts.backbone_weights}", file=sys.stderr)
    elif main:
        fit_state.warn("no --backbone-weights: the VGG16 backbone trains from scratch (the paper starts from "
                       "ImageNet weights: --backbone-weights imagenet, --preset paper)")
    return model, None


def _train(opts: FitOptions, dist: distributed.Dist, device: torch.device, on_step, progress: bool) -> dict[str, Any]:
    run_dir = Path(opts.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    train_videos = scan_setting(opts.data, opts.setting, "train")
    val_videos = _val_subset(opts)  # every process checks the data; rank 0 alone validates
    model, state = _build(opts, run_dir, dist)
    start = int(state["step"]) if state is not None else 0
    cfg = model.cfg
    model.to(device).train()
    net = distributed.wrap(dist, model, device)
    amp = opts.amp and device.type == "cuda"
    optimizer = torch.optim.Adam(model.parameters(), lr=opts.lr)
    scheduler = make_scheduler(optimizer, opts.schedule, opts.steps)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        fit_state.restore_rng(state)

    dataset = ClipDataset(train_videos, opts.clip_len, cfg.input_size, cfg.output_size, seed=opts.seed)
    loader = make_loader(dataset, opts.batch_size // dist.world, start, opts.steps, workers=opts.workers,
                         rank=dist.rank, world=dist.world)
    meta = {"options": opts.record(), "setting": opts.setting}
    history: list[dict[str, Any]] = []
    val: dict[str, float] = {}
    best = _best_cc(run_dir) if opts.resume and dist.main else -float("inf")
    step = start

    def save() -> None:
        if dist.main:
            fit_state.save_run(run_dir, model, optimizer, scheduler, scaler, step, {**meta, "val": val})

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=opts.steps, initial=start, desc="fit", unit="step", file=sys.stderr, dynamic_ncols=True)
    t_last, clips = time.time(), 0
    try:
        for batch in loader:
            frames = batch["frames"].to(device, non_blocking=True)
            maps = batch["maps"].to(device, non_blocking=True)
            fix = batch["fixations"].to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                pred = net(frames)
            nss_frames = None
            if dist.enabled:  # the NSS term averages over the frames with fixations of all processes
                with_fix = (fix.flatten(-2) > 0).any(-1).sum().float()
                nss_frames = distributed.all_sum(dist, with_fix).clamp_min(1.0) / dist.world
            loss, terms = saliency_loss(pred.float(), maps, fix, nss_frames=nss_frames)
            stats = distributed.all_sum(dist, torch.stack([loss.detach(), *terms.values()])) / dist.world
            if not torch.isfinite(stats[0]):
                raise UserError(f"loss became {stats[0].item()} at step {step + 1}; lower --lr (now {opts.lr})")
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if opts.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            with _defer_sigint():
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                step += 1
            clips += frames.shape[0] * dist.world
            values = stats.tolist()
            if bar is not None:
                now = time.time()
                bar.set_postfix(loss=f"{values[0]:.3f}", clips_s=f"{clips / max(now - t_last, 1e-9):.2f}")
                bar.update(1)
            record = {"step": step, "loss": values[0], **dict(zip(terms, values[1:], strict=True)),
                      "lr": scheduler.get_last_lr()[0]}
            if opts.val_every > 0 and step % opts.val_every == 0 or step == opts.steps:
                if val_videos and dist.main:
                    val = validate(model, val_videos, opts, device)
                    record["val"] = val
                    if val.get("cc", -1) > best:
                        best = val["cc"]
                        from esan.train import checkpoint

                        checkpoint.save(run_dir / fit_state.BEST, model, step=step, **meta, val=val)
                if opts.val_videos > 0:
                    distributed.barrier(dist)  # the other processes wait for rank 0's validation
            history.append(record)
            if dist.main:
                _log(run_dir, record)
            if opts.save_every > 0 and step % opts.save_every == 0 or step == opts.steps:
                save()
            if on_step is not None:
                on_step(step)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
            bar = None
        save()
        if dist.main:
            print(f"\ninterrupted: saved step {step} to {run_dir / fit_state.LAST}; continue with --resume",
                  file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()
    if step == start:  # nothing to do (already finished): still leave a checkpoint
        save()
    return {"step": step, "val": val, "history": history}


def main(args) -> int:
    """``esan-train fit`` handler; ``--nproc N`` (outside torchrun) relaunches the command under torchrun."""
    opts = FitOptions(
        data=args.data, setting=args.setting, out=args.out, preset=args.preset, steps=args.steps, lr=args.lr,
        schedule=args.schedule, batch_size=args.batch_size, clip_len=args.clip_len, grad_clip=args.grad_clip,
        val_every=args.val_every, val_videos=args.val_videos, val_frames=args.val_frames,
        save_every=args.save_every, backbone_weights=args.backbone_weights, seed=args.seed, device=args.device,
        workers=args.workers, amp=not args.no_amp, resume=args.resume,
    )
    nproc = getattr(args, "nproc", 1)
    if nproc != 1 and "LOCAL_RANK" not in os.environ:
        from esan.train.commands.fit import add_args as fit_args

        if nproc < 1 or opts.batch_size % nproc:
            raise UserError(f"--nproc must be >= 1 and divide --batch-size {opts.batch_size} (the clips per step "
                            f"over all processes), got {nproc}")
        scan_setting(opts.resolved().data, opts.setting, "train")  # common mistakes: one clear line, no launch
        _val_subset(opts)
        if opts.backbone_weights == backbone.IMAGENET and not opts.resume:  # download once, before the launch
            backbone.imagenet_for(opts.config or ESANConfig.preset(opts.preset))
        return distributed.launch(nproc, ["fit", *distributed.argv_of(args, fit_args, skip=("nproc",))])
    result = train(opts)
    if distributed.from_env().main:
        val = ", ".join(f"{k} {v:.3f}" for k, v in result["val"].items())
        print(f"done: step {result['step']}; val {val or 'n/a'}; checkpoint {Path(args.out) / fit_state.LAST}")
    return 0
