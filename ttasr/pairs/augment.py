"""Augmented internal training pairs for AdaSSR (Sec. III-C-3 and IV-A-1).

The LR input ``y`` is the only data. Each training sample is made from a region of ``y``:

1. random affine: resample the region by a factor ``a ~ U[0.5, 1.0]`` (the paper's way of
   mining self-similarity across scales; it names only the scale range),
2. a random rotation by a multiple of 90 degrees and/or flip,
3. RandAugment-style photometric changes (small brightness, contrast, saturation, gamma
   and hue changes),
4. the pair: ``input = D_k(region)`` with the estimated kernel (or bicubic), ``target =
   region``; geometric and photometric changes come *before* the degradation so every
   pair carries the image's own degradation ``k`` (flipping after blurring would flip an
   anisotropic kernel),
5. unsharp masking of the target by chance (the paper's "random USM sharpening on LR":
   the LR image ``y`` is the target here; Real-ESRGAN also sharpens the target only),
6. Gaussian (p 0.24) or Poisson (p 0.16) noise on the input, clamped to [0, 1].

The weight map (attention weights, target resolution) follows steps 1-2 and the crop.
Every random choice is drawn from the caller's CPU ``torch.Generator``: same seed, same
batch. The image operations run on the source's device, and the noise is drawn with
``noise_generator`` (the same generator by default; one on the source's device keeps a
GPU busy without ever waiting for it).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .._config import PlainConfig, option
from ..degradations.kernels import device_constant, imresize, unsharp_mask, upload_async
from ..degradations.noise import add_gaussian_noise, add_poisson_noise
from ..errors import InputError
from .estimation import KernelEstimate, make_lr_pair

__all__ = [
    "PHOTOMETRIC_OPS",
    "AugmentConfig",
    "PairSample",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_gamma",
    "adjust_hue",
    "adjust_saturation",
    "dihedral",
    "resample",
    "sample_batch",
    "sample_pair",
]


@dataclass(frozen=True)
class AugmentConfig(PlainConfig):
    """Switches and ranges of the pair augmentations. Defaults: paper where it says, else ours."""

    dihedral: bool = option(
        True,
        'Random rotation by 0/90/180/270 degrees and horizontal flip, each of the 8 equally likely (paper Sec. IV-A-1: "rotation, flip").',
    )
    affine_p: float = option(
        1.0,
        "Probability of the random scale. The paper gives none; like a random-affine transform it is applied to every sample, with the scale range below.",
        low=0,
        high=1,
    )
    affine_scale: tuple[float, float] = option(
        (0.5, 1.0), "Scale factor range, uniform (paper Sec. IV-A-1: U[0.5, 1.0])."
    )
    photometric_p: float = option(
        0.5,
        'Probability of applying RandAugment-style photometric ops (paper: "RandAugment", no probability given: ours).',
        low=0,
        high=1,
    )
    photometric_ops: int = option(
        2, "How many distinct ops RandAugment draws per sample (RandAugment's N; ours: 2).", low=0, high=5
    )
    photometric_magnitude: float = option(
        0.1,
        "Largest relative change of each op, e.g. brightness factor in [0.9, 1.1] (ours: small, so the pair's colours stay those of the test image).",
        low=0,
    )
    usm_p: float = option(
        0.3, 'Probability of unsharp masking the target (paper: "by chance", no value: ours).', low=0, high=1
    )
    usm_amount: float = option(0.5, "USM weight of the detail layer (Real-ESRGAN's 0.5).", low=0)
    usm_sigma: float = option(
        2.0, "Gaussian sigma of the USM blur, target pixels (ours).", low=0, low_open=True
    )
    usm_threshold: float = option(
        10 / 255, "Details weaker than this are not sharpened (Real-ESRGAN's 10/255), soft mask.", low=0
    )
    gaussian_noise_p: float = option(
        0.24, "Probability of Gaussian noise on the input (paper: 0.24).", low=0, high=1
    )
    poisson_noise_p: float = option(
        0.16,
        "Probability of Poisson noise on the input (paper: 0.16). The two are exclusive: one draw picks Gaussian (p 0.24), Poisson (next 0.16) or none (0.6), i.e. noise with p 0.4 split 60/40, as the paper's numbers suggest.",
        low=0,
        high=1,
    )
    gaussian_sigma: tuple[float, float] = option(
        (1 / 255, 10 / 255),
        "Gaussian noise sigma range (ours; a third of Real-ESRGAN's [1, 30]/255, since ``y`` already carries its own noise).",
        low=0,
    )
    poisson_scale: tuple[float, float] = option(
        (0.05, 1.0), "Poisson noise scale range (ours; Real-ESRGAN uses [0.05, 3]).", low=0
    )
    gray_noise_p: float = option(
        0.4, "Probability that noise is the same on all channels (Real-ESRGAN's 0.4).", low=0, high=1
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gaussian_noise_p + self.poisson_noise_p > 1.0:
            raise InputError(
                "gaussian_noise_p + poisson_noise_p must not exceed 1 (the noises are exclusive)"
            )
        lo, hi = self.affine_scale
        if not 0 < lo <= hi:
            raise InputError(f"affine_scale must satisfy 0 < lo <= hi, got {self.affine_scale}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """Plain random crops: every augmentation off."""
        return cls(
            dihedral=False,
            affine_p=0.0,
            photometric_p=0.0,
            usm_p=0.0,
            gaussian_noise_p=0.0,
            poisson_noise_p=0.0,
        )


@dataclass
class PairSample:
    """One training sample: ``input`` 1x3xpxp, ``target`` 1x3x(ps)x(ps), ``weights``
    1x1x(ps)x(ps), and the drawn ``params`` (crop, scale, ops) for logs and tests."""

    input: torch.Tensor
    target: torch.Tensor
    weights: torch.Tensor
    params: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- pure ops
def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` (0-7) of the dihedral group: rotate by ``k % 4`` quarter turns, then
    flip left-right when ``k >= 4``."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def resample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a BCHW image to ``size`` with MATLAB bicubic (antialiased when shrinking)."""
    return imresize(x, size=size)


