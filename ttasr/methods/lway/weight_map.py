"""LWay's high-frequency weight map (Chen et al., CVPR 2024; METHODS §3).

LWay weights its LR reconstruction loss towards high-frequency detail, found with a
discrete wavelet transform of the LR image. Here:

* :func:`haar_dwt`: one level of the orthonormal 2-D Haar transform: for each 2x2 block
  ``[[a, b], [c, d]]``, ``LL = (a+b+c+d)/2``, ``LH = (a+b−c−d)/2`` (rows differ: horizontal
  edges), ``HL = (a−b+c−d)/2`` (columns differ: vertical edges), ``HH = (a−b−c+d)/2``.
* :func:`haar_detail_magnitude`: ``sqrt(Σ_channels LH² + HL² + HH²)`` per block, the size
  of all detail in it, colour edges included.
* :func:`high_frequency_weight_map`: that magnitude divided by its maximum over the image
  (so each image's map spans [0, 1] with 0 where the image is flat; a flat image gets an
  all-zero map), brought back to the image's size: ``"nearest"`` gives each pixel the
  value of its own 2x2 block, the exact support of the Haar coefficient; ``"bilinear"`` a
  smoother map. Odd sizes are padded by replication to even and cropped back.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ...errors import InputError

__all__ = ["haar_detail_magnitude", "haar_dwt", "high_frequency_weight_map"]


def _check(x: torch.Tensor) -> None:
    if x.ndim != 4:
        raise InputError(f"expected a B x C x H x W tensor, got shape {tuple(x.shape)}")


def haar_dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of the orthonormal Haar DWT of a ``B x C x H x W`` tensor (``H``, ``W``
    even): ``(LL, LH, HL, HH)``, each ``B x C x H/2 x W/2`` (module docstring)."""
    _check(x)
    if x.shape[-2] % 2 or x.shape[-1] % 2:
        raise InputError(f"haar_dwt needs an even height and width, got {x.shape[-2]}x{x.shape[-1]}")
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2


def haar_detail_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(Σ_c LH² + HL² + HH²)`` of :func:`haar_dwt`: ``B x 1 x H/2 x W/2``."""
    _, lh, hl, hh = haar_dwt(x)
    return (lh.square() + hl.square() + hh.square()).sum(dim=1, keepdim=True).sqrt()


def high_frequency_weight_map(y: torch.Tensor, upsample: Literal["nearest", "bilinear"] = "nearest") -> torch.Tensor:
    """LWay's weights of a ``B x C x H x W`` image: the Haar detail magnitude normalised by
    its per-image maximum, at full size: ``B x 1 x H x W`` in [0, 1]."""
    _check(y)
    if upsample not in ("nearest", "bilinear"):
        raise InputError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
    h, w = y.shape[-2:]
    even = F.pad(y, (0, w % 2, 0, h % 2), mode="replicate") if (h % 2 or w % 2) else y
    mag = haar_detail_magnitude(even.float())
    peak = mag.amax(dim=(1, 2, 3), keepdim=True)
    mag = torch.where(peak > 0, mag / peak.clamp_min(1e-12), torch.zeros_like(mag))
    size = (even.shape[-2], even.shape[-1])
    if upsample == "nearest":
        full = F.interpolate(mag, size=size, mode="nearest")
    else:
        full = F.interpolate(mag, size=size, mode="bilinear", align_corners=False)
    return full[..., :h, :w].clamp(0, 1)
