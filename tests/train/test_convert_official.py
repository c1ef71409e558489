"""``convert-official`` on a state dict with the authors' exact key names and shapes (built here)."""

import pytest
import torch

from esan.train import checkpoint
from esan.train.cli import main as esan_train
from esan.train.convert import convert_state_dict
from esan.train.errors import UserError

VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # conv indices of vgg16.features
VGG_STAGES = (0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4)  # stage of each conv


def authors_shapes(widths=(64, 128, 256, 512, 512), g: int = 8, hidden: int | None = None) -> dict[str, tuple]:
    """The authors' ESAN-epoch_18.pth layout, written out from docs/design.md section 1 (paper config by
    default; smaller ``widths``/``g``/``hidden`` give a small file of the same layout for fast tests)."""
    nf = widths[4]
    hidden = hidden or nf
    vgg = [(i, 3 if k == 0 else widths[VGG_STAGES[k - 1]], widths[VGG_STAGES[k]]) for k, i in enumerate(VGG_CONVS)]
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, cin, cout, k):
        shapes[f"{name}.weight"] = (cout, cin, k, k)
        shapes[f"{name}.bias"] = (cout,)

    def dcn(name):
        shapes[f"{name}.weight"] = (nf, nf, 3, 3)
        shapes[f"{name}.bias"] = (nf,)
        conv(f"{name}.conv_offset_mask", nf, 3 * g * 9, 3)

    for i, cin, cout in vgg:
        conv(f"base.{i}", cin, cout, 3)
    conv("L1_conv.0", widths[2], nf, 1)
    p = "pcd_align."
    conv(p + "L3_offset_conv1", 2 * nf, nf, 3)
    conv(p + "L3_offset_conv2", nf, nf, 3)
    dcn(p + "L3_dcnpack")
    for lvl in (2, 1):
        conv(p + f"L{lvl}_offset_conv1", 2 * nf, nf, 3)
        conv(p + f"L{lvl}_offset_conv2", 2 * nf, nf, 3)
        conv(p + f"L{lvl}_offset_conv3", nf, nf, 3)
        dcn(p + f"L{lvl}_dcnpack")
        conv(p + f"L{lvl}_fea_conv", 2 * nf, nf, 3)
    conv(p + "cas_offset_conv1", 2 * nf, nf, 3)
    conv(p + "cas_offset_conv2", nf, nf, 3)
    dcn(p + "cas_dcnpack")
    conv("sc_fusion", 5 * nf, nf, 1)
    conv("lstm_forw.cell_list.0.conv", nf + hidden, 4 * hidden, 3)
    conv("lstm_back.cell_list.0.conv", nf + hidden, 4 * hidden, 3)
    conv("final_conv.0", hidden, 1, 3)
    return shapes


def authors_state_dict(seed: int = 0, **sizes) -> dict[str, torch.Tensor]:
    """Random tensors in the authors' layout (see ``authors_shapes``)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen) * 0.01 for k, s in authors_shapes(**sizes).items()}


@pytest.fixture(scope="module")
def authors_state():
    return authors_state_dict()


def test_every_authors_key_maps_and_backward_cell_uses_forward_weights(authors_state):
    model, report = convert_state_dict(authors_state)
    assert report.missing == [] and report.unexpected == []
    own = model.state_dict()
    for key, value in authors_state.items():
        if key.startswith("lstm_back."):
            fwd = key.replace("lstm_back.", "lstm_forw.")
            assert torch.equal(own[key], authors_state[fwd]), key
        else:
            assert torch.equal(own[key], value), key
    assert any("forward cell" in n for n in report.notes)


def test_missing_and_unexpected_keys_are_reported(authors_state):
    broken = dict(authors_state)
    del broken["sc_fusion.weight"]
    broken["extra.head.weight"] = torch.zeros(3)
    broken["module.final_conv.0.bias"] = broken.pop("final_conv.0.bias")  # DataParallel prefix is accepted
    _, report = convert_state_dict({"state_dict": broken})
    assert report.missing == ["sc_fusion.weight"]
    assert report.unexpected == ["extra.head.weight"]


def test_cli_writes_a_loadable_checkpoint(authors_state, tmp_path, capsys):
    src, dst = tmp_path / "ESAN-epoch_18.pth", tmp_path / "esan_official.pt"
    torch.save(authors_state, src)
    assert esan_train(["convert-official", str(src), str(dst)]) == 0
    assert "lstm_back uses the forward cell" in capsys.readouterr().out
    model = checkpoint.load(dst)
    assert torch.equal(model.state_dict()["base.28.weight"], authors_state["base.28.weight"])


def test_cli_refuses_an_incomplete_file(authors_state, tmp_path, capsys):
    partial = {k: v for k, v in authors_state.items() if not k.startswith("pcd_align.L1")}
    src = tmp_path / "partial.pth"
    torch.save(partial, src)
    assert esan_train(["convert-official", str(src), str(tmp_path / "x.pt")]) == 2
    with pytest.raises(UserError):
        from esan.train.checkpoint import convert_official

        convert_official(src, tmp_path / "x.pt")
