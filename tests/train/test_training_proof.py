"""Proof that training works: the tiny preset learns the synthetic set on a CPU.

Validation CC and NSS after a short run must rise well above the untrained network and above a
centre-bias baseline (a centred Gaussian), scored by the same evaluation code.
"""

from __future__ import annotations

import pytest
import torch

from esan.train.config import ESANConfig
from esan.train.data import scan_setting
from esan.train.evaluate import centre_bias_predictor, evaluate_videos
from esan.train.fit import FitOptions, train, validate
from esan.train.model import ESAN
from esan.train.synth import SynthSpec, write_dataset

torch.set_num_threads(1)  # 2 shared cores: more threads only spin
STEPS = 120


@pytest.mark.slow
def test_tiny_preset_learns_synthetic_saliency(tmp_path):
    root = write_dataset(tmp_path / "data", SynthSpec(videos=8, test_videos=2, frames=20, size=(96, 128), seed=0))
    opts = FitOptions(data=str(root), setting="synth", out=str(tmp_path / "run"), preset="tiny", steps=STEPS,
                      lr=3e-3, batch_size=2, clip_len=5, val_every=0, val_videos=2, val_frames=20,
                      save_every=0, workers=0, seed=0)
    val_videos = scan_setting(root, "synth", "val")

    torch.manual_seed(opts.seed)  # the same initialisation train() starts from
    untrained = validate(ESAN(ESANConfig.tiny()), val_videos, opts, torch.device("cpu"))
    centre = evaluate_videos(val_videos, centre_bias_predictor, max_frames=20, blur_sigma=0, shuffled=False)
    centre = {k: v["mean"] for k, v in centre["raw"].items()}
    trained = train(opts, progress=False)["val"]

    print(f"\nval after {STEPS} steps: trained {trained}\nuntrained {untrained}\ncentre bias {centre}")
    for name, margin in (("cc", 0.3), ("nss", 1.0)):
        assert trained[name] > untrained[name] + margin, (name, trained, untrained)
        assert trained[name] > centre[name] + margin, (name, trained, centre)
    assert trained["cc"] > 0.5 and trained["auc_j"] > max(untrained["auc_j"], centre["auc_j"])
