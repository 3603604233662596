"""Degradations: blur kernels, resizing, and the synthetic degradations used for LR images."""

from .camera import PRESETS, CameraPreset, Degraded, degrade, list_presets
from .kernels import (
    alignment_shift,
    bicubic_kernel_weights,
    blur,
    degrade_with_kernel,
    gaussian_blur,
    gaussian_kernel,
    gaussian_kernels,
    imresize,
    kernel_size_for,
    subsample,
    unsharp_mask,
)
from .noise import add_gaussian_noise, add_poisson_noise, estimate_noise_level, jpeg, quantize_8bit
from .blur_kernels import apply_blur, random_blur_kernel, random_sinc_kernel, sinc_kernel
from .jpeg_codec import random_jpeg
from .random_noise import random_noise
from .realesrgan import (
    RealESRGANConfig,
    SecondOrderDegraded,
    degrade_realesrgan,
    degrade_realesrgan_batch,
    usm_sharpen,
)
from .resize import random_resize

__all__ = [
    "gaussian_kernel",
    "gaussian_kernels",
    "alignment_shift",
    "kernel_size_for",
    "gaussian_blur",
    "unsharp_mask",
    "blur",
    "subsample",
    "degrade_with_kernel",
    "imresize",
    "bicubic_kernel_weights",
    "add_gaussian_noise",
    "add_poisson_noise",
    "jpeg",
    "quantize_8bit",
    "PRESETS",
    "CameraPreset",
    "Degraded",
    "degrade",
    "list_presets",
    "RealESRGANConfig",
    "SecondOrderDegraded",
    "degrade_realesrgan",
    "degrade_realesrgan_batch",
    "usm_sharpen",
    "apply_blur",
    "random_blur_kernel",
    "random_sinc_kernel",
    "sinc_kernel",
    "random_resize",
    "random_noise",
    "random_jpeg",
]
