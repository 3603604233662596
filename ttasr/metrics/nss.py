"""NIQE's natural-scene statistics (Mittal, Soundararajan and Bovik, IEEE SPL 2013), in float64 torch.

Each step of the MATLAB release (``niqe_release.zip``: ``computequality.m``,
``computefeature.m``, ``estimateaggdparam.m``) is one function here:

- :func:`mscn_coefficients` - eq. 1-3: ``(I - mu) / (sigma + 1)`` with a 7x7 Gaussian window
  (sigma 7/6), replicate borders;
- :func:`aggd_fit` - the moment-matching fit of an asymmetric generalised Gaussian (eq. 7),
  shape searched on MATLAB's grid ``0.2:0.001:10``;
- :func:`niqe_block_features` - the 18 features of a block: the AGGD fit of the coefficients
  and of their products with four circularly shifted copies (eq. 8 gives the mean);
- :func:`niqe_image_features` - 96x96 blocks at two scales (the second after
  ``imresize(., 0.5)``), 36 features per block, *all* blocks (the 0.75 sharpness threshold
  of the release only selects pristine patches when fitting the model, not here);
- :func:`niqe_distance` - eq. 10 with MATLAB's ``nanmean``/``nancov``/``pinv``;
- :func:`niqe_quality` - all of the above: ``computequality(im, 96, 96, 0, 0, mu, cov)``.

One deliberate departure, and why MATLAB's published scores cannot be matched exactly on
images with flat areas. Where the 7x7 window is constant (or symmetric about the pixel), the
numerator ``I - mu`` is exactly 0 in exact arithmetic, but a float filter leaves noise of
about 1e-14 whose *sign* depends on the filter's rounding. The AGGD fit counts every negative
and positive value (``mean(vec(vec<0).^2)``), so that noise moves NIQE by up to 0.5: MATLAB's
separable IPP ``imfilter`` gives one pattern of signs, a plain 7x7 convolution another. Here
coefficients with ``|I - mu| < 1e-10`` (on the 0-255 scale; float64 noise there is < 2e-12) are
set to exactly 0, the exact-arithmetic value, so scores do not depend on the platform. On
pyiqa's calibration images (MATLAB: 15.7536, 3.6549, 3.2355, 3.1840, 8.6352) this gives
15.7460, 3.6549, 3.2343, 3.2020, 8.6655: identical where nothing is flat (I04, to 1e-12),
within 0.01 on I03 and I06, and 0.018 (I08) and 0.030 (I19) above MATLAB on the two images
with large flat regions (block distortion, colour quantisation). Giving the flat pixels of
I08 the signs MATLAB's filter gave them reproduces MATLAB's 3.18403333858339 to 1e-12
(``tests/test_metric_niqe_matlab.py``), which pins the gap on that noise and nothing else.
"""

from __future__ import annotations

import functools
import math

import torch

from ..errors import InputError
from .matlab_ops import fspecial_gaussian, imfilter_replicate, imresize

__all__ = [
    "FLAT_TOLERANCE",
    "NIQE_BLOCK",
    "aggd_fit",
    "mscn_coefficients",
    "niqe_block_features",
    "niqe_distance",
    "niqe_image_features",
    "niqe_quality",
]

#: Block side of the release (``computequality(im, 96, 96, 0, 0, ...)``), at the first scale.
NIQE_BLOCK = 96
_WINDOW_SIZE = 7
_WINDOW_SIGMA = 7 / 6
#: ``|I - mu|`` below this (0-255 scale) is rounding noise of an exact zero; see the module docstring.
FLAT_TOLERANCE = 1e-10
#: Shifts of ``computefeature.m`` (horizontal, vertical, two diagonals), applied circularly per block.
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
_CHUNK = 256  # vectors per grid search, bounds memory at 256 x 9801 doubles


