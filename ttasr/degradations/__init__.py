"""Degradations: blur kernels, resizing, and the synthetic degradations used for LR images."""

from .kernels import bicubic_kernel_weights, blur, degrade_with_kernel, gaussian_kernel, imresize, subsample

__all__ = ["gaussian_kernel", "blur", "subsample", "degrade_with_kernel", "imresize", "bicubic_kernel_weights"]
