"""The README's dataset and reproduction commands, run as written on small official-layout trees.

``~`` is a temporary home holding ``downloads/{DHF1K,Hollywood-2,UCF}`` (built by ``official_trees``)
and the working directory holds a small ``ESAN-epoch_18.pth`` in the authors' layout. ``esan-train``
lines run in-process; training lines (``fit``, ``torchrun``) are parsed, not run (paper preset).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import warnings
from pathlib import Path

import pytest
import torch
from support.official_trees import HOLLYWOOD, UCF, dhf1k_tree, frame_folder_tree
from test_convert_official import authors_state_dict

from esan.train.cli import COMMANDS
from esan.train.cli import main as esan_train

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"widths": (8, 16, 24, 16, 16), "g": 2, "hidden": 12}


def section_commands(title: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    assert title in text, title
    body = text.split(title, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    blocks = re.findall(r"```bash\n(.+?)\n```", body, flags=re.S)
    return [line.split("  #")[0].strip() for b in blocks for line in b.splitlines() if line.strip()]


def test_readme_sections_have_the_commands():
    prep = section_commands("### Preparing datasets")
    repro = section_commands("## Reproduce the paper's numbers")
    assert [c.split()[2] for c in prep] == ["dhf1k", "hollywood2", "ucf"]
    assert sum("--protocol official" in c for c in repro) == 3 and any(c.startswith("torchrun") for c in repro)
    text = (ROOT / "README.md").read_text()
    for row in ("0.896 | 0.390 | 0.679 | 0.479 | 2.758", "0.900 | 0.353 | 0.680 | 0.476 | 2.685",
                "0.934 | 0.529 | 0.806 | 0.672 | 3.936", "0.921 | 0.497 | 0.799 | 0.612 | 3.676"):
        assert row in text, row


def assert_scores_equal_direct_metrics(argv: list[str], result: dict) -> None:
    """The command's scores equal the metrics computed here, frame by frame, on the maps of the same model.

    The maps come from the prediction functions directly and are scored with the metric functions
    (``test_evaluate_scores.direct_means``), so a wrong split, a frame misalignment, a resize or blur slip
    between the command and its scores changes the numbers. AUC-J and s-AUC draw random numbers and are
    left to that file's own tests.
    """
    from test_evaluate_scores import direct_means

    from esan.train import checkpoint
    from esan.train.data import scan_split, splits_of
    from esan.train.evaluate import model_predictor, postprocess

    names = ("--checkpoint", "--data", "--dataset", "--split", "--protocol", "--lookahead", "--max-frames")
    opt = {a: argv[argv.index(a) + 1] for a in names if a in argv}
    assert not {"--lookahead", "--max-frames"} & set(opt), "extend this check to the README's new options"
    videos = scan_split(os.path.expanduser(opt["--data"]), opt["--dataset"],
                        opt.get("--split") or splits_of(opt["--dataset"])[1])  # fmt: skip
    predict = model_predictor(checkpoint.load(opt["--checkpoint"]), None, opt.get("--protocol", "streaming"))
    assert result["frames"] == sum(len(v) for v in videos) and result["videos"] == len(videos)
    for key, maps_of in (("raw", predict), ("blurred", lambda v, n: [postprocess(m, 7.0) for m in predict(v, n)])):
        with warnings.catch_warnings():  # a metric undefined on every frame averages to NaN, on purpose
            warnings.simplefilter("ignore", RuntimeWarning)
            direct = direct_means(videos, maps_of)
        for metric in ("sim", "cc", "nss", "kld"):
            got = result[key][metric]["mean"]  # None in the JSON where every frame's score was undefined (NaN)
            if math.isnan(direct[metric]):
                assert got is None, (key, metric, got)
            else:
                assert got == pytest.approx(direct[metric], rel=1e-6, abs=1e-9), (opt, key, metric)
        assert any(not math.isnan(v) for v in direct.values()), key  # something was really compared


def _argv(cmd: str) -> list[str]:
    return [os.path.expanduser(t) if t.startswith("~") else t for t in shlex.split(cmd)]


def test_readme_commands_run_end_to_end(tmp_path, monkeypatch, capsys):
    torch.set_num_threads(1)
    home, work = tmp_path / "home", tmp_path / "work"
    monkeypatch.setenv("HOME", str(home))
    work.mkdir()
    monkeypatch.chdir(work)
    dhf1k_tree(home / "downloads" / "DHF1K")
    frame_folder_tree(home / "downloads" / "Hollywood-2", HOLLYWOOD)
    frame_folder_tree(home / "downloads" / "UCF", UCF)
    torch.save(authors_state_dict(seed=2, **SMALL), work / "ESAN-epoch_18.pth")
    assert esan_train(["convert-official", "ESAN-epoch_18.pth", "runs/i/best.pt"]) == 0  # stands in for a trained run

    parser = COMMANDS.build_parser()
    for cmd in section_commands("### Preparing datasets") + section_commands("## Reproduce the paper's numbers"):
        argv = _argv(cmd)
        if argv[0] == "torchrun":
            argv = argv[argv.index("esan.train") + 1:]
        else:
            assert argv[0] == "esan-train", cmd
            argv = argv[1:]
        if argv[0] == "fit":
            parser.parse_args(argv)  # paper-preset training: checked, not run
            continue
        capsys.readouterr()
        assert esan_train(argv) == 0, (cmd, capsys.readouterr().err[-2000:])
        out = capsys.readouterr().out
        if argv[0] == "eval":
            assert "blur 7px" in out and "AUC-J" in out, out
            result = json.loads(Path(argv[argv.index("--out") + 1]).read_text())
            assert result["frames"] > 0 and 0 < result["blurred"]["auc_j"]["mean"] <= 1, result
            assert_scores_equal_direct_metrics(argv, result)
    datasets = home / "datasets"
    assert sorted(p.name for p in datasets.iterdir()) == ["DHF1K", "Hollywood-2", "UCF"]
    assert (datasets / "Hollywood-2" / "training" / "actioncliptrain00001" / "images").is_dir()
    assert json.loads((work / "ucf_test.json").read_text())["videos"] == 2
    assert json.loads((work / "dhf1k_val.json").read_text())["protocol"] == "official"


@pytest.mark.parametrize("title", ["### Preparing datasets", "## Reproduce the paper's numbers"])
def test_readme_paths_are_the_placeholders_the_test_maps(title):
    for cmd in section_commands(title):
        for token in shlex.split(cmd):
            if "/" in token and not token.startswith(("~/", "runs/")):
                pytest.fail(f"{cmd!r}: path {token!r} is not under ~/ or runs/ (the test could not run it)")