@functools.lru_cache(maxsize=1)
def _aggd_tables() -> tuple[torch.Tensor, ...]:
    """MATLAB's shape grid ``gam = 0.2:0.001:10`` and, per grid value, ``r(gam)`` of
    ``estimateaggdparam.m``, ``sqrt(gamma(1/a)/gamma(3/a))`` and ``gamma(2/a)/gamma(1/a)`` (CPU)."""
    gam = [0.2 + 0.001 * k for k in range(9801)]
    r = [math.gamma(2 / g) ** 2 / (math.gamma(1 / g) * math.gamma(3 / g)) for g in gam]
    scale = [math.sqrt(math.gamma(1 / g) / math.gamma(3 / g)) for g in gam]
    mean = [math.gamma(2 / g) / math.gamma(1 / g) for g in gam]
    return tuple(torch.tensor(v, dtype=torch.float64) for v in (gam, r, scale, mean))


def mscn_coefficients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1-3: ``(mscn, sigma)`` of ``(B, H, W)`` float64 images on the 0-255 scale.

    ``mu`` and ``sigma`` are 7x7 Gaussian-weighted (sigma 7/6, replicate borders) local
    mean and deviation, ``sigma = sqrt(|E[I^2] - mu^2|)``. Numerators under
    :data:`FLAT_TOLERANCE` are set to 0 (module docstring).
    """
    window = fspecial_gaussian(_WINDOW_SIZE, _WINDOW_SIGMA, device=image.device)
    window = window / window.sum()  # computequality.m normalises fspecial's window once more
    mu = imfilter_replicate(image, window)
    sigma = torch.sqrt((imfilter_replicate(image * image, window) - mu * mu).abs())
    numerator = image - mu
    numerator = torch.where(numerator.abs() < FLAT_TOLERANCE, torch.zeros_like(numerator), numerator)
    return numerator / (sigma + 1), sigma


def _aggd_search(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(grid index of alpha, left std, right std)`` of each row of ``x`` (N, M)."""
    _, r_gam, _, _ = (t.to(x.device) for t in _aggd_tables())
    neg, pos = x < 0, x > 0
    sq = x * x
    left_std = torch.sqrt((sq * neg).sum(-1) / neg.sum(-1))  # 0/0 = NaN when there is none
    right_std = torch.sqrt((sq * pos).sum(-1) / pos.sum(-1))
    gammahat = left_std / right_std
    rhat = x.abs().mean(-1) ** 2 / sq.mean(-1)
    rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    # argmin counts NaN as smallest, so an all-NaN criterion gives the first index, as MATLAB's min
    parts = [((r_gam[None] - part[:, None]) ** 2).argmin(-1) for part in rhatnorm.split(_CHUNK)]
    index = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=x.device)
    return index, left_std, right_std


def aggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``estimateaggdparam.m`` on each row of ``x`` (N, M): ``(alpha, beta_left, beta_right)``, each (N,).

    MATLAB semantics are kept for degenerate rows: the mean of no values is NaN, and the
    shape search over an all-NaN criterion returns the first grid value (0.2).
    """
    gam, _, beta_scale, _ = (t.to(x.device) for t in _aggd_tables())
    index, left_std, right_std = _aggd_search(x)
    c = beta_scale[index]
    return gam[index], left_std * c, right_std * c


def niqe_block_features(blocks: torch.Tensor) -> torch.Tensor:
    """``computefeature.m``: the 18 features of each MSCN block of ``blocks`` (N, b, b), shape (N, 18).

    ``[alpha, (beta_l + beta_r)/2]`` of the coefficients, then for each of four circularly
    shifted products ``[alpha, eta, beta_l, beta_r]`` with ``eta = (beta_r - beta_l) G(2/a)/G(1/a)``
    (eq. 8).
    """
    gam, _, beta_scale, mean_ratio = (t.to(blocks.device) for t in _aggd_tables())
    n = blocks.shape[0]
    feats = []
    for shift in ((0, 0),) + _SHIFTS:
        x = blocks if shift == (0, 0) else blocks * torch.roll(blocks, shifts=shift, dims=(-2, -1))
        index, left_std, right_std = _aggd_search(x.reshape(n, -1))
        alpha, bl, br = gam[index], left_std * beta_scale[index], right_std * beta_scale[index]
        if shift == (0, 0):
            feats += [alpha, (bl + br) / 2]
        else:
            feats += [alpha, (br - bl) * mean_ratio[index], bl, br]
    return torch.stack(feats, -1)


def _blocks(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W) -> (B, nh * nw, size, size); the same block order at every scale."""
    b, h, w = x.shape
    nh, nw = h // size, w // size
    return x.reshape(b, nh, size, nw, size).permute(0, 1, 3, 2, 4).reshape(b, nh * nw, size, size)


