"""`InternalLearning`: ZSSR-style fine-tuning on ``(y↓, y)`` pairs of the test images.

A plain baseline (METHODS.md §3): L1 on random aligned crops with flips and rotations,
no attention, no EMA, no proximal term, starting from the pretrained weights. AdaSSR
(:mod:`ttasr.adassr`) builds on it by overriding the kernel, the weights, the
augmentations and the stopping rule.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ...pairs import AugmentConfig, BicubicKernel, GivenKernel, KernelEstimate, sample_pair
from ...adapters.base import Adapter, Batch
from ...adapters.config import AdapterConfig

__all__ = ["InternalLearning", "InternalLearningConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InternalLearningConfig(AdapterConfig):
    """ZSSR-style internal learning. Defaults: AdaSSR's fine-tuning regime without its extras."""

    max_steps: int = 300
    """Fixed budget, no early stopping. ZSSR trains a small network from scratch for
    thousands of steps; fine-tuning a pretrained model needs far fewer."""
    ema_decay: float | None = None
    """No EMA: the raw fine-tuned weights are the result."""
    kernel: torch.Tensor | None = None
    """Blur kernel for ``y↓`` (blur then subsample); ``None``: MATLAB bicubic downscaling."""
    flips: bool = True
    """Random flips and 90° rotations of each crop."""


class InternalLearning(Adapter[InternalLearningConfig]):
    """ZSSR-style internal learning on self-similar ``(y↓, y)`` pairs."""

    name = "internal"
    config_class = InternalLearningConfig

    # ---- what AdaSSR overrides
    def augment_config(self) -> AugmentConfig:
        """Crops with flips and rotations only."""
        return dataclasses.replace(AugmentConfig.none(), dihedral=self.config.flips)

    def estimate_kernel(self, y: torch.Tensor) -> KernelEstimate:
        """How ``y↓`` is made from ``y``: the given kernel, or bicubic."""
        k = getattr(self.config, "kernel", None)
        est = GivenKernel(k) if k is not None else BicubicKernel()
        return est.estimate(y, self.model.scale)

    def loss_weights(self, y: torch.Tensor, index: int) -> torch.Tensor | None:
        """Per-pixel loss weights at ``y``'s size; ``None`` for plain L1."""
        return None

    # ---- Adapter hooks
    def prepare(self, images: Sequence[torch.Tensor], student: nn.Module) -> None:
        self._sources = list(images)
        self._estimates = [self.estimate_kernel(y) for y in images]
        self._weights = [self.loss_weights(y, i) for i, y in enumerate(images)]
        self._augment = self.augment_config()
        s, p = self.model.scale, self.config.patch_size
        self._patches = [min(p, min(y.shape[-2:]) // s) for y in images]
        if min(self._patches) < p:
            log.info("patch_size %d does not fit the smallest image at x%d; using %d there", p, s, min(self._patches))
        # sample images in proportion to their area, so each pixel is equally likely
        areas = torch.tensor([float(y.shape[-2] * y.shape[-1]) for y in images])
        self._probs = areas / areas.sum()

    def sample_batch(self, generator: torch.Generator) -> Batch:
        cfg = self.config
        which = torch.multinomial(self._probs, cfg.batch_size, replacement=True, generator=generator)
        samples = [
            sample_pair(self._sources[i], self._weights[i], self._estimates[i], self.model.scale,
                        self._patches[i], self._augment, generator)
            for i in which.tolist()
        ]
        weights = None if all(w is None for w in self._weights) else _stack([s.weights for s in samples])
        return Batch(_stack([s.input for s in samples]), _stack([s.target for s in samples]), weights)


def _stack(ts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate samples; an image smaller than the patch gives smaller crops, so all
    are cut to the smallest before stacking (inputs and targets alike, by their own sizes)."""
    h = min(t.shape[-2] for t in ts)
    w = min(t.shape[-1] for t in ts)
    return torch.cat([t[..., :h, :w] for t in ts])
