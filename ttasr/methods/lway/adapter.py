"""`LWay`: "Low-Res Leads the Way" finetuning (Chen et al., CVPR 2024), a baseline (METHODS §3).

The LR reconstruction paradigm of :mod:`ttasr.methods.hraware.reconstruction` without
HR-aware's additions: the embedding is used as is (``s = 1``, no controller), there is no
FAR, and the reconstruction loss is weighted per pixel by LWay's high-frequency map of the
LR image (:func:`.weight_map.high_frequency_weight_map`)::

    L = mean(w ⊙ |R(x̂, E_d(y), E_i(x̂)) − y|),   w = floor + (1 − floor)·HF(y)

The map is computed once per test image and cropped with it. It uses the same pretrained
LR reconstruction networks as :class:`ttasr.HRAware` (its ``φ, ψ`` are unused), e.g. the
default ``hraware-reconstructor-x<scale>``; the HR-aware paper reproduces LWay the same
way (its Sec. 5.2). Without FAR, LWay's results degrade after about 400 iterations (HR-aware
Fig. 9): use a no-reference stopping rule, or fewer steps, on long runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..._config import option
from ..hraware.reconstruction import ReconstructionAdapter, ReconstructionConfig
from .weight_map import high_frequency_weight_map

__all__ = ["LWay", "LWayConfig", "LWAY_LR"]

LWAY_LR: dict[str, float] = {"ESRGAN": 5e-6, "SPAN": 5e-5, "RealESRGAN Compact": 5e-5}
"""Learning rate by architecture (ours, inside the 5e-6 to 5e-5 LWay and its reproduction
use): large GAN-trained RRDB networks the low end, small networks the high end; others 1e-5."""


@dataclass(frozen=True)
class LWayConfig(ReconstructionConfig):
    """LWay finetuning. Defaults: LWay / HR-aware's reproduction where they say, else marked."""

    max_steps: int = option(500, "Finetuning iterations (LWay: 100-600; HR-aware Fig. 9: it degrades after "
                            "about 400 without early stopping).", low=0, affects_result=False)
    weight_map: bool = option(True, "Weight the loss by the high-frequency map of the LR image (LWay's DWT "
                              "weighting); False: plain ℓ1.")
    weight_floor: float = option(0.0, "w = floor + (1 − floor)·map (ours; 0 is the bare map, where flat regions "
                                 "do not count).", low=0, high=1)
    weight_upsample: Literal["nearest", "bilinear"] = option(
        "nearest", "How the half-size Haar map is brought to full size: 'nearest' (each 2x2 block keeps its own "
        "coefficient, the transform's exact support) or 'bilinear'.")


class LWay(ReconstructionAdapter[LWayConfig]):
    """LWay finetuning (module docstring): ``s = 1``, no FAR, high-frequency weights."""

    name = "lway"
    config_class = LWayConfig
    lr_table: ClassVar[Mapping[str, float]] = LWAY_LR
    default_lr: ClassVar[float] = 1e-5

    def control(self, sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor | float:
        """LWay has no controller: the embedding ``E_d(y)`` as it is."""
        return 1.0

    def loss_weights(self, y: torch.Tensor) -> torch.Tensor | None:
        c = self.config
        if not c.weight_map:
            return None
        hf = high_frequency_weight_map(y, c.weight_upsample)
        return c.weight_floor + (1 - c.weight_floor) * hf

    def describe(self) -> dict[str, str]:
        out = super().describe()
        out["weight_map"] = f"haar-detail/{self.config.weight_upsample}" if self.config.weight_map else "none"
        return out
