"""`PairSampler`: batches of internal pairs drawn from several test images.

Images are drawn in proportion to their area, so every pixel is equally likely; each
sample is one :func:`~ttasr.pairs.augment.sample_pair` crop. Shared by every method that
trains on ``(y_d, y)`` pairs (internal learning, AdaSSR).

Where the work happens. The random choices (image, crop, scale, rotation, ops, noise
kind and level) are drawn from the caller's CPU generator, in the same order on every
device; the images, weight maps and kernels live on the sampler's device (:meth:`to`), so
the crops, resampling, photometric ops, degradation and noise run there and a batch is
queued without the host ever waiting for the device. On the CPU the noise is drawn from
the caller's generator too; elsewhere from the sampler's own generator on the device
(:attr:`PairSampler.noise_generator`), whose state a resumable run saves with
:meth:`PairSampler.rng_state`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import torch

from .augment import (
    AugmentConfig,
    _augmented_pair,
    _check_source,
    _pad_source,
    _pad_weights,
    _pair_margin,
)
from .estimation import KernelEstimate

__all__ = ["PairSampler", "stack_crops"]

log = logging.getLogger(__name__)


class PairSampler:
    """Draws ``(inputs, targets, weights)`` batches from ``sources`` (each 1x3xHxW).

    ``weights`` holds each source's per-pixel loss weights (1x1xHxW) or ``None``;
    ``estimates`` how each source's ``y_d`` is made. ``patch_size`` shrinks per image to
    what fits at ``scale``. Batches are made on the sources' device; :meth:`to` moves them.
    """

    noise_generator: torch.Generator | None
    """Draws the noise; ``None``: the generator passed to :meth:`sample` (on the CPU,
    where that keeps results identical to drawing everything from one generator)."""

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
        for y, w, p in zip(self.sources, self.weights, self.patches):
            _check_source(y, w, scale, p)
        areas = torch.tensor([float(y.shape[-2] * y.shape[-1]) for y in sources])
        self.probs = areas / areas.sum()
        self.margins = [_pair_margin(e, scale) for e in self.estimates]
        self.device = self.sources[0].device
        self.noise_generator = _device_generator(self.device, None)
        self._pad()

    def to(self, device: torch.device | str, *, generator: torch.Generator | None = None) -> PairSampler:
        """Move the sources, weight maps and kernels to ``device`` (once: each batch is then
        made there). Off the CPU the noise comes from a new generator on ``device`` seeded
        with one draw from ``generator`` (CPU; seed 0 without one); on the CPU from the
        generator given to :meth:`sample`. Returns the sampler itself."""
        sources = [y.to(device) for y in self.sources]
        if any(a is not b for a, b in zip(sources, self.sources)):
            self.sources = sources
            self.weights = [None if w is None else w.to(device) for w in self.weights]
            self._pad()
        self.estimates = [_estimate_on(e, y) for e, y in zip(self.estimates, self.sources)]
        self.device = self.sources[0].device
        self.noise_generator = _device_generator(self.device, generator)
        return self

    def _pad(self) -> None:
        # padded once here rather than per sample: a full-image pad per crop costs more
        # than the crop's augmentations
        self._padded = [_pad_source(y, m) for y, m in zip(self.sources, self.margins)]
        if all(w is None for w in self.weights):
            self._padded_weights: list[torch.Tensor | None] = [None] * len(self.sources)
        else:
            self._padded_weights = [
                _pad_weights(torch.ones_like(y[:, :1]) if w is None else w, m)
                for y, w, m in zip(self.sources, self.weights, self.margins)
            ]

    def rng_state(self) -> torch.Tensor | None:
        """State of :attr:`noise_generator` (a CPU byte tensor), to save with a resumable
        run's other generator states; ``None`` when the noise comes from the caller's
        generator, whose state the caller saves anyway."""
        return None if self.noise_generator is None else self.noise_generator.get_state()

    def set_rng_state(self, state: torch.Tensor | None) -> None:
        """Restore what :meth:`rng_state` returned."""
        if state is None:
            return
        if self.noise_generator is None:
            raise ValueError("this sampler draws its noise from the caller's generator: "
                             "it has no state to restore")
        self.noise_generator.set_state(state)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """A batch on the sampler's device; every random choice comes from ``generator`` (CPU)."""
        which = torch.multinomial(self.probs, batch_size, replacement=True, generator=generator)
        pairs = [
            _augmented_pair(self._padded[i], self._padded_weights[i], self.margins[i], self.estimates[i],
                            self.scale, self.patches[i], self.augment, generator, self.noise_generator)
            for i in which.tolist()
        ]
        weights = [p[2] for p in pairs if p[2] is not None]
        return (stack_crops([p[0] for p in pairs]), stack_crops([p[1] for p in pairs]),
                stack_crops(weights) if weights else None)


def _estimate_on(estimate: KernelEstimate, like: torch.Tensor) -> KernelEstimate:
    """``estimate`` with its kernel on ``like``'s device and dtype (the same object when it is)."""
    k = estimate.kernel
    if k is None or (k.device == like.device and k.dtype == like.dtype):
        return estimate
    return dataclasses.replace(estimate, kernel=k.to(like))


def _device_generator(device: torch.device, seed_from: torch.Generator | None) -> torch.Generator | None:
    """The noise generator of a sampler on ``device``: None on the CPU (the caller's)."""
    if device.type == "cpu":
        return None
    seed = 0 if seed_from is None else int(torch.randint(2**63 - 1, (), generator=seed_from))
    return torch.Generator(device).manual_seed(seed)


def stack_crops(ts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate samples; an image smaller than the patch gives smaller crops, so all
    are cut to the smallest before stacking (inputs and targets alike, by their own sizes)."""
    h = min(t.shape[-2] for t in ts)
    w = min(t.shape[-1] for t in ts)
    return torch.cat([t[..., :h, :w] for t in ts])
