"""Real-ESRGAN's random resize (Wang et al., ICCVW 2021, §3.1 "Resize"; METHODS.md §4).

Up, down or keep with the stage's probabilities; an up factor uniform on [1, high], a
down factor on [low, 1]; the mode area, bilinear or bicubic with equal probability
(``torch.nn.functional.interpolate`` without antialiasing, ``align_corners=False``, as in
Real-ESRGAN's ``realesrgan_model.py``). Sizes are ``floor(reference * factor)``, at least
1: the first stage resizes relative to the image, the second relative to the target LR
size (Real-ESRGAN: ``int(ori_h / scale * factor)``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..errors import InputError
from . import _draws
from ._draws import Range

__all__ = ["RESIZE_MODES", "ResizeConfig", "ResizeDraw", "draw_resize", "random_resize", "resize"]

ResizeMode = Literal["area", "bilinear", "bicubic"]
RESIZE_MODES: tuple[ResizeMode, ...] = ("area", "bilinear", "bicubic")
Direction = Literal["up", "down", "keep"]
_DIRECTIONS: tuple[Direction, ...] = ("up", "down", "keep")


@dataclass(frozen=True)
class ResizeConfig:
    """One stage's random resize; defaults are Real-ESRGAN's first stage
    (``resize_prob: [0.2, 0.7, 0.1]``, ``resize_range: [0.15, 1.5]``)."""

    probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    """Probabilities of up, down and keep."""
    range: Range = (0.15, 1.5)
    """Smallest down factor and largest up factor (stage 2: [0.3, 1.2])."""
    modes: tuple[str, ...] = RESIZE_MODES
    """Interpolation modes, chosen uniformly."""

    def __post_init__(self) -> None:
        if len(self.probs) != 3:
            raise InputError(f"probs must be (up, down, keep), got {self.probs}")
        _draws.check_probs("probs", self.probs)
        lo, hi = self.range
        if not 0 < lo <= 1 <= hi:
            raise InputError(f"range must be (low, high) with 0 < low <= 1 <= high, got {self.range}")
        if not self.modes or any(m not in RESIZE_MODES for m in self.modes):
            raise InputError(f"modes must be some of {RESIZE_MODES}, got {self.modes}")


@dataclass(frozen=True)
class ResizeDraw:
    direction: Direction
    factor: float
    mode: str
    size: tuple[int, int]
    """Output (height, width)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize a BCHW float tensor to ``size`` with ``mode`` in :data:`RESIZE_MODES` (no clamping:
    bicubic may overshoot [0, 1], as in Real-ESRGAN, where the noise step clips)."""
    if mode not in RESIZE_MODES:
        raise InputError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def draw_resize(generator: torch.Generator, config: ResizeConfig, reference: tuple[int, int]) -> ResizeDraw:
    """Draw direction, factor and mode; ``size = max(1, floor(reference * factor))``."""
    direction = _DIRECTIONS[_draws.choice(generator, config.probs)]
    lo, hi = config.range
    factor = (_draws.uniform(generator, 1.0, hi) if direction == "up"
              else _draws.uniform(generator, lo, 1.0) if direction == "down" else 1.0)
    mode = config.modes[_draws.integer(generator, 0, len(config.modes) - 1)]
    size = (max(1, int(reference[0] * factor)), max(1, int(reference[1] * factor)))
    return ResizeDraw(direction, factor, mode, size)


def random_resize(x: torch.Tensor, generator: torch.Generator, config: ResizeConfig | None = None,
                  reference: tuple[int, int] | None = None) -> tuple[torch.Tensor, ResizeDraw]:
    """Resize a BCHW batch by one random draw (:func:`draw_resize`; one tensor has one size,
    so the batch shares it: the full pipeline calls this per image). ``reference``: the size
    the factor applies to, ``x``'s own by default."""
    ref = reference or (int(x.shape[-2]), int(x.shape[-1]))
    draw = draw_resize(generator, config or ResizeConfig(), ref)
    return resize(x, draw.size, draw.mode), draw
