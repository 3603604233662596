"""Internal-learning pairs ``(y_d, y)``: blur-kernel estimation and augmented sampling.

Shared by :class:`ttasr.InternalLearning` (bicubic or a given kernel, flips only) and
:class:`ttasr.AdaSSR` (estimated kernel, the paper's augmentations, attention weights).
"""

from __future__ import annotations

from .augment import AugmentConfig, PairSample, sample_batch, sample_pair
from .sampling import PairSampler, stack_crops
from .estimation import (
    load_kernel,
    BicubicKernel,
    ConsistencyKernelEstimator,
    GivenKernel,
    KernelEstimate,
    KernelEstimator,
    make_lr_pair,
)

__all__ = [
    "AugmentConfig",
    "BicubicKernel",
    "ConsistencyKernelEstimator",
    "GivenKernel",
    "KernelEstimate",
    "KernelEstimator",
    "PairSample",
    "PairSampler",
    "stack_crops",
    "load_kernel",
    "make_lr_pair",
    "sample_batch",
    "sample_pair",
]
