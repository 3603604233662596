"""Degradations: blur kernels, resizing, and the synthetic degradations used for LR images."""

from .blur_kernels import apply_blur, random_blur_kernel, random_sinc_kernel, sinc_kernel
from .camera import PRESETS, CameraPreset, Degraded, degrade, list_presets
from .jpeg_codec import random_jpeg
from .kernels import (
    alignment_shift,
    bicubic_kernel,
    bicubic_kernel_weights,
    blur,
    degrade_with_kernel,
    gaussian_blur,
    gaussian_kernel,
    gaussian_kernels,
    imresize,
    kernel_size_for,
    response_distance,
    subsample,
    unsharp_mask,
)
from .noise import (
    add_gaussian_noise,
    add_poisson_noise,
    estimate_chroma_noise,
    estimate_noise_level,
    jpeg,
    quantize_8bit,
    white_noise_share,
)
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
    "PRESETS",
    "CameraPreset",
    "Degraded",
    "RealESRGANConfig",
    "SecondOrderDegraded",
    "add_gaussian_noise",
    "add_poisson_noise",
    "alignment_shift",
    "apply_blur",
    "bicubic_kernel",
    "bicubic_kernel_weights",
    "blur",
    "degrade",
    "degrade_realesrgan",
    "degrade_realesrgan_batch",
    "degrade_with_kernel",
    "estimate_chroma_noise",
    "gaussian_blur",
    "gaussian_kernel",
    "gaussian_kernels",
    "imresize",
    "jpeg",
    "kernel_size_for",
    "list_presets",
    "quantize_8bit",
    "random_blur_kernel",
    "random_jpeg",
    "random_noise",
    "random_resize",
    "random_sinc_kernel",
    "response_distance",
    "sinc_kernel",
    "subsample",
    "unsharp_mask",
    "usm_sharpen",
    "white_noise_share",
]
