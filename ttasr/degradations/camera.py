"""Named, seeded, camera-like degradations for making LR test images.

A model trained on bicubic downsampling has never seen these, which is the situation
test-time adaptation is for. Every preset is the classical degradation model

    LR = JPEG_q( quantise( subsample(blur(HR, k), s) + n ) )

with ``k`` an (an)isotropic Gaussian (:func:`ttasr.degradations.kernels.gaussian_kernel`),
``s`` the scale (direct subsampling, :func:`~ttasr.degradations.kernels.subsample`), ``n``
Gaussian read noise plus Poisson shot noise (:mod:`ttasr.degradations.noise`) and an
optional JPEG round trip. The true kernel is returned, so oracle pairs can be made with
``degrade_with_kernel(hr, result.kernel, scale)``.

Alignment: kernels are shifted by ``-(s - 1)/2`` HR pixels (:func:`alignment_shift`) so
that LR pixel ``i`` is centred on HR block ``[s*i, s*i + s)``, as a sensor pixel that
integrates its area and as bicubic training data. With a centred kernel, direct
subsampling would also translate the image by ``(s - 1)/2`` HR pixels, a shift a
bicubic-trained model cannot know about (and an oracle fine-tuned on such pairs would
learn as a translation, inflating its gain).

Randomness: one parameter draw per call (shared by the whole batch: one camera), then
independent noise per pixel, all from ``torch.Generator().manual_seed(seed)`` on the CPU,
so a seed gives the same LR on every machine and device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._lookup import did_you_mean
from ..errors import InputError
from .kernels import alignment_shift, degrade_with_kernel, gaussian_kernel, imresize
from .noise import add_gaussian_noise, add_poisson_noise, jpeg, quantize_8bit

__all__ = ["CameraPreset", "Degraded", "PRESETS", "area_kernel", "degrade", "list_presets"]


@dataclass(frozen=True)
class CameraPreset:
    """A family of camera-like degradations; each ``(low, high)`` range is sampled uniformly.

    Equal ends give a fixed value. All noise levels are in 8-bit levels (x/255).
    """

    name: str
    """Key in :data:`PRESETS`."""
    description: str
    """One line for listings."""
    blur_sigma: tuple[float, float] = (1.2, 1.2)
    """Std. dev. of the Gaussian's major axis, in HR pixels (lens/defocus blur). 0 = no blur."""
    blur_aspect: tuple[float, float] = (1.0, 1.0)
    """Minor/major axis ratio of the Gaussian, in (0, 1]: 1 = isotropic (astigmatism, shake < 1)."""
    gaussian_noise: tuple[float, float] = (0.0, 0.0)
    """Gaussian (read) noise std. dev. in 8-bit levels, added to the LR image."""
    poisson_scale: tuple[float, float] = (0.0, 0.0)
    """Poisson (shot) noise scale, Real-ESRGAN's convention (noise std ~ scale*sqrt(v/256))."""
    gray_noise: bool = False
    """Same noise on R, G and B (luminance noise) instead of independent colour noise."""
    jpeg_quality: tuple[int, int] | None = None
    """JPEG quality range, or ``None`` for a lossless (PNG-like) output."""
    kernel_radius_sigmas: float = 3.0
    """Kernel half-width in major-axis sigmas: size = 2 * ceil(r * sigma) + 1 (>= 3)."""
    bicubic: bool = False
    """Downscale with MATLAB bicubic instead of blur + subsampling (the training degradation
    of bicubic-trained models; ``blur_sigma`` is then ignored)."""

    def __post_init__(self) -> None:
        for name in ("blur_sigma", "blur_aspect", "gaussian_noise", "poisson_scale"):
            lo, hi = getattr(self, name)
            if lo < 0 or hi < lo:
                raise InputError(f"CameraPreset {self.name!r}: {name} must be a range 0 <= low <= high, got {(lo, hi)}")
        if not (0 < self.blur_aspect[0] and self.blur_aspect[1] <= 1):
            raise InputError(f"CameraPreset {self.name!r}: blur_aspect must lie in (0, 1], got {self.blur_aspect}")
        if self.jpeg_quality is not None:
            lo, hi = self.jpeg_quality
            if not 1 <= lo <= hi <= 100:
                raise InputError(f"CameraPreset {self.name!r}: jpeg_quality must be 1 <= low <= high <= 100")


