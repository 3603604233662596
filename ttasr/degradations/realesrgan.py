"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021, §3; METHODS.md §4).

Each stage is blur -> random resize -> noise -> JPEG; the second stage ends with the
resize to the target LR size and a sinc filter, in random order with its JPEG. Kernel
families (§3.1): isotropic/anisotropic Gaussian, generalised Gaussian
``exp(-1/2 (x^T S^-1 x)^beta)``, plateau ``1 / (1 + (x^T S^-1 x)^beta)``, and the 2-D sinc
low-pass (§3.2, "ringing and overshoot"). The HR image is first sharpened with unsharp
masking (USM), as Real-ESRGAN trains on USM'd targets.

All randomness comes from ``torch.Generator().manual_seed(seed)`` on the CPU; each image
in a batch gets its own draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError
from .kernels import blur, gaussian_kernel, unsharp_mask
from .noise import add_gaussian_noise, add_poisson_noise, jpeg, quantize_8bit

__all__ = [
    "RealESRGANConfig",
    "SecondOrderDegraded",
    "degrade_realesrgan",
    "generalized_gaussian_kernel",
    "plateau_kernel",
    "sinc_kernel",
    "usm_sharpen",
]

Range = tuple[float, float]


@dataclass(frozen=True)
class RealESRGANConfig:
    """Probabilities and ranges of Real-ESRGAN's ``train_realesrgan_x4plus`` options."""

    kernel_sizes: tuple[int, int] = (7, 21)
    """Odd kernel sizes drawn uniformly from this range."""
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    """iso, aniso, generalised iso, generalised aniso, plateau iso, plateau aniso."""
    sigma1: Range = (0.2, 3.0)
    sigma2: Range = (0.2, 1.5)
    beta_gaussian: Range = (0.5, 4.0)
    beta_plateau: Range = (1.0, 2.0)
    sinc_prob1: float = 0.1
    sinc_prob2: float = 0.1
    blur_prob2: float = 0.8
    resize_probs1: tuple[float, float, float] = (0.2, 0.7, 0.1)
    """up, down, keep."""
    resize_range1: Range = (0.15, 1.5)
    resize_probs2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: Range = (0.3, 1.2)
    gaussian_noise_prob: float = 0.5
    """Otherwise Poisson noise."""
    noise_range1: Range = (1.0, 30.0)
    """Gaussian sigma in 8-bit levels."""
    poisson_scale1: Range = (0.05, 3.0)
    noise_range2: Range = (1.0, 25.0)
    poisson_scale2: Range = (0.05, 2.5)
    gray_noise_prob: float = 0.4
    jpeg_range: Range = (30.0, 95.0)
    final_sinc_prob: float = 0.8
    usm: bool = True
    """Sharpen the HR image (weight 0.5, radius 50, threshold 10) before degrading it."""


@dataclass(frozen=True)
class SecondOrderDegraded:
    lr: torch.Tensor
    """``(B, C, H/s, W/s)``, 8-bit quantised, in [0, 1]."""
    hr: torch.Tensor
    """The (USM-sharpened when ``config.usm``) HR target the LR was made from."""
    seed: int


# --------------------------------------------------------------------------- kernels


def _quad_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    inv = torch.linalg.inv(rot @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rot.T)
    r = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    xy = torch.stack([xx, yy], -1)
    return torch.einsum("...i,ij,...j->...", xy, inv, xy)


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> torch.Tensor:
    """``exp(-1/2 (x^T S^-1 x)^beta)``, normalised (Real-ESRGAN eq. 3; beta = 1 is Gaussian)."""
    k = torch.exp(-0.5 * _quad_form(size, sigma_x, sigma_y, theta).pow(beta))
    return (k / k.sum()).float()


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> torch.Tensor:
    """``1 / (1 + (x^T S^-1 x)^beta)``, normalised (Real-ESRGAN's plateau-shaped kernel)."""
    k = 1.0 / (1.0 + _quad_form(size, sigma_x, sigma_y, theta).pow(beta))
    return (k / k.sum()).float()


def sinc_kernel(size: int, omega_c: float) -> torch.Tensor:
    """Ideal circular low-pass with cutoff ``omega_c`` (rad/px): ``omega_c J1(omega_c r) / (2 pi r)`` (eq. 4)."""
    r = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    d = torch.sqrt(xx**2 + yy**2)
    safe = torch.where(d == 0, torch.ones_like(d), d)
    k = omega_c * torch.special.bessel_j1(omega_c * safe) / (2 * math.pi * safe)
    k = torch.where(d == 0, torch.full_like(d, omega_c**2 / (4 * math.pi)), k)
    return (k / k.sum()).float()


def usm_sharpen(img: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """Unsharp masking as Real-ESRGAN applies to HR targets: sharpen where the detail > threshold levels."""
    size = 2 * radius + 1
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a given aperture
    return unsharp_mask(img, sigma, weight, threshold / 255.0, size)


# --------------------------------------------------------------------------- sampling


def _u(rng: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=rng, dtype=torch.float64))


def _choice(rng: torch.Generator, probs: tuple[float, ...]) -> int:
    return int(torch.multinomial(torch.tensor(probs, dtype=torch.float64), 1, generator=rng))


