"""PSNR and SSIM on the Y channel, in the convention of SR papers (METHODS.md §5).

SR papers (and basicsr, which most of them use) evaluate fidelity as follows:

1. both images are 8-bit (the SR output is saved as PNG, i.e. rounded to 256 levels);
2. ``crop_border`` pixels (usually the scale factor) are removed from every edge;
3. RGB is converted to the luma Y of ITU-R BT.601 as MATLAB ``rgb2ycbcr`` does
   (studio range, Y in [16, 235]), kept in floating point, on the [0, 255] scale;
4. PSNR uses a peak of 255; SSIM uses an 11x11 Gaussian window with sigma 1.5,
   K1 = 0.01, K2 = 0.03, L = 255, averaged over the "valid" part of the SSIM map
   (Wang et al., IEEE TIP 2004, eq. 13; the MATLAB reference ``ssim_index.m``).

Images here are float BCHW tensors in [0, 1]. ``quantize=True`` (the default) performs
step 1; pass ``False`` to measure unrounded model output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..errors import InputError
from .base import Metric

__all__ = [
    "PSNRY",
    "SSIMY",
    "psnr_y",
    "psnr_y_batch",
    "rgb_to_y",
    "ssim_y",
    "ssim_y_batch",
]

#: ITU-R BT.601 luma weights of MATLAB ``rgb2ycbcr`` for RGB in [0, 1], output in [0, 1].
_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_Y_OFFSET = 16.0 / 255.0

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """Luma of MATLAB ``rgb2ycbcr``: ``Y = 16/255 + (65.481 R + 128.553 G + 24.966 B)/255``.

    ``x`` is a ``(B, 3, H, W)`` tensor in [0, 1]; the result is ``(B, 1, H, W)`` in
    [16/255, 235/255], same dtype as ``x`` (float32 is promoted from integer input).
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"rgb_to_y expects an RGB BCHW tensor (B, 3, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return _Y_OFFSET + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b


def _prepare_y(sr: torch.Tensor, hr: torch.Tensor, crop_border: int, quantize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes, quantise, crop and convert both images to Y on the [0, 255] scale (float64)."""
    for name, t in (("sr", sr), ("hr", hr)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] not in (1, 3):
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"{name} must be a (B, 3, H, W) RGB or (B, 1, H, W) Y tensor in [0, 1], got {shape}")
    if sr.shape != hr.shape:
        raise InputError(
            f"sr and hr must have the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}. "
            "Crop the HR image to a multiple of the scale (mod-crop) before super-resolving, "
            "or crop the SR output to the HR size."
        )
    if crop_border < 0:
        raise InputError(f"crop_border must be >= 0, got {crop_border}")
    h, w = sr.shape[-2:]
    if h <= 2 * crop_border or w <= 2 * crop_border:
        raise InputError(f"crop_border={crop_border} removes the whole {h}x{w} image; use a smaller border")
    out = []
    for t in (sr, hr):
        t = t.detach().to(torch.float64)
        if quantize:
            t = (t.clamp(0, 1) * 255.0).round() / 255.0
        if crop_border:
            t = t[..., crop_border:-crop_border, crop_border:-crop_border]
        y = rgb_to_y(t) if t.shape[1] == 3 else t
        out.append(y * 255.0)
    return out[0], out[1]


def psnr_y_batch(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0, *, quantize: bool = True) -> torch.Tensor:
    """Per-image Y-channel PSNR in dB, shape ``(B,)`` (float64). Identical images give ``inf``."""
    y_sr, y_hr = _prepare_y(sr, hr, crop_border, quantize)
    mse = (y_sr - y_hr).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(255.0**2 / mse)


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_y_batch(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0, *, quantize: bool = True) -> torch.Tensor:
    """Per-image Y-channel SSIM, shape ``(B,)`` (float64).

    Wang et al. 2004, eq. 13 with an 11x11 Gaussian window (sigma 1.5), C1 = (0.01 L)^2,
    C2 = (0.03 L)^2, L = 255, population statistics, mean over the valid region of the map.
    """
    x, y = _prepare_y(sr, hr, crop_border, quantize)
    if min(x.shape[-2:]) < _SSIM_WINDOW:
        raise InputError(
            f"SSIM needs at least {_SSIM_WINDOW}x{_SSIM_WINDOW} pixels after cropping "
            f"crop_border={crop_border}, got {tuple(x.shape[-2:])}"
        )
    g = _gaussian_window(_SSIM_WINDOW, _SSIM_SIGMA, x.dtype, x.device)
    gh, gw = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def filt(t: torch.Tensor) -> torch.Tensor:  # separable, no padding: the "valid" map
        return F.conv2d(F.conv2d(t, gh), gw)

    c1 = (_SSIM_K1 * 255.0) ** 2
    c2 = (_SSIM_K2 * 255.0) ** 2
    mu_x, mu_y = filt(x), filt(y)
    var_x = filt(x * x) - mu_x**2
    var_y = filt(y * y) - mu_y**2
    cov = filt(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0, *, quantize: bool = True) -> float:
    """Y-channel PSNR (dB) averaged over the batch, as reported in SR papers."""
    return float(psnr_y_batch(sr, hr, crop_border, quantize=quantize).mean())


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0, *, quantize: bool = True) -> float:
    """Y-channel SSIM averaged over the batch, as reported in SR papers."""
    return float(ssim_y_batch(sr, hr, crop_border, quantize=quantize).mean())


class _YMetric(Metric):
    """A full-reference metric on Y with a fixed ``crop_border`` (usually the scale)."""

    higher_is_better: ClassVar[bool] = True
    needs_reference: ClassVar[bool] = True
    _batch: ClassVar[Callable[..., torch.Tensor]]

    def __init__(self, crop_border: int = 0, *, quantize: bool = True) -> None:
        self.crop_border = crop_border
        self.quantize = quantize

    def per_image(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image scores, shape ``(B,)`` (float64)."""
        return type(self)._batch(sr, self._reference(hr), self.crop_border, quantize=self.quantize)


class PSNRY(_YMetric):
    """PSNR on Y (dB). Higher is better."""

    name = "psnr_y"
    description = "PSNR (dB) on the BT.601 Y channel, 8-bit, border cropped"
    _batch = staticmethod(psnr_y_batch)


class SSIMY(_YMetric):
    """SSIM on Y. Higher is better."""

    name = "ssim_y"
    description = "SSIM on the Y channel, 11x11 Gaussian sigma 1.5"
    _batch = staticmethod(ssim_y_batch)
