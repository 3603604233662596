"""`InternalLearning`: ZSSR-style fine-tuning on ``(y↓, y)`` pairs of the test images.

A plain baseline (METHODS.md §3): L1 on random aligned crops with flips and rotations,
no attention, no EMA, no proximal term. Start from the pretrained weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .base import Adapter, Batch
from .config import AdapterConfig
from .pairs import aligned_crops, downscale_pair

__all__ = ["InternalLearning", "InternalLearningConfig"]


@dataclass(frozen=True)
class InternalLearningConfig(AdapterConfig):
    """ZSSR-style internal learning. Defaults: fine-tuning regime of AdaSSR without its extras."""

    max_steps: int = 300
    """Fixed budget, no early stopping. ZSSR trains a small network from scratch for
    thousands of steps; fine-tuning a pretrained model needs far fewer."""
    ema_decay: float | None = None
    """No EMA: the raw fine-tuned weights are the result."""
    kernel: torch.Tensor | None = None
    """Blur kernel for ``y↓`` (blur then subsample); ``None``: bicubic downscaling."""
    flips: bool = True
    """Random flips and 90° rotations of each crop."""


class InternalLearning(Adapter[InternalLearningConfig]):
    """ZSSR-style internal learning on self-similar ``(y↓, y)`` pairs."""

    name = "internal"
    config_class = InternalLearningConfig

    def prepare(self, images: Sequence[torch.Tensor], student: nn.Module) -> None:
        s = self.model.scale
        self._pairs = [downscale_pair(y, s, self.config.kernel) for y in images]
        # sample images in proportion to their area, so each pixel is equally likely
        areas = torch.tensor([float(y.shape[-2] * y.shape[-1]) for _, y in self._pairs])
        self._probs = areas / areas.sum()

    def sample_batch(self, generator: torch.Generator) -> Batch:
        cfg = self.config
        which = torch.multinomial(self._probs, cfg.batch_size, replacement=True, generator=generator)
        xs, ys = [], []
        for i in which.tolist():
            low, high = self._pairs[i]
            x, y, _ = aligned_crops(low, high, self.model.scale, cfg.patch_size, 1, generator, flips=cfg.flips)
            xs.append(x)
            ys.append(y)
        return Batch(_stack(xs), _stack(ys))


def _stack(ts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate crops; images smaller than the patch give smaller crops, so crop all
    to the smallest before stacking."""
    h = min(t.shape[-2] for t in ts)
    w = min(t.shape[-1] for t in ts)
    return torch.cat([t[..., :h, :w] for t in ts])