def niqe_image_features(gray: torch.Tensor, block: int = NIQE_BLOCK) -> torch.Tensor:
    """The 36 features of every ``block`` x ``block`` block, shape ``(B, n_blocks, 36)``.

    ``gray`` is ``(B, H, W)`` float64 on the 0-255 scale; it is cropped to a multiple of
    ``block`` (top-left kept), as ``computequality.m`` does.
    """
    if gray.ndim != 3:
        raise InputError(f"NIQE features need a (B, H, W) gray tensor, got shape {tuple(gray.shape)}")
    if block % 2:
        raise InputError(f"the NIQE block size must be even (it is halved at the second scale), got {block}")
    h, w = (s // block * block for s in gray.shape[-2:])
    if h == 0 or w == 0:
        raise InputError(f"NIQE needs images of at least {block}x{block} pixels, got {tuple(gray.shape[-2:])}")
    im = gray[..., :h, :w].to(torch.float64)
    per_scale = []
    for scale in (1, 2):
        mscn, _ = mscn_coefficients(im)
        blocks = _blocks(mscn, block // scale)
        b, n = blocks.shape[:2]
        per_scale.append(niqe_block_features(blocks.reshape(b * n, *blocks.shape[2:])).reshape(b, n, -1))
        if scale == 1:
            im = imresize(im, 0.5)
    return torch.cat(per_scale, -1)


def _pinv_matlab(a: torch.Tensor) -> torch.Tensor:
    """MATLAB ``pinv``: singular values above ``max(size(A)) * eps(max(s))`` are inverted."""
    u, s, vh = torch.linalg.svd(a)
    top = float(s.max())
    tol = max(a.shape) * (2.0 ** (math.floor(math.log2(top)) - 52) if top > 0 else 0.0)
    keep = s > tol
    return (vh[keep].T / s[keep]) @ u[:, keep].T


def _nancov(x: torch.Tensor) -> torch.Tensor:
    """MATLAB ``nancov``: covariance (normalised by N - 1) of the rows without any NaN."""
    rows = x[~x.isnan().any(-1)]
    if rows.shape[0] == 0:
        return torch.full((x.shape[-1],) * 2, float("nan"), dtype=x.dtype, device=x.device)
    if rows.shape[0] == 1:  # MATLAB's cov of one observation is 0
        return torch.zeros((x.shape[-1],) * 2, dtype=x.dtype, device=x.device)
    centred = rows - rows.mean(0)
    return centred.T @ centred / (rows.shape[0] - 1)


def niqe_distance(features: torch.Tensor, mu_pristine: torch.Tensor, cov_pristine: torch.Tensor) -> torch.Tensor:
    """Eq. 10: ``sqrt((nu_1 - nu_2)^T ((S_1 + S_2)/2)^+ (nu_1 - nu_2))`` for each image, shape (B,).

    ``features`` is ``(B, n_blocks, 36)``; its Gaussian is fitted with MATLAB's ``nanmean``
    (per feature) and ``nancov`` (complete rows).
    """
    mu_p = mu_pristine.to(features).reshape(-1)
    cov_p = cov_pristine.to(features)
    scores = []
    for feats in features:
        mu_d = feats.nanmean(0)
        a = (cov_p + _nancov(feats)) / 2
        if a.isnan().any():
            scores.append(torch.tensor(float("nan"), dtype=features.dtype, device=features.device))
            continue
        d = mu_p - mu_d
        scores.append(torch.sqrt(d @ _pinv_matlab(a) @ d))
    return torch.stack(scores)


def niqe_quality(gray: torch.Tensor, mu_pristine: torch.Tensor, cov_pristine: torch.Tensor) -> torch.Tensor:
    """NIQE of ``(B, H, W)`` gray images (0-255 scale, 8-bit levels), shape (B,) float64.

    ``computequality(im, 96, 96, 0, 0, mu_prisparam, cov_prisparam)`` of the MATLAB
    release, with flat-area coefficients set to exactly 0 (module docstring). Images with
    no block that has both positive and negative coefficients score NaN, as in MATLAB.
    """
    return niqe_distance(niqe_image_features(gray), mu_pristine, cov_pristine)