def adjust_brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    return (x * factor).clamp(0, 1)


def adjust_contrast(x: torch.Tensor, factor: float, mean: torch.Tensor | float | None = None) -> torch.Tensor:
    """Blend with the mean grey level (``mean``; of ``x`` when None) by ``factor``."""
    m = _gray(x).mean(dim=(-3, -2, -1), keepdim=True) if mean is None else mean
    return ((x - m) * factor + m).clamp(0, 1)


def adjust_saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    g = _gray(x)
    return ((x - g) * factor + g).clamp(0, 1)


def adjust_gamma(x: torch.Tensor, gamma: float) -> torch.Tensor:
    return x.clamp(0, 1) ** gamma


def adjust_hue(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate the chroma plane of YIQ by ``angle`` radians (a linear hue shift)."""
    m = upload_async(_hue_matrix(angle, x.dtype), x.device)
    return torch.einsum("ij,bjhw->bihw", m, x).clamp(0, 1)


def _hue_matrix(angle: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 3x3 RGB matrix of :func:`adjust_hue`, on the host (a 3x3 inverse on a GPU would
    make the host wait for it)."""
    rgb2yiq, yiq2rgb = _yiq(dtype)
    c, s = math.cos(angle), math.sin(angle)
    rot = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=dtype)
    return yiq2rgb @ rot @ rgb2yiq


@functools.lru_cache(maxsize=8)
def _yiq(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    rgb2yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=dtype
    )
    return rgb2yiq, torch.linalg.inv(rgb2yiq)


_LUMA = (0.299, 0.587, 0.114)


def _gray(x: torch.Tensor) -> torch.Tensor:
    w = device_constant("luma", x.device, x.dtype,
                        lambda: torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1))
    return (x * w).sum(1, keepdim=True)


PHOTOMETRIC_OPS = ("brightness", "contrast", "saturation", "gamma", "hue")


# --------------------------------------------------------------------------- sampling
def _uniform(g: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def _randint(g: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (), generator=g))


