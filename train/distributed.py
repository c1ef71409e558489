"""Multi-process training with PyTorch's own engine: ``torchrun`` + DistributedDataParallel.

``torchrun --nproc-per-node N -m esan.train fit ...`` (or ``esan-train fit --nproc N``, which runs
exactly that) starts N processes; each reads its rank from the environment torchrun sets, joins the
process group (NCCL on CUDA, gloo on the CPU), takes ``batch / N`` clips of every step and trains a
DDP-wrapped model. Rank 0 alone writes checkpoints and logs and shows the progress bar.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from esan.train.errors import UserError

TIMEOUT = datetime.timedelta(minutes=60)  # rank 0 validates while the others wait


@dataclass(frozen=True)
class Dist:
    """This process's place in the run (``world == 1``: a plain single-process run)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    """Rank, world size and local rank from torchrun's environment variables (defaults: one process)."""
    try:
        return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise UserError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from None


def device_for(d: Dist, requested: str | None) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` for CUDA runs of several processes."""
    from esan.train.predict import resolve_device

    dev = resolve_device(requested)
    if not d.enabled or dev.type != "cuda":
        return dev
    if requested is not None and ":" in requested:
        raise UserError(f"--device {requested}: with several processes each one uses cuda:LOCAL_RANK; pass --device "
                        "cuda (choose the GPUs with CUDA_VISIBLE_DEVICES)")
    if d.local_rank >= torch.cuda.device_count():
        raise UserError(f"process {d.local_rank} has no GPU: {torch.cuda.device_count()} visible for "
                        f"--nproc-per-node {d.local_rank + 1} or more")
    torch.cuda.set_device(d.local_rank)
    return torch.device("cuda", d.local_rank)


def setup(d: Dist, device: torch.device) -> None:
    """Join the process group (no-op for one process)."""
    if d.enabled and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, timeout=TIMEOUT)


def teardown(d: Dist) -> None:
    if d.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.enabled:
        torch.distributed.barrier()


def all_sum(d: Dist, x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over all processes (a copy; ``x`` itself for one process)."""
    if not d.enabled:
        return x
    y = x.detach().clone()
    torch.distributed.all_reduce(y)
    return y


def wrap(d: Dist, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel for several processes (broadcasts rank 0's weights)."""
    if not d.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def argv_of(args: argparse.Namespace, add_args: Callable[[argparse.ArgumentParser], None],
            skip: Sequence[str] = ()) -> list[str]:
    """The command-line options that reproduce ``args`` for a parser built by ``add_args`` (options only)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_args(parser)
    argv: list[str] = []
    for action in parser._actions:
        if not action.option_strings or action.dest in skip or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if isinstance(action, argparse._StoreTrueAction):
            argv += [action.option_strings[-1]] if value else []
        elif value is not None:
            argv += [action.option_strings[-1], str(value)]
    return argv


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``torchrun --standalone --nproc-per-node nproc -m esan.train <argv>``; its exit code."""
    if nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {nproc}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "esan.train", *argv]
    print("running: torchrun " + " ".join(cmd[4:]), file=sys.stderr)
    try:
        return subprocess.run(cmd, check=False).returncode
    except KeyboardInterrupt:
        return 130
