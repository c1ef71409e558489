"""ESANConfig presets, validation and JSON round trip."""

import pytest

from esan.train.config import ESANConfig
from esan.train.errors import UserError


def test_presets_and_derived_sizes():
    paper, tiny = ESANConfig.paper(), ESANConfig.tiny()
    assert paper.input_size == (256, 320) and paper.nf == 512 and paper.deform_groups == 8
    assert paper.output_size == (128, 160) and paper.level_size(1) == (32, 40) and paper.level_size(3) == (8, 10)
    assert tiny.input_size[0] != tiny.input_size[1], "tiny preset must be non-square"
    assert tiny.window == 5 and ESANConfig.preset("tiny") == tiny


@pytest.mark.parametrize("cfg", [ESANConfig.paper(), ESANConfig.tiny(), ESANConfig(input_size=(96, 64))])
def test_json_round_trip(cfg):
    assert ESANConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"input_size": (250, 320)}, "multiple of 32"),
        ({"input_size": (256, 330)}, "multiple of 32"),
        ({"nf": 64}, "vgg_widths"),
        ({"deform_groups": 7}, "divisible"),
    ],
)
def test_invalid_configs_are_rejected_with_a_clear_message(kwargs, words):
    with pytest.raises(UserError, match=words):
        ESANConfig(**kwargs)


def test_unknown_preset_and_fields():
    with pytest.raises(UserError, match="preset"):
        ESANConfig.preset("huge")
    with pytest.raises(UserError, match="unknown ESANConfig fields"):
        ESANConfig.from_dict({"input_size": [64, 96], "bogus": 1})
