"""`InternalLearning`: ZSSR-style fine-tuning on ``(y↓, y)`` pairs of the test images.

A plain baseline (METHODS.md §3): L1 on random aligned crops with flips and rotations,
no attention, no EMA, no proximal term, starting from the pretrained weights. AdaSSR
(:mod:`ttasr.methods.adassr`) builds on it by overriding the kernel, the weights, the
augmentations and the stopping rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from ..._config import option
from ...adapters.base import Adapter, Batch, ImageGroup
from ...adapters.config import AdapterConfig
from ...errors import InputError
from ...pairs import (
    AugmentConfig,
    BicubicKernel,
    ConsistencyKernelEstimator,
    GivenKernel,
    KernelEstimate,
    PairSampler,
    load_kernel,
    make_lr_pair,
)

__all__ = ["InternalLearning", "InternalLearningConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InternalLearningConfig(AdapterConfig):
    """ZSSR-style internal learning. Defaults: AdaSSR's fine-tuning regime without its extras."""

    max_steps: int = option(300, "Fixed budget, no early stopping. ZSSR trains a small network from scratch "
                            "for thousands of steps; fine-tuning a pretrained model needs far fewer.",
                            low=0, affects_result=False)
    ema_decay: float | None = option(None, "No EMA: the raw fine-tuned weights are the result.",
                                     low=0, high=1, high_open=True)
    kernel: str | tuple[tuple[float, ...], ...] | None = option(
        None, "Blur kernel for y↓ (blur then subsample): a .npy/.json/.txt/.csv file or a 2-D list; "
        "None: MATLAB bicubic downscaling.")
    flips: bool = option(True, "Random flips and 90-degree rotations of each crop.")
    kernel_estimator: Literal["auto", "bicubic", "consistency", "given"] = option(
        "auto", "How y↓ is made: 'bicubic' (MATLAB bicubic downscaling, ZSSR's default), 'consistency' "
        "(an anisotropic Gaussian minimising ||D_k(N(y)) - y||, as in AdaSSR), 'given' (kernel), 'auto' "
        "('given' when kernel is set, else 'bicubic').")

    blind_estimator: ClassVar[str] = "bicubic"
    """What ``kernel_estimator='auto'`` means without a kernel."""

    def __post_init__(self) -> None:
        super().__post_init__()
        k = self.kernel
        if isinstance(k, tuple) and (not k or any(len(row) != len(k) for row in k) or len(k) % 2 == 0):
            raise InputError(f"{type(self).__name__}.kernel must be a square 2-D list of odd size, got {k!r}")
        if self.kernel_estimator == "given" and k is None:
            raise InputError(f"{type(self).__name__}: kernel_estimator='given' needs kernel=<file or 2-D list>")
        if k is not None and self.kernel_estimator not in ("auto", "given"):
            raise InputError(f"{type(self).__name__}: kernel is set but kernel_estimator={self.kernel_estimator!r} "
                             "does not use it: leave kernel_estimator at 'auto' (or 'given') to train on that "
                             "kernel, or drop kernel")

    @property
    def kernel_source(self) -> str:
        """The estimator in effect: ``kernel_estimator`` with ``'auto'`` resolved."""
        if self.kernel_estimator != "auto":
            return self.kernel_estimator
        return "given" if self.kernel is not None else self.blind_estimator


class InternalLearning(Adapter[InternalLearningConfig]):
    """ZSSR-style internal learning on self-similar ``(y↓, y)`` pairs."""

    name = "internal"
    config_class = InternalLearningConfig

    # ---- what AdaSSR overrides
    def augment_config(self, group: ImageGroup) -> AugmentConfig:
        """Crops with flips and rotations only."""
        return dataclasses.replace(AugmentConfig.none(), dihedral=self.config.flips)

    def estimate_kernel(self, y: torch.Tensor) -> KernelEstimate:
        """How ``y↓`` is made from ``y``: the given kernel, bicubic, or the consistency estimate."""
        source, s = self.config.kernel_source, self.model.scale
        if source == "given":
            return GivenKernel(load_kernel(self.config.kernel)).estimate(y, s)  # type: ignore[arg-type]
        if source == "consistency":
            return ConsistencyKernelEstimator(sr_fn=lambda t: self.model(t).clamp(0, 1)).estimate(y, s)
        return BicubicKernel().estimate(y, s)

    def loss_weights(self, group: ImageGroup, i: int) -> torch.Tensor | None:
        """Per-pixel loss weights at image ``i``'s size; ``None`` for plain L1."""
        return None

    # ---- Adapter hooks
    def prepare(self, group: ImageGroup, student: nn.Module) -> None:
        estimates = [self.estimate_kernel(y) for y in group.tensors]
        weights = [self.loss_weights(group, i) for i in range(len(group.tensors))]
        if self.holdout_masks is not None:  # held-out squares are never training targets
            weights = [m if w is None else w * m for w, m in zip(weights, self.holdout_masks)]
        sampler = PairSampler(group.tensors, estimates, weights, scale=self.model.scale,
                              patch_size=self.config.patch_size, augment=self.augment_config(group))
        # batches are made where the model trains; off the CPU the sampler's noise generator
        # is seeded from a copy of the loop's generator, so the loop's own stream is untouched
        self.sampler = sampler.to(self.device, generator=self._make_generator(group.indices[0]))

    def sampling_rng_state(self) -> torch.Tensor | None:
        return self.sampler.rng_state()

    def set_sampling_rng_state(self, state: torch.Tensor | None) -> None:
        self.sampler.set_rng_state(state)

    def sample_batch(self, generator: torch.Generator) -> Batch:
        return Batch(*self.sampler.sample(self.config.batch_size, generator))

    def pair_degradation(self, group: ImageGroup, i: int) -> Callable[[torch.Tensor], torch.Tensor]:
        estimate, s = self.sampler.estimates[i], self.model.scale
        return lambda x: make_lr_pair(x, estimate, s)[0]

    def validation_pairs(self, group: ImageGroup) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Whole-image pairs ``(y_d, y)``, weighted 1 on the held-out squares (no augmentation)."""
        if self.holdout_masks is None:
            return super().validation_pairs(group)
        out = []
        for i, y in enumerate(group.tensors):
            inp, target = make_lr_pair(y, self.sampler.estimates[i], self.model.scale)
            held = 1.0 - self.holdout_masks[i][..., : target.shape[-2], : target.shape[-1]]
            out.append((inp, target, held))
        return out

    def run_id_parts(self, group: ImageGroup) -> list[str]:
        k = self.config.kernel
        if isinstance(k, str):  # the file's content, not its name, changes the result
            return [hashlib.sha256(load_kernel(k).numpy().tobytes()).hexdigest()]
        return []