def sample_pair(
    source: torch.Tensor,
    weights: torch.Tensor | None,
    estimate: KernelEstimate,
    scale: int,
    patch_size: int,
    config: AugmentConfig,
    generator: torch.Generator,
    noise_generator: torch.Generator | None = None,
) -> PairSample:
    """One augmented ``(input, target, weights)`` sample from ``source`` (1x3xHxW, ``y``).

    ``patch_size`` is the input side ``p``; the target is ``p * scale``. ``weights``
    (1x1xHxW, or None for ones) is cropped, resampled and rotated with the target.
    Random choices come from ``generator`` (CPU), noise from ``noise_generator`` (default
    ``generator``); the images stay on ``source``'s device.
    """
    _check_source(source, weights, scale, patch_size)
    if weights is None:
        weights = torch.ones_like(source[:, :1])
    m = _pair_margin(estimate, scale)
    src, wts = _pad_source(source, m), _pad_weights(weights, m)
    inp, target, wout, params = _augmented_pair(src, wts, m, estimate, scale, patch_size, config, generator,
                                               noise_generator)
    assert wout is not None
    return PairSample(inp.contiguous(), target.contiguous(), wout.contiguous(), params)


def _check_source(source: torch.Tensor, weights: torch.Tensor | None, scale: int, patch_size: int) -> None:
    """The checks of :func:`sample_pair`'s inputs (shapes only: nothing is read)."""
    if source.ndim != 4 or source.shape[0] != 1:
        raise InputError(f"source must be one image as a 1xCxHxW tensor, got shape {tuple(source.shape)}")
    if weights is not None and (weights.shape[-2:] != source.shape[-2:] or weights.ndim != 4):
        raise InputError(
            f"weights {tuple(weights.shape)} must be 1x1xHxW like the source {tuple(source.shape)}"
        )
    t = patch_size * scale
    h, w = source.shape[-2:]
    if min(h, w) < t:
        raise InputError(
            f"patch_size {patch_size} x scale {scale} = {t} target pixels does not fit in the "
            f"{h}x{w} image: use patch_size <= {min(h, w) // scale}"
        )


def _pair_margin(estimate: KernelEstimate, scale: int) -> int:
    """HR margin (multiple of ``scale``) around the target so the degradation of the crop
    equals the crop of the degradation."""
    if estimate.kind == "bicubic":
        reach = 2 * scale + 2  # bicubic support widened by the scale
    else:
        assert estimate.kernel is not None
        reach = estimate.kernel.shape[-1] // 2 + 1
    return scale * math.ceil(reach / scale)


def _pad_source(source: torch.Tensor, margin: int) -> torch.Tensor:
    """``source`` with a ``margin`` border: reflected, so the degradation has its margin
    even at the image edge (replicated where the image is too small to reflect)."""
    h, w = source.shape[-2:]
    return F.pad(source, (margin,) * 4, mode="reflect" if margin < min(h, w) else "replicate")


def _pad_weights(weights: torch.Tensor, margin: int) -> torch.Tensor:
    """Weights padded like :func:`_pad_source` pads the source (replicated)."""
    return F.pad(weights, (margin,) * 4, mode="replicate")


