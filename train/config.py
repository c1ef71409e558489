"""Model configuration: the exact ESAN topology, with the paper preset and a tiny CPU preset."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from esan.train.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ESANConfig:
    """Widths and sizes of one ESAN network.

    ``vgg_widths`` are the five VGG16 stage widths; stages 4 and 5 feed the pyramid directly, so they
    must equal ``nf``. ``input_size`` is (H, W); both sides must be multiples of 32.
    """

    input_size: tuple[int, int] = (256, 320)
    vgg_widths: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)
    nf: int = 512
    deform_groups: int = 8
    hidden: int = 512
    radius: int = 2
    lrelu_slope: float = 0.1
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)

    def __post_init__(self) -> None:
        h, w = self.input_size
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise UserError(
                f"input_size {h}x{w} is not a multiple of 32 on both sides; the pyramid needs that "
                f"(e.g. use {max(32, round(h / 32) * 32)}x{max(32, round(w / 32) * 32)})"
            )
        if self.vgg_widths[3] != self.nf or self.vgg_widths[4] != self.nf:
            raise UserError(f"vgg_widths[3:5] must equal nf={self.nf}, got {self.vgg_widths}")
        if self.nf % self.deform_groups:
            raise UserError(f"nf={self.nf} is not divisible by deform_groups={self.deform_groups}")
        if self.radius < 0:
            raise UserError(f"radius must be >= 0, got {self.radius}")

    @classmethod
    def paper(cls) -> ESANConfig:
        """The authors' configuration (about 114.5 M parameters, 256x320 input)."""
        return cls()

    @classmethod
    def tiny(cls) -> ESANConfig:
        """Same topology, small widths and a small non-square input: fast on a CPU."""
        return cls(input_size=(64, 96), vgg_widths=(8, 16, 24, 16, 16), nf=16, deform_groups=2, hidden=16)

    @classmethod
    def preset(cls, name: str) -> ESANConfig:
        presets = {"paper": cls.paper, "tiny": cls.tiny}
        if name not in presets:
            raise UserError(f"unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]()

    @property
    def window(self) -> int:
        """Frames per alignment window (2T+1)."""
        return 2 * self.radius + 1

    @property
    def output_size(self) -> tuple[int, int]:
        return self.input_size[0] // 2, self.input_size[1] // 2

    def level_size(self, level: int) -> tuple[int, int]:
        """Spatial size of pyramid level 1 (H/8), 2 (H/16) or 3 (H/32)."""
        s = 2 ** (level + 2)
        return self.input_size[0] // s, self.input_size[1] // s

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ESANConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown ESANConfig fields {sorted(unknown)}; is this file from a newer esan-rt?")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> ESANConfig:
        return cls.from_dict(json.loads(text))


def parse_lookahead(text: str | int | None) -> int | None:
    """``--lookahead``: an integer >= 0, or ``none`` for the whole video (handlers call this, so a bad
    value is one clear error line)."""
    if text is None or isinstance(text, int):
        value = text
    elif text.lower() in ("none", "full", "all"):
        return None
    else:
        try:
            value = int(text)
        except ValueError:
            raise UserError(f"--lookahead must be an integer >= 0 or 'none', got {text!r}") from None
    if value is not None and value < 0:
        raise UserError(f"--lookahead must be >= 0, got {value}")
    return value