PRESETS: dict[str, CameraPreset] = {
    p.name: p
    for p in (
        CameraPreset(
            "optical-blur",
            "a soft lens: Gaussian blur sigma 1.2-1.6 HR px, slightly anisotropic, no noise",
            blur_sigma=(1.2, 1.6),
            blur_aspect=(0.75, 1.0),
        ),
        CameraPreset(
            "sensor-noise",
            "mild blur (sigma 0.8-1.0) + read noise 1-3 levels + shot noise (scale 0.1-0.3)",
            blur_sigma=(0.8, 1.0),
            gaussian_noise=(1.0, 3.0),
            poisson_scale=(0.1, 0.3),
        ),
        CameraPreset(
            "jpeg",
            "mild blur (sigma 0.8-1.0) + JPEG quality 80-90",
            blur_sigma=(0.8, 1.0),
            jpeg_quality=(80, 90),
        ),
        CameraPreset(
            "jpeg-heavy",
            "mild blur (sigma 0.8-1.0) + JPEG quality 40-60 (web re-uploads, messengers)",
            blur_sigma=(0.8, 1.0),
            jpeg_quality=(40, 60),
        ),
        CameraPreset(
            "bicubic-clean",
            "MATLAB bicubic downscaling, no noise: the training degradation of bicubic-trained models",
            bicubic=True,
        ),
        CameraPreset(
            "bicubic-jpeg",
            "MATLAB bicubic downscaling + JPEG quality 40-60: bicubic-downscaled images shared on the web",
            bicubic=True,
            jpeg_quality=(40, 60),
        ),
        CameraPreset(
            "camera",
            "blur sigma 1.2 + Gaussian noise 2 levels + JPEG 95 (the issue's example)",
            blur_sigma=(1.2, 1.2),
            gaussian_noise=(2.0, 2.0),
            jpeg_quality=(95, 95),
        ),
        CameraPreset(
            "luma-noise",
            "sensor-noise with the same noise on R, G and B (luminance only: colour noise already removed)",
            blur_sigma=(0.8, 1.0),
            gaussian_noise=(2.0, 4.0),
            poisson_scale=(0.1, 0.3),
            gray_noise=True,
        ),
        CameraPreset(
            "phone",
            "mild blur (sigma 0.8-1.2) + luminance noise 2-4 levels + shot noise + JPEG 75-90 "
            "(a phone's processing: colour noise removed, the rest compressed)",
            blur_sigma=(0.8, 1.2),
            gaussian_noise=(2.0, 4.0),
            poisson_scale=(0.1, 0.3),
            gray_noise=True,
            jpeg_quality=(75, 90),
        ),
        CameraPreset(
            "noisy-jpeg",
            "sensor-noise (colour noise 2-4 levels + shot noise) saved as JPEG 70-85: noise under compression",
            blur_sigma=(0.8, 1.0),
            gaussian_noise=(2.0, 4.0),
            poisson_scale=(0.1, 0.3),
            jpeg_quality=(70, 85),
        ),
    )
}


@dataclass(frozen=True)
class Degraded:
    """The result of :func:`degrade`."""

    lr: torch.Tensor
    """LR batch, ``(B, C, ceil(H/s), ceil(W/s))``, 8-bit quantised, in [0, 1]."""
    kernel: torch.Tensor | None
    """The true blur kernel (float32, sums to 1), a delta when the preset has no blur;
    ``None`` for a bicubic preset (the oracle pairs are then bicubic ones)."""
    preset: CameraPreset
    """The preset used."""
    params: dict[str, float]
    """The values drawn: sigma_x, sigma_y, theta, gaussian_noise (levels), poisson_scale, jpeg_quality."""
    scale: int
    seed: int


def list_presets() -> list[str]:
    return list(PRESETS)


