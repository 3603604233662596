"""Blur kernels, blurring, subsampling and MATLAB-compatible bicubic resizing.

Pure tensor functions on BCHW float tensors. A degradation ``D_k(y)`` in the papers is
:func:`blur` with kernel ``k`` followed by :func:`subsample` by the scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_kernel",
    "blur",
    "subsample",
    "degrade_with_kernel",
    "imresize",
    "bicubic_kernel_weights",
]


def gaussian_kernel(
    size: int,
    sigma_x: float,
    sigma_y: float | None = None,
    theta: float = 0.0,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """An anisotropic Gaussian kernel, ``size x size``, summing to 1.

    ``sigma_x``/``sigma_y`` are the standard deviations along the principal axes (pixels),
    ``theta`` the rotation of the first axis in radians. ``sigma_y=None`` is isotropic.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    sy = sigma_x if sigma_y is None else sigma_y
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sigma_x**2, sy**2], dtype=torch.float64)) @ rot.T
    inv = torch.linalg.inv(cov)
    r = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    xy = torch.stack([xx, yy], -1)
    k = torch.exp(-0.5 * torch.einsum("...i,ij,...j->...", xy, inv, xy))
    return (k / k.sum()).to(dtype)


def blur(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve each channel of a BCHW ``image`` with a 2-D ``kernel`` (reflect padding)."""
    if image.ndim != 4:
        raise ValueError(f"expected a BCHW tensor, got shape {tuple(image.shape)}")
    kh, kw = kernel.shape[-2:]
    c = image.shape[1]
    pad = (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2)
    mode = "reflect" if min(image.shape[-2:]) > max(kh, kw) // 2 else "replicate"
    x = F.pad(image, pad, mode=mode)
    # conv2d is correlation; flip so that this is a true convolution for asymmetric kernels
    w = kernel.flip(-1, -2).to(image).expand(c, 1, kh, kw)
    return F.conv2d(x, w, groups=c)


def subsample(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Keep every ``scale``-th pixel, starting at 0 (the direct-downsampling convention)."""
    return image[..., ::scale, ::scale]


def degrade_with_kernel(image: torch.Tensor, kernel: torch.Tensor, scale: int) -> torch.Tensor:
    """``D_k(y)``: blur with ``kernel`` then subsample by ``scale`` (AdaSSR's pair maker)."""
    return subsample(blur(image, kernel), scale)


def _cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    near = (a + 2) * ax3 - (a + 3) * ax2 + 1
    far = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def bicubic_kernel_weights(in_size: int, out_size: int, scale: float, antialias: bool = True) -> torch.Tensor:
    """The ``out_size x in_size`` matrix of MATLAB ``imresize`` bicubic weights.

    Cubic convolution with a = -0.5; when shrinking with ``antialias`` the kernel is
    widened by ``1/scale``; borders are handled by symmetric reflection, as MATLAB does.
    """
    shrink = scale < 1 and antialias
    width = 4.0 / scale if shrink else 4.0
    out = torch.arange(1, out_size + 1, dtype=torch.float64)
    centre = out / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(centre - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = centre[:, None] - idx
    w = scale * _cubic(dist * scale) if shrink else _cubic(dist)
    w = w / w.sum(1, keepdim=True)
    # symmetric reflection of 1-based indices into [1, in_size]
    j = idx - 1
    period = 2 * in_size
    j = torch.remainder(j, period)
    j = torch.where(j >= in_size, period - 1 - j, j).long()
    mat = torch.zeros(out_size, in_size, dtype=torch.float64)
    mat.scatter_add_(1, j, w)
    return mat


def imresize(image: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None,
             antialias: bool = True) -> torch.Tensor:
    """MATLAB-compatible bicubic resize of a BCHW tensor (no clamping).

    Give either ``scale`` (output = ceil(input * scale)) or ``size`` = (height, width).
    This is the standard way SR benchmarks make bicubic LR images.
    """
    h, w = image.shape[-2:]
    if size is None:
        if scale is None:
            raise ValueError("give scale or size")
        size = (math.ceil(h * scale), math.ceil(w * scale))
    oh, ow = size
    sh, sw = (scale, scale) if scale is not None else (oh / h, ow / w)
    mh = bicubic_kernel_weights(h, oh, sh, antialias).to(image.device, image.dtype if image.is_floating_point() else torch.float32)
    mw = bicubic_kernel_weights(w, ow, sw, antialias).to(mh)
    x = image.to(mh.dtype)
    return torch.einsum("oh,bchw,pw->bcop", mh, x, mw)
