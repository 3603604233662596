"""`PairSampler`: batches of internal pairs drawn from several test images.

Images are drawn in proportion to their area, so every pixel is equally likely; each
sample is one :func:`~ttasr.pairs.augment.sample_pair` crop. Shared by every method that
trains on ``(y_d, y)`` pairs (internal learning, AdaSSR).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from .augment import AugmentConfig, sample_pair
from .estimation import KernelEstimate

__all__ = ["PairSampler", "stack_crops"]

log = logging.getLogger(__name__)


class PairSampler:
    """Draws ``(inputs, targets, weights)`` batches from ``sources`` (each 1x3xHxW).

    ``weights`` holds each source's per-pixel loss weights (1x1xHxW) or ``None``;
    ``estimates`` how each source's ``y_d`` is made. ``patch_size`` shrinks per image to
    what fits at ``scale``.
    """

    def __init__(
        self,
        sources: Sequence[torch.Tensor],
        estimates: Sequence[KernelEstimate],
        weights: Sequence[torch.Tensor | None],
        *,
        scale: int,
        patch_size: int,
        augment: AugmentConfig,
    ) -> None:
        self.sources, self.estimates, self.weights = list(sources), list(estimates), list(weights)
        self.scale, self.augment = scale, augment
        self.patches = [min(patch_size, min(y.shape[-2:]) // scale) for y in sources]
        if min(self.patches) < patch_size:
            log.info("patch_size %d does not fit the smallest image at x%d; using %d there",
                     patch_size, scale, min(self.patches))
        areas = torch.tensor([float(y.shape[-2] * y.shape[-1]) for y in sources])
        self.probs = areas / areas.sum()

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        which = torch.multinomial(self.probs, batch_size, replacement=True, generator=generator)
        samples = [
            sample_pair(self.sources[i], self.weights[i], self.estimates[i], self.scale,
                        self.patches[i], self.augment, generator)
            for i in which.tolist()
        ]
        weights = None if all(w is None for w in self.weights) else stack_crops([s.weights for s in samples])
        return stack_crops([s.input for s in samples]), stack_crops([s.target for s in samples]), weights


def stack_crops(ts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate samples; an image smaller than the patch gives smaller crops, so all
    are cut to the smallest before stacking (inputs and targets alike, by their own sizes)."""
    h = min(t.shape[-2] for t in ts)
    w = min(t.shape[-1] for t in ts)
    return torch.cat([t[..., :h, :w] for t in ts])