def _preset(preset: str | CameraPreset) -> CameraPreset:
    if isinstance(preset, CameraPreset):
        return preset
    key = str(preset).lower().replace("_", "-")
    if key not in PRESETS:
        # not _lookup.lookup: the message quotes what the caller typed, not the normalised key
        raise InputError(
            f"unknown camera preset '{preset}'.{did_you_mean(key, PRESETS)} Available: {', '.join(PRESETS)}"
        )
    return PRESETS[key]


def _uniform(rng: torch.Generator, lo: float, hi: float) -> float:
    u = float(torch.rand((), generator=rng, dtype=torch.float64))
    return lo + (hi - lo) * u


def area_kernel(scale: int) -> torch.Tensor:
    """The no-blur sensor: each LR pixel the mean of its ``scale x scale`` HR block.

    An odd ``(2s-1)``-sized kernel whose top-left ``s x s`` block is ``1/s²``: with the
    true convolution of :func:`~ttasr.degradations.kernels.blur` and keeping pixel
    ``s*i``, LR pixel ``i`` averages HR pixels ``s*i … s*i + s - 1``.
    """
    k = torch.zeros(2 * scale - 1, 2 * scale - 1)
    k[:scale, :scale] = 1.0 / scale**2
    return k


def degrade(hr: torch.Tensor, scale: int, preset: str | CameraPreset, seed: int) -> Degraded:
    """Make a camera-like LR batch from ``hr`` (BCHW in [0, 1]) with a named or custom preset.

    Order: Gaussian blur (kernel ``k`` drawn from the preset, centre-aligned) -> keep every ``scale``-th pixel
    -> Gaussian + Poisson noise -> clamp and round to 8 bits -> JPEG (if any). The same
    ``seed`` gives the same result; different seeds give different kernels and noise.
    """
    p = _preset(preset)
    if not isinstance(hr, torch.Tensor) or hr.ndim != 4 or not hr.is_floating_point():
        shape = tuple(hr.shape) if isinstance(hr, torch.Tensor) else type(hr).__name__
        raise InputError(f"degrade expects a float BCHW tensor in [0, 1], got {shape}")
    if not isinstance(scale, int) or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}")
    if min(hr.shape[-2:]) < scale:
        raise InputError(f"image {tuple(hr.shape[-2:])} is smaller than the scale {scale}")
    rng = torch.Generator().manual_seed(int(seed))

    # Draw every parameter first, in a fixed order, so that each stays tied to the seed.
    sigma = _uniform(rng, *p.blur_sigma)
    aspect = _uniform(rng, *p.blur_aspect)
    theta = _uniform(rng, 0.0, math.pi)
    g_sigma = _uniform(rng, *p.gaussian_noise)
    p_scale = _uniform(rng, *p.poisson_scale)
    quality = round(_uniform(rng, *p.jpeg_quality)) if p.jpeg_quality is not None else 0

    shift = alignment_shift(scale)  # LR pixel i sees the centre of HR block [s*i, s*i + s)
    kernel: torch.Tensor | None
    if p.bicubic:
        kernel = None
        h, w = hr.shape[-2:]
        x = imresize(hr[..., : h - h % scale, : w - w % scale], 1.0 / scale)
    elif sigma > 0:
        size = max(3, 2 * math.ceil(p.kernel_radius_sigmas * sigma + abs(shift)) + 1)
        kernel = gaussian_kernel(size, sigma, sigma * aspect, theta, shift=shift)
    else:
        kernel = area_kernel(scale)
    if kernel is not None:
        x = degrade_with_kernel(hr, kernel, scale)
    if g_sigma > 0:
        x = add_gaussian_noise(x, g_sigma / 255.0, gray=p.gray_noise, generator=rng, clip=False)
    if p_scale > 0:
        x = add_poisson_noise(x, p_scale, gray=p.gray_noise, generator=rng, levels=256, clip=False)
    x = quantize_8bit(x)
    if quality:
        x = jpeg(x, quality)
    params = {
        "sigma_x": sigma,
        "sigma_y": sigma * aspect,
        "theta": theta,
        "gaussian_noise": g_sigma,
        "poisson_scale": p_scale,
        "jpeg_quality": float(quality),
    }
    return Degraded(lr=x, kernel=kernel, preset=p, params=params, scale=scale, seed=int(seed))