def _augmented_pair(
    src: torch.Tensor,
    wts: torch.Tensor | None,
    m: int,
    estimate: KernelEstimate,
    scale: int,
    patch_size: int,
    config: AugmentConfig,
    generator: torch.Generator,
    noise_generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """:func:`sample_pair` on a source (and weights) already padded by ``m``: ``(input,
    target, weights, params)``, not necessarily contiguous. ``wts=None`` skips the weights.

    Only the host reads ``generator``'s draws; the images are never read back, so on a GPU
    this queues work without waiting for it.
    """
    t = patch_size * scale
    region = t + 2 * m
    hp, wp = src.shape[-2:]
    params: dict[str, Any] = {}

    # 1. affine scale: take a (region / a) window and resample it to region
    a = 1.0
    if config.affine_p > 0 and _uniform(generator) < config.affine_p:
        lo, hi = config.affine_scale
        a = _uniform(generator, lo, hi)
        a = max(a, region / min(hp, wp))  # the window must fit in the image
    win = min(hp, wp, max(region, round(region / a)))
    params["affine_scale"] = region / win
    top, left = _randint(generator, hp - win + 1), _randint(generator, wp - win + 1)
    params["crop"] = (top - m, left - m, win)  # in source coordinates
    patch = src[..., top : top + win, left : left + win]
    wpatch = None if wts is None else wts[..., top : top + win, left : left + win]
    if win != region:
        patch = resample(patch, (region, region)).clamp(0, 1)
        if wpatch is not None:
            wpatch = F.interpolate(
                wpatch, size=(region, region), mode="bilinear", align_corners=False, antialias=True
            )

    # 2. rotation / flip
    k = _randint(generator, 8) if config.dihedral else 0
    params["dihedral"] = k
    patch = dihedral(patch, k)
    wpatch = None if wpatch is None else dihedral(wpatch, k)

    # 3. photometric ops, before the degradation so the pair stays consistent
    ops: list[tuple[str, float]] = []
    if config.photometric_p > 0 and _uniform(generator) < config.photometric_p:
        perm = torch.randperm(len(PHOTOMETRIC_OPS), generator=generator)[: config.photometric_ops]
        mag = config.photometric_magnitude
        for i in perm.tolist():
            name = PHOTOMETRIC_OPS[i]
            v = _uniform(generator, -mag, mag)
            ops.append((name, v))
            if name == "brightness":
                patch = adjust_brightness(patch, 1 + v)
            elif name == "contrast":
                patch = adjust_contrast(patch, 1 + v)
            elif name == "saturation":
                patch = adjust_saturation(patch, 1 + v)
            elif name == "gamma":
                patch = adjust_gamma(patch, 1 + v)
            else:
                patch = adjust_hue(patch, v * math.pi)
    params["photometric"] = ops

    # 4. the pair: degrade the region, crop the centre (margins are multiples of scale)
    lr, hr = make_lr_pair(patch, estimate, scale)
    ml = m // scale
    inp = lr[..., ml : ml + patch_size, ml : ml + patch_size]
    target = hr[..., m : m + t, m : m + t]
    wout = None if wpatch is None else wpatch[..., m : m + t, m : m + t]

    # 5. USM on the target
    usm = config.usm_p > 0 and _uniform(generator) < config.usm_p
    params["usm"] = usm
    if usm:
        target = unsharp_mask(target, config.usm_sigma, config.usm_amount, config.usm_threshold)

    # 6. noise on the input: one draw, Gaussian / Poisson / none
    noise_gen = generator if noise_generator is None else noise_generator
    u = _uniform(generator)
    noise = "none"
    if u < config.gaussian_noise_p + config.poisson_noise_p:
        gray = _uniform(generator) < config.gray_noise_p
        if u < config.gaussian_noise_p:
            sigma = _uniform(generator, *config.gaussian_sigma)
            inp = add_gaussian_noise(inp, sigma, gray, noise_gen)
            noise = f"gaussian({sigma:.4f}{', gray' if gray else ''})"
        else:
            s = _uniform(generator, *config.poisson_scale)
            inp = add_poisson_noise(inp, s, gray, noise_gen, levels=255)  # 255 photons at white
            noise = f"poisson({s:.3f}{', gray' if gray else ''})"
    params["noise"] = noise
    return inp, target, wout, params


def sample_batch(
    source: torch.Tensor,
    weights: torch.Tensor | None,
    estimate: KernelEstimate,
    scale: int,
    batch_size: int,
    patch_size: int,
    config: AugmentConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of AdaSSR internal pairs: ``(inputs Bx3xpxp, targets Bx3x(ps)x(ps),
    weights Bx1x(ps)x(ps))``; see :func:`sample_pair`. Deterministic for a seeded generator."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    samples = [
        sample_pair(source, weights, estimate, scale, patch_size, config, generator)
        for _ in range(batch_size)
    ]
    return (
        torch.cat([s.input for s in samples]),
        torch.cat([s.target for s in samples]),
        torch.cat([s.weights for s in samples]),
    )