def _random_kernel(rng: torch.Generator, cfg: RealESRGANConfig, sigma: Range, sinc_prob: float) -> torch.Tensor:
    lo, hi = cfg.kernel_sizes
    size = 2 * int(torch.randint(lo // 2, hi // 2 + 1, (), generator=rng)) + 1
    if _u(rng, 0, 1) < sinc_prob:
        omega = _u(rng, math.pi / 3, math.pi) if size < 13 else _u(rng, math.pi / 5, math.pi)
        return sinc_kernel(size, omega)
    kind = _choice(rng, cfg.kernel_probs)
    sx = _u(rng, *sigma)
    iso = kind % 2 == 0
    sy = sx if iso else _u(rng, *sigma)
    theta = 0.0 if iso else _u(rng, -math.pi, math.pi)
    if kind < 2:
        return gaussian_kernel(size, sx, sy, theta)
    if kind < 4:
        return generalized_gaussian_kernel(size, sx, sy, theta, _u(rng, *cfg.beta_gaussian))
    return plateau_kernel(size, sx, sy, theta, _u(rng, *cfg.beta_plateau))


def _random_resize(rng: torch.Generator, x: torch.Tensor, probs: tuple[float, float, float], rng_range: Range) -> torch.Tensor:
    kind = _choice(rng, probs)
    factor = _u(rng, 1.0, rng_range[1]) if kind == 0 else _u(rng, rng_range[0], 1.0) if kind == 1 else 1.0
    mode = ("area", "bilinear", "bicubic")[_choice(rng, (1 / 3, 1 / 3, 1 / 3))]
    h, w = x.shape[-2:]
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    return _resize(x, size, mode)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    return F.interpolate(x, size=size, mode=mode) if mode == "area" else F.interpolate(x, size=size, mode=mode, align_corners=False)


def _random_noise(rng: torch.Generator, x: torch.Tensor, cfg: RealESRGANConfig, sigma: Range, pscale: Range) -> torch.Tensor:
    gray = _u(rng, 0, 1) < cfg.gray_noise_prob
    if _u(rng, 0, 1) < cfg.gaussian_noise_prob:
        return add_gaussian_noise(x, _u(rng, *sigma) / 255.0, gray=gray, generator=rng)
    return add_poisson_noise(x, _u(rng, *pscale), gray=gray, generator=rng)


def _one(hr: torch.Tensor, scale: int, cfg: RealESRGANConfig, rng: torch.Generator) -> torch.Tensor:
    h, w = hr.shape[-2:]
    # stage 1
    x = blur(hr, _random_kernel(rng, cfg, cfg.sigma1, cfg.sinc_prob1))
    x = _random_resize(rng, x, cfg.resize_probs1, cfg.resize_range1)
    x = _random_noise(rng, x, cfg, cfg.noise_range1, cfg.poisson_scale1)
    x = jpeg(x.clamp(0, 1), round(_u(rng, *cfg.jpeg_range)))
    # stage 2
    if _u(rng, 0, 1) < cfg.blur_prob2:
        x = blur(x, _random_kernel(rng, cfg, cfg.sigma2, cfg.sinc_prob2))
    x = _random_resize(rng, x, cfg.resize_probs2, cfg.resize_range2)
    x = _random_noise(rng, x, cfg, cfg.noise_range2, cfg.poisson_scale2)
    target = (math.ceil(h / scale), math.ceil(w / scale))
    mode = ("area", "bilinear", "bicubic")[_choice(rng, (1 / 3, 1 / 3, 1 / 3))]
    final = (sinc_kernel(2 * int(torch.randint(3, 11, (), generator=rng)) + 1, _u(rng, math.pi / 3, math.pi))
             if _u(rng, 0, 1) < cfg.final_sinc_prob else None)
    quality = round(_u(rng, *cfg.jpeg_range))
    if _u(rng, 0, 1) < 0.5:  # resize + sinc, then JPEG
        x = _resize(x, target, mode)
        x = blur(x, final) if final is not None else x
        x = jpeg(x.clamp(0, 1), quality)
    else:  # JPEG, then resize + sinc
        x = jpeg(x.clamp(0, 1), quality)
        x = _resize(x, target, mode)
        x = blur(x, final) if final is not None else x
    return quantize_8bit(x)


def degrade_realesrgan(hr: torch.Tensor, scale: int, seed: int, config: RealESRGANConfig | None = None) -> SecondOrderDegraded:
    """Real-ESRGAN second-order degradation of a BCHW batch in [0, 1]; LR is ``ceil(H/s) x ceil(W/s)``."""
    if not isinstance(hr, torch.Tensor) or hr.ndim != 4 or not hr.is_floating_point():
        raise InputError(f"degrade_realesrgan expects a float BCHW tensor in [0, 1], got {getattr(hr, 'shape', hr)}")
    if not isinstance(scale, int) or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}")
    if min(hr.shape[-2:]) < 4 * scale:
        raise InputError(f"image {tuple(hr.shape[-2:])} is too small for scale {scale}: use at least {4 * scale} px")
    cfg = config or RealESRGANConfig()
    rng = torch.Generator().manual_seed(int(seed))
    target = usm_sharpen(hr) if cfg.usm else hr
    lr = torch.cat([_one(target[i : i + 1], scale, cfg, rng) for i in range(hr.shape[0])])
    return SecondOrderDegraded(lr=lr, hr=target, seed=int(seed))
