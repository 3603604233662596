"""Internal-learning pairs ``(y_d, y)``: blur-kernel estimation and augmented sampling.

Shared by :class:`ttasr.InternalLearning` (bicubic or a given kernel, flips only) and
:class:`ttasr.AdaSSR` (estimated kernel, the paper's augmentations, attention weights).
"""

from __future__ import annotations

from .augment import AugmentConfig, PairSample, sample_batch, sample_pair
from .calibration import JpegSettings, calibrate_kernel, jpeg_settings_of, save_kernel
from .chart import ChartFit, calibrate_chart, chart_image, fit_chart, render_chart
from .estimation import (
    BicubicKernel,
    ConsistencyKernelEstimator,
    GivenKernel,
    KernelEstimate,
    KernelEstimator,
    load_kernel,
    make_lr_pair,
)
from .jpeg_trace import JpegTrace, detect_jpeg
from .sampling import PairSampler, stack_crops

__all__ = [
    "AugmentConfig",
    "BicubicKernel",
    "ChartFit",
    "ConsistencyKernelEstimator",
    "GivenKernel",
    "JpegSettings",
    "JpegTrace",
    "KernelEstimate",
    "KernelEstimator",
    "PairSample",
    "PairSampler",
    "calibrate_chart",
    "calibrate_kernel",
    "chart_image",
    "detect_jpeg",
    "fit_chart",
    "jpeg_settings_of",
    "load_kernel",
    "make_lr_pair",
    "render_chart",
    "sample_batch",
    "sample_pair",
    "save_kernel",
    "stack_crops",
]
