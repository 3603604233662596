"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021, §3; METHODS.md §4).

The HR image is first sharpened with unsharp masking (USM), as Real-ESRGAN trains on
USM'd targets. Then, per image:

1. stage 1: blur (:mod:`.blur_kernels`) -> random resize (:mod:`.resize`) -> noise
   (:mod:`.random_noise`) -> JPEG (:mod:`.jpeg_codec`);
2. stage 2: blur with probability 0.8 -> random resize relative to the target LR size ->
   noise -> with probability 1/2 [resize to the target + final sinc (p 0.8)] then JPEG,
   else JPEG then [resize + sinc];
3. clamp and round to 8 bits.

Every probability and range is a field of :class:`RealESRGANConfig`, whose defaults are
Real-ESRGAN's ``options/train_realesrgan_x4plus.yml`` together with the constants in
``realesrgan/data/realesrgan_dataset.py`` (kernel sizes 7-21, sinc cut-offs) and
``realesrgan/models/realesrgan_model.py`` (the order of the steps, the two final orders).

Randomness: every draw comes from the ``torch.Generator`` passed in (scalar parameters
and noise maps on the generator's device), image after image, so a seed fixes the result.
Unlike Real-ESRGAN, which shares the resize and the noise kind across a batch (and mixes
batches through a pool to compensate), every image here draws all its own parameters;
images of different intermediate sizes then go through stages 1-2 one by one, and are
stacked again at the target size. :func:`draw_realesrgan_params` draws without applying,
:func:`apply_second_order` applies given draws, :func:`degrade_realesrgan_batch` does both.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ..errors import InputError
from . import _draws
from ._draws import Range
from .blur_kernels import (
    BlurConfig,
    KernelDraw,
    apply_blur,
    draw_blur_kernel,
    draw_sinc_kernel,
    generalized_gaussian_kernel,
    plateau_kernel,
    random_blur_kernel,
    random_sinc_kernel,
    sinc_kernel,
)
from .jpeg_codec import draw_jpeg_quality, encode_jpeg, jpeg_roundtrip, random_jpeg
from .kernels import unsharp_mask
from .noise import quantize_8bit
from .random_noise import NoiseConfig, NoiseDraw, apply_noise, draw_noise, random_noise
from .resize import RESIZE_MODES, ResizeConfig, ResizeDraw, draw_resize, random_resize, resize

__all__ = [
    "BlurConfig",
    "FinalDraws",
    "KernelDraw",
    "NoiseConfig",
    "NoiseDraw",
    "RealESRGANConfig",
    "RealESRGANParams",
    "ResizeConfig",
    "ResizeDraw",
    "SecondOrderDegraded",
    "StageDraws",
    "apply_blur",
    "apply_second_order",
    "degrade_realesrgan",
    "degrade_realesrgan_batch",
    "draw_realesrgan_params",
    "encode_jpeg",
    "generalized_gaussian_kernel",
    "jpeg_roundtrip",
    "plateau_kernel",
    "random_blur_kernel",
    "random_jpeg",
    "random_noise",
    "random_resize",
    "random_sinc_kernel",
    "sinc_kernel",
    "target_size",
    "usm_sharpen",
]

Stage = Literal[1, 2]


@dataclass(frozen=True)
class RealESRGANConfig:
    """Probabilities and ranges of Real-ESRGAN's ``train_realesrgan_x4plus`` options.

    Field names ending in 1/2 are the first/second stage; YAML keys in brackets.
    """

    kernel_sizes: tuple[int, int] = (7, 21)
    """Odd kernel sizes drawn uniformly from this range (``kernel_range`` in the dataset)."""
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    """iso, aniso, generalised iso, generalised aniso, plateau iso, plateau aniso (``kernel_prob``)."""
    sigma1: Range = (0.2, 3.0)
    """Blur sigma range, pixels (``blur_sigma``)."""
    sigma2: Range = (0.2, 1.5)
    """(``blur_sigma2``)"""
    beta_gaussian: Range = (0.5, 4.0)
    """Generalised Gaussian shape (``betag_range``, both stages)."""
    beta_plateau: Range = (1.0, 2.0)
    """Plateau shape (``betap_range``, both stages)."""
    sinc_prob1: float = 0.1
    """Probability of a sinc blur kernel in stage 1 (``sinc_prob``)."""
    sinc_prob2: float = 0.1
    """(``sinc_prob2``)"""
    blur_prob2: float = 0.8
    """Probability of blurring at all in stage 2 (``second_blur_prob``)."""
    resize_probs1: tuple[float, float, float] = (0.2, 0.7, 0.1)
    """up, down, keep (``resize_prob``)."""
    resize_range1: Range = (0.15, 1.5)
    """Smallest down factor, largest up factor (``resize_range``)."""
    resize_probs2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    """(``resize_prob2``)"""
    resize_range2: Range = (0.3, 1.2)
    """(``resize_range2``; relative to the target LR size)"""
    gaussian_noise_prob: float = 0.5
    """Stage 1: Gaussian noise with this probability, otherwise Poisson (``gaussian_noise_prob``)."""
    noise_range1: Range = (1.0, 30.0)
    """Gaussian sigma in 8-bit levels (``noise_range``)."""
    poisson_scale1: Range = (0.05, 3.0)
    """(``poisson_scale_range``)"""
    noise_range2: Range = (1.0, 25.0)
    """(``noise_range2``)"""
    poisson_scale2: Range = (0.05, 2.5)
    """(``poisson_scale_range2``)"""
    gray_noise_prob: float = 0.4
    """Stage 1 grey-noise probability (``gray_noise_prob``)."""
    jpeg_range: Range = (30.0, 95.0)
    """Stage 1 JPEG quality, integers uniform on it (``jpeg_range``)."""
    final_sinc_prob: float = 0.8
    """Probability of the final sinc filter (``final_sinc_prob``)."""
    usm: bool = True
    """Sharpen the HR image (weight 0.5, radius 50, threshold 10) before degrading it."""
    rotation: Range = (-math.pi, math.pi)
    """Angle range of the anisotropic kernels (``random_mixed_kernels`` call in the dataset)."""
    sinc_omega_small: Range = (math.pi / 3, math.pi)
    """Stage-blur sinc cut-off (rad/px) for kernels smaller than 13 px (dataset constant)."""
    sinc_omega_large: Range = (math.pi / 5, math.pi)
    """Stage-blur sinc cut-off for kernels of 13 px and more (dataset constant)."""
    final_sinc_omega: Range = (math.pi / 3, math.pi)
    """Final sinc cut-off, any size (dataset constant)."""
    gaussian_noise_prob2: float = 0.5
    """(``gaussian_noise_prob2``)"""
    gray_noise_prob2: float = 0.4
    """(``gray_noise_prob2``)"""
    jpeg_range2: Range = (30.0, 95.0)
    """Final JPEG quality (``jpeg_range2``)."""
    resize_first_prob: float = 0.5
    """Probability of [resize + sinc] before the final JPEG rather than after (model code)."""

    def __post_init__(self) -> None:
        stages: tuple[Stage, ...] = (1, 2)
        for stage in stages:  # the stage configs check their own fields
            self.blur_config(stage)
            self.resize_config(stage)
            self.noise_config(stage)
        for name in ("blur_prob2", "final_sinc_prob", "resize_first_prob"):
            _draws.check_prob(name, getattr(self, name))
        _draws.check_range("final_sinc_omega", self.final_sinc_omega, low=1e-6, high=math.pi)
        for name in ("jpeg_range", "jpeg_range2"):
            _draws.check_range(name, getattr(self, name), low=1, high=100)

    def blur_config(self, stage: Stage) -> BlurConfig:
        """The stage's kernel draws (:func:`~ttasr.degradations.blur_kernels.random_blur_kernel`)."""
        return BlurConfig(
            kernel_sizes=self.kernel_sizes, family_probs=self.kernel_probs,
            sigma=self.sigma1 if stage == 1 else self.sigma2, rotation=self.rotation,
            beta_generalized=self.beta_gaussian, beta_plateau=self.beta_plateau,
            sinc_prob=self.sinc_prob1 if stage == 1 else self.sinc_prob2,
            sinc_omega_small=self.sinc_omega_small, sinc_omega_large=self.sinc_omega_large,
        )

    def resize_config(self, stage: Stage) -> ResizeConfig:
        """The stage's resize draws (:func:`~ttasr.degradations.resize.random_resize`)."""
        if stage == 1:
            return ResizeConfig(self.resize_probs1, self.resize_range1)
        return ResizeConfig(self.resize_probs2, self.resize_range2)

    def noise_config(self, stage: Stage) -> NoiseConfig:
        """The stage's noise draws (:func:`~ttasr.degradations.random_noise.random_noise`)."""
        if stage == 1:
            return NoiseConfig(self.gaussian_noise_prob, self.noise_range1, self.poisson_scale1, self.gray_noise_prob)
        return NoiseConfig(self.gaussian_noise_prob2, self.noise_range2, self.poisson_scale2, self.gray_noise_prob2)


# --------------------------------------------------------------------------- draws


@dataclass(frozen=True)
class StageDraws:
    """One stage's draws; ``blur`` is ``None`` when stage 2 skips its blur."""

    blur: KernelDraw | None
    resize: ResizeDraw
    noise: NoiseDraw
    jpeg_quality: int | None
    """Stage 1's JPEG quality; ``None`` in stage 2, whose JPEG is in :class:`FinalDraws`."""


@dataclass(frozen=True)
class FinalDraws:
    """The last step of stage 2: [resize to the target + sinc] and JPEG, in either order."""

    resize_first: bool
    """True: [resize + sinc] then JPEG; False: JPEG then [resize + sinc]."""
    mode: str
    """Interpolation mode of the resize to the target size."""
    size: tuple[int, int]
    """The target LR (height, width)."""
    sinc: KernelDraw | None
    """The final sinc filter, ``None`` when not applied (Real-ESRGAN's pulse kernel)."""
    jpeg_quality: int


@dataclass(frozen=True)
class RealESRGANParams:
    """Every parameter drawn for one image (noise maps aside)."""

    stage1: StageDraws
    stage2: StageDraws
    final: FinalDraws

    def as_dict(self) -> dict[str, Any]:
        """Nested plain dicts (JSON-serialisable)."""
        return dataclasses.asdict(self)


def target_size(hr_size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The LR size ``ceil(H / s) x ceil(W / s)`` (Real-ESRGAN crops to multiples of ``s``,
    where this equals its ``H // s``)."""
    return math.ceil(hr_size[0] / scale), math.ceil(hr_size[1] / scale)


def draw_realesrgan_params(generator: torch.Generator, hr_size: tuple[int, int], scale: int,
                           config: RealESRGANConfig | None = None) -> RealESRGANParams:
    """Draw one image's parameters, in pipeline order: stage 1 (kernel, resize, noise, JPEG),
    stage 2 (blur or not, kernel, resize, noise), final (sinc or not, its kernel, order,
    mode, JPEG)."""
    cfg = config or RealESRGANConfig()
    h, w = hr_size
    target = target_size(hr_size, scale)
    stage1 = StageDraws(
        draw_blur_kernel(generator, cfg.blur_config(1)),
        draw_resize(generator, cfg.resize_config(1), (h, w)),
        draw_noise(generator, cfg.noise_config(1)),
        draw_jpeg_quality(generator, cfg.jpeg_range),
    )
    blur2 = draw_blur_kernel(generator, cfg.blur_config(2)) if _draws.bernoulli(generator, cfg.blur_prob2) else None
    stage2 = StageDraws(
        blur2,
        draw_resize(generator, cfg.resize_config(2), target),
        draw_noise(generator, cfg.noise_config(2)),
        None,
    )
    sinc = (draw_sinc_kernel(generator, cfg.kernel_sizes, cfg.final_sinc_omega)
            if _draws.bernoulli(generator, cfg.final_sinc_prob) else None)
    resize_first = _draws.bernoulli(generator, cfg.resize_first_prob)
    mode = RESIZE_MODES[_draws.integer(generator, 0, len(RESIZE_MODES) - 1)]
    final = FinalDraws(resize_first, mode, target, sinc, draw_jpeg_quality(generator, cfg.jpeg_range2))
    return RealESRGANParams(stage1, stage2, final)


# --------------------------------------------------------------------------- pipeline


def usm_sharpen(img: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10) -> torch.Tensor:
    """Unsharp masking as Real-ESRGAN applies to HR targets: sharpen where the detail > threshold levels."""
    size = 2 * radius + 1
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a given aperture
    return unsharp_mask(img, sigma, weight, threshold / 255.0, size)


def _resize_and_sinc(x: torch.Tensor, final: FinalDraws) -> torch.Tensor:
    x = resize(x, final.size, final.mode)
    return apply_blur(x, final.sinc.build()) if final.sinc is not None else x


def _stages_after_first_blur(x: torch.Tensor, p: RealESRGANParams, generator: torch.Generator) -> torch.Tensor:
    """One image (1xCxHxW) from its first blur on."""
    s1, s2, final = p.stage1, p.stage2, p.final
    assert s1.jpeg_quality is not None
    x = resize(x, s1.resize.size, s1.resize.mode)
    x = apply_noise(x, [s1.noise], generator)
    x = jpeg_roundtrip(x.clamp(0, 1), s1.jpeg_quality)
    if s2.blur is not None:
        x = apply_blur(x, s2.blur.build())
    x = resize(x, s2.resize.size, s2.resize.mode)
    x = apply_noise(x, [s2.noise], generator)
    if final.resize_first:
        x = _resize_and_sinc(x, final)
        return jpeg_roundtrip(x.clamp(0, 1), final.jpeg_quality)
    x = jpeg_roundtrip(x.clamp(0, 1), final.jpeg_quality)
    return _resize_and_sinc(x, final)


def apply_second_order(x: torch.Tensor, params: list[RealESRGANParams], generator: torch.Generator) -> torch.Tensor:
    """Degrade a BCHW batch in [0, 1] (already sharpened, if wanted) with each image's drawn
    ``params``; the noise maps come from ``generator``. The LR is 8-bit quantised.

    The first blur runs batched (one grouped convolution); after the first resize the
    images differ in size and go on one by one. JPEG runs on the CPU (PIL).
    """
    if len(params) != x.shape[0]:
        raise InputError(f"need one parameter set per image ({x.shape[0]}), got {len(params)}")
    sizes = {p.final.size for p in params}
    if len(sizes) != 1:
        raise InputError(f"all images need the same target size, got {sorted(sizes)}")
    x = apply_blur(x, [p.stage1.blur.build() if p.stage1.blur is not None else None for p in params])
    lr = [_stages_after_first_blur(x[i : i + 1], p, generator) for i, p in enumerate(params)]
    return quantize_8bit(torch.cat(lr))


def _check_input(hr: torch.Tensor, scale: int) -> None:
    if not isinstance(hr, torch.Tensor) or hr.ndim != 4 or not hr.is_floating_point():
        raise InputError(f"degrade_realesrgan expects a float BCHW tensor in [0, 1], got {getattr(hr, 'shape', hr)}")
    if not isinstance(scale, int) or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}")
    if min(hr.shape[-2:]) < 4 * scale:
        raise InputError(f"image {tuple(hr.shape[-2:])} is too small for scale {scale}: use at least {4 * scale} px")


def _second_order(target: torch.Tensor, scale: int, generator: torch.Generator,
                  cfg: RealESRGANConfig) -> tuple[torch.Tensor, list[RealESRGANParams]]:
    hw = (int(target.shape[-2]), int(target.shape[-1]))
    params = [draw_realesrgan_params(generator, hw, scale, cfg) for _ in range(target.shape[0])]
    return apply_second_order(target, params, generator), params


def degrade_realesrgan_batch(hr: torch.Tensor, scale: int, generator: torch.Generator,
                             config: RealESRGANConfig | None = None) -> tuple[torch.Tensor, list[RealESRGANParams]]:
    """Real-ESRGAN's second-order degradation of a BCHW batch in [0, 1] (module docstring).

    Returns the LR batch, ``B x C x ceil(H/s) x ceil(W/s)`` on the 8-bit grid in ``hr``'s
    dtype and device, and every image's draws. With ``config.usm`` the degraded image is
    ``usm_sharpen(hr)``, which is also the training target. All parameters are drawn
    (image by image) before any noise map.
    """
    _check_input(hr, scale)
    cfg = config or RealESRGANConfig()
    return _second_order(usm_sharpen(hr) if cfg.usm else hr, scale, generator, cfg)


@dataclass(frozen=True)
class SecondOrderDegraded:
    lr: torch.Tensor
    """``(B, C, H/s, W/s)``, 8-bit quantised, in [0, 1]."""
    hr: torch.Tensor
    """The (USM-sharpened when ``config.usm``) HR target the LR was made from."""
    seed: int
    params: tuple[RealESRGANParams, ...] = ()
    """Each image's draws."""


def degrade_realesrgan(hr: torch.Tensor, scale: int, seed: int, config: RealESRGANConfig | None = None) -> SecondOrderDegraded:
    """:func:`degrade_realesrgan_batch` with ``torch.Generator().manual_seed(seed)`` (CPU draws,
    so a seed gives the same LR on every device); also returns the HR target."""
    _check_input(hr, scale)
    cfg = config or RealESRGANConfig()
    target = usm_sharpen(hr) if cfg.usm else hr
    lr, params = _second_order(target, scale, torch.Generator().manual_seed(int(seed)), cfg)
    return SecondOrderDegraded(lr=lr, hr=target, seed=int(seed), params=tuple(params))
