"""MATLAB's image functions as the no-reference metrics use them, as pure float64 tensor functions.

The reference implementations of NIQE, BRISQUE and the perceptual index are MATLAB scripts;
reproducing their numbers needs MATLAB's exact conventions, which differ from the usual
Python ones in small ways that move the scores:

- ``round`` (and every conversion to ``uint8``) rounds halves away from zero, not to even;
- ``rgb2gray`` weights R, G, B by the first row of the inverse NTSC (YIQ) matrix,
  0.298936..., 0.587043..., 0.114020... (not 0.299/0.587/0.114), and returns ``uint8``
  for ``uint8`` input, i.e. rounded;
- ``fspecial('gaussian', n, sigma)`` zeroes values under ``eps * max`` and normalises;
- ``imfilter(..., 'replicate')`` is a correlation over an edge-replicated image;
- ``imresize(x, scale)`` is bicubic (Keys, a = -0.5) with, when shrinking, the kernel
  stretched by ``1/scale`` (antialiasing), mirror-symmetric borders and weights normalised
  per output pixel; each dimension is resized in turn, rows first.

Images are ``(..., H, W)`` float64 tensors on the [0, 255] scale unless stated otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import InputError

__all__ = [
    "RGB2GRAY_WEIGHTS",
    "fspecial_gaussian",
    "imfilter_replicate",
    "imresize",
    "rgb2gray",
    "rgb2ycbcr_luma",
    "round_half_away",
    "to_uint8_levels",
]

#: ``rgb2gray``'s weights: the first row of ``inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703])``,
#: as MATLAB's documentation prints them.
RGB2GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)

#: ``rgb2ycbcr``'s luma row (ITU-R BT.601, studio range) for 8-bit RGB: ``Y = 16 + (w . RGB) / 255``.
_YCBCR_LUMA = (65.481, 128.553, 24.966)


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's ``round``: halves go away from zero (``torch.round`` sends them to even)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def to_uint8_levels(x: torch.Tensor) -> torch.Tensor:
    """MATLAB's ``uint8(x)`` for a float array on [0, 255]: round half away, saturate; stays float64."""
    return round_half_away(x.to(torch.float64)).clamp_(0.0, 255.0)


def rgb2gray(rgb: torch.Tensor) -> torch.Tensor:
    """MATLAB ``rgb2gray`` of an 8-bit image: ``(..., 3, H, W)`` levels in [0, 255] -> ``(..., H, W)`` levels."""
    r, g, b = rgb.to(torch.float64).unbind(-3)
    wr, wg, wb = RGB2GRAY_WEIGHTS
    return to_uint8_levels(wr * r + wg * g + wb * b)


def rgb2ycbcr_luma(rgb: torch.Tensor) -> torch.Tensor:
    """Y of MATLAB ``rgb2ycbcr`` of an 8-bit image: ``(..., 3, H, W)`` levels -> ``(..., H, W)`` levels in [16, 235]."""
    r, g, b = rgb.to(torch.float64).unbind(-3)
    wr, wg, wb = _YCBCR_LUMA
    return to_uint8_levels(16.0 + (wr * r + wg * g + wb * b) / 255.0)


def fspecial_gaussian(size: int, sigma: float, *, device: torch.device | str | None = None) -> torch.Tensor:
    """``fspecial('gaussian', size, sigma)``: a ``(size, size)`` float64 window that sums to 1."""
    half = (size - 1) / 2
    ax = torch.arange(size, dtype=torch.float64, device=device) - half
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    h = torch.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h = torch.where(h < torch.finfo(torch.float64).eps * h.max(), torch.zeros_like(h), h)
    return h / h.sum()


def imfilter_replicate(image: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """``imfilter(image, window, 'replicate')``: correlation of ``(B, H, W)`` with an odd square window."""
    if image.ndim != 3:
        raise InputError(f"imfilter_replicate expects a (B, H, W) tensor, got shape {tuple(image.shape)}")
    k = window.shape[-1]
    padded = F.pad(image[:, None], (k // 2,) * 4, mode="replicate")
    return F.conv2d(padded, window.to(image)[None, None])[:, 0]


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5, as in ``imresize``."""
    a = x.abs()
    a2, a3 = a * a, a * a * a
    inner = (1.5 * a3 - 2.5 * a2 + 1) * (a <= 1)
    outer = (-0.5 * a3 + 2.5 * a2 - 4 * a + 2) * ((a > 1) & (a <= 2))
    return inner + outer


def _resize_matrix(n_in: int, scale: float, device: torch.device) -> torch.Tensor:
    """The ``(ceil(n_in * scale), n_in)`` matrix of ``imresize``'s contributions along one dimension."""
    n_out = math.ceil(n_in * scale)
    # when shrinking, the kernel is stretched to the output's sampling rate (antialiasing)
    stretch = min(scale, 1.0)
    width = 4.0 / stretch
    u = torch.arange(1, n_out + 1, dtype=torch.float64) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None]
    w = stretch * _cubic(stretch * (u[:, None] - idx))
    w = w / w.sum(1, keepdim=True)
    mirror = torch.cat([torch.arange(n_in), torch.arange(n_in - 1, -1, -1)])
    src = mirror[torch.remainder(idx.long() - 1, 2 * n_in)]
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m.scatter_add_(1, src, w)
    return m.to(device)


def imresize(image: torch.Tensor, scale: float) -> torch.Tensor:
    """``imresize(image, scale)`` (bicubic, antialiased when shrinking) of a ``(B, H, W)`` float64 tensor.

    No rounding: MATLAB returns doubles for double input.
    """
    if image.ndim != 3:
        raise InputError(f"imresize expects a (B, H, W) tensor, got shape {tuple(image.shape)}")
    if scale <= 0:
        raise InputError(f"imresize needs a positive scale, got {scale}")
    rows = _resize_matrix(image.shape[-2], scale, image.device)
    cols = _resize_matrix(image.shape[-1], scale, image.device)
    return rows @ image.to(torch.float64) @ cols.T
