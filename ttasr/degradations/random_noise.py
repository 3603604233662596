"""Real-ESRGAN's random noise step (Wang et al., ICCVW 2021, §3.1 "Noise"; METHODS.md §4).

Per image: Gaussian noise with probability :attr:`NoiseConfig.gaussian_prob`, Poisson
(shot) noise otherwise; its level uniform on the stage's range (Gaussian sigma in 8-bit
levels, Poisson scale); grey noise (one map added to R, G and B) with probability
:attr:`NoiseConfig.gray_prob`, colour noise otherwise. The result is clipped to [0, 1]
and not rounded (Real-ESRGAN: ``clip=True, rounds=False``). The noise maps come from
:func:`~ttasr.degradations.noise.add_gaussian_noise` and
:func:`~ttasr.degradations.noise.add_poisson_noise` (Poisson levels by Real-ESRGAN's rule).

Real-ESRGAN picks Gaussian or Poisson once per batch; here every image draws its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..errors import InputError
from . import _draws
from ._draws import Range
from .noise import add_gaussian_noise, add_poisson_noise

__all__ = ["NoiseConfig", "NoiseDraw", "apply_noise", "draw_noise", "random_noise"]


@dataclass(frozen=True)
class NoiseConfig:
    """One stage's random noise; defaults are Real-ESRGAN's first stage
    (``gaussian_noise_prob: 0.5``, ``noise_range: [1, 30]``, ``poisson_scale_range: [0.05, 3]``,
    ``gray_noise_prob: 0.4``; stage 2: [1, 25] and [0.05, 2.5])."""

    gaussian_prob: float = 0.5
    """Probability of Gaussian noise; Poisson noise otherwise."""
    gaussian_sigma: Range = (1.0, 30.0)
    """Gaussian standard deviation in 8-bit levels (x/255)."""
    poisson_scale: Range = (0.05, 3.0)
    """Poisson noise scale (Real-ESRGAN's ``poisson_scale_range``)."""
    gray_prob: float = 0.4
    """Probability of grey (channel-shared) noise."""

    def __post_init__(self) -> None:
        _draws.check_prob("gaussian_prob", self.gaussian_prob)
        _draws.check_prob("gray_prob", self.gray_prob)
        _draws.check_range("gaussian_sigma", self.gaussian_sigma, low=0.0)
        _draws.check_range("poisson_scale", self.poisson_scale, low=0.0)


@dataclass(frozen=True)
class NoiseDraw:
    kind: Literal["gaussian", "poisson"]
    level: float
    """Gaussian sigma in 8-bit levels, or the Poisson scale."""
    gray: bool

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def draw_noise(generator: torch.Generator, config: NoiseConfig | None = None) -> NoiseDraw:
    """Draw one image's noise: kind, level, grey or colour."""
    cfg = config or NoiseConfig()
    if _draws.bernoulli(generator, cfg.gaussian_prob):
        kind: Literal["gaussian", "poisson"] = "gaussian"
        level = _draws.uniform(generator, *cfg.gaussian_sigma)
    else:
        kind, level = "poisson", _draws.uniform(generator, *cfg.poisson_scale)
    return NoiseDraw(kind, level, _draws.bernoulli(generator, cfg.gray_prob))


def apply_noise(x: torch.Tensor, draws: Sequence[NoiseDraw], generator: torch.Generator | None = None) -> torch.Tensor:
    """Add image ``i``'s drawn noise to image ``i`` of a BCHW batch in [0, 1]; clipped to [0, 1].

    Images sharing a kind and grey/colour are noised together (four groups at most, in a
    fixed order), the noise maps drawn from ``generator`` on its device.
    """
    if x.ndim != 4 or len(draws) != x.shape[0]:
        raise InputError(f"need one noise draw per image ({x.shape[0]}), got {len(draws)}")
    out = x.clone()
    for kind in ("gaussian", "poisson"):
        for gray in (False, True):
            idx = [i for i, d in enumerate(draws) if d.kind == kind and d.gray == gray]
            if not idx:
                continue
            sel = torch.tensor(idx, device=x.device)
            sub = x.index_select(0, sel)
            levels = [draws[i].level for i in idx]
            if kind == "gaussian":
                noisy = add_gaussian_noise(sub, [v / 255.0 for v in levels], gray=gray, generator=generator)
            else:
                noisy = add_poisson_noise(sub, levels, gray=gray, generator=generator)
            out.index_copy_(0, sel, noisy)
    return out


def random_noise(x: torch.Tensor, generator: torch.Generator,
                 config: NoiseConfig | None = None) -> tuple[torch.Tensor, list[NoiseDraw]]:
    """Draw each image's noise (:func:`draw_noise`, all draws before any noise map) and add it."""
    draws = [draw_noise(generator, config) for _ in range(x.shape[0])]
    return apply_noise(x, draws, generator), draws
