"""Additive Gaussian noise, Poisson (shot) noise and JPEG compression (METHODS.md §4).

Pure functions on float BCHW tensors in [0, 1]. Noise levels follow Real-ESRGAN
(Wang et al., ICCVW 2021, §3.1): Gaussian ``sigma`` is given in the [0, 1] image scale
(Real-ESRGAN's "sigma in [1, 30]" means ``sigma`` in [1/255, 30/255] here); Poisson
noise simulates ``levels`` photon counts per unit intensity and is then multiplied by
``scale``. Randomness comes only from ``generator``: noise is drawn on the generator's
device (the CPU without one). A CPU generator gives the same noise on every device; a
generator on the image's device keeps the work there, without host synchronisation.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from .kernels import device_constant, upload_async

__all__ = ["add_gaussian_noise", "add_poisson_noise", "estimate_chroma_noise", "estimate_noise_level", "jpeg",
           "quantize_8bit", "white_noise_share"]

# ITU-R BT.601 luma, the grey used for "gray" (channel-shared) noise, as in Real-ESRGAN.
_GRAY = (0.299, 0.587, 0.114)


def _check(img: torch.Tensor, what: str) -> None:
    if not isinstance(img, torch.Tensor) or img.ndim != 4 or not img.is_floating_point():
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise InputError(f"{what} expects a float BCHW tensor in [0, 1], got {shape}")


def _per_image(value: float | Sequence[float] | torch.Tensor, batch: int, name: str) -> torch.Tensor:
    """A float, a length-B sequence or a (B,) tensor as a (B, 1, 1, 1) float64 CPU tensor."""
    t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise InputError(f"{name} must be a number or have one value per image ({batch}), got {t.numel()}")
    if (t < 0).any():
        raise InputError(f"{name} must be >= 0, got {t.tolist()}")
    return t.view(batch, 1, 1, 1)


def _factor(value: float | Sequence[float] | torch.Tensor, batch: int, name: str,
            device: torch.device) -> float | torch.Tensor:
    """A per-image factor: a plain number when ``value`` is one (nothing to copy to the
    device), else a (B, 1, 1, 1) float64 tensor on ``device``."""
    t = _per_image(value, batch, name)
    return float(value) if isinstance(value, (int, float)) else upload_async(t, device)


def _gray_weights() -> torch.Tensor:
    return torch.tensor(_GRAY, dtype=torch.float64).view(1, 3, 1, 1)


def _noise_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def quantize_8bit(img: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 256 levels of an 8-bit image."""
    return (img.clamp(0, 1) * 255.0).round() / 255.0


def add_gaussian_noise(
    img: torch.Tensor,
    sigma: float | Sequence[float] | torch.Tensor,
    gray: bool = False,
    generator: torch.Generator | None = None,
    *,
    clip: bool = True,
) -> torch.Tensor:
    """``img + n``, ``n ~ N(0, sigma^2)`` per pixel; ``sigma`` in [0, 1] units (2/255 = 2 levels).

    ``sigma`` may be one value or one per image. ``gray=True`` draws one noise map per
    image and adds it to every channel (luminance noise), otherwise each channel gets its
    own (colour noise). ``clip`` clamps the result to [0, 1].
    """
    _check(img, "add_gaussian_noise")
    b, c, h, w = img.shape
    dev = _noise_device(generator)
    s = _factor(sigma, b, "sigma", dev)
    noise = torch.randn((b, 1 if gray else c, h, w), generator=generator, dtype=torch.float64, device=dev) * s
    out = img + noise.to(img)
    return out.clamp(0, 1) if clip else out


def _real_esrgan_levels(img: torch.Tensor) -> torch.Tensor:
    """Real-ESRGAN's photon scale: 2^ceil(log2(number of distinct 8-bit values)) per image."""
    q = (img.clamp(0, 1) * 255.0).round()
    counts = [len(torch.unique(q[i])) for i in range(q.shape[0])]
    return torch.tensor([2.0 ** np.ceil(np.log2(max(n, 1))) for n in counts], dtype=torch.float64)


def add_poisson_noise(
    img: torch.Tensor,
    scale: float | Sequence[float] | torch.Tensor,
    gray: bool = False,
    generator: torch.Generator | None = None,
    *,
    levels: float | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """Shot noise: ``img + scale * (Poisson(levels * v) / levels - v)``, ``v`` the 8-bit-rounded image.

    The added noise at intensity ``v`` has standard deviation ``scale * sqrt(v / levels)``.
    ``levels=None`` uses Real-ESRGAN's rule, ``2^ceil(log2(#distinct 8-bit values))`` per
    image (256 for ordinary photos); give a number for a fixed photon scale. ``gray=True``
    computes the noise on the BT.601 luma and adds it to every channel. ``scale`` may be one
    value or one per image (Real-ESRGAN draws it from [0.05, 3]).
    """
    _check(img, "add_poisson_noise")
    b = img.shape[0]
    dev = _noise_device(generator)
    s = _factor(scale, b, "scale", dev)
    x = img.detach().to(torch.float64)
    if x.device != dev:
        x = x.to(dev)
    if gray:
        w = device_constant("bt601", dev, torch.float64, _gray_weights)
        x = (x * w).sum(1, keepdim=True) if x.shape[1] == 3 else x[:, :1]
    x = (x.clamp(0, 1) * 255.0).round() / 255.0
    vals: float | torch.Tensor
    if levels is None:  # counting distinct values reads the image back to the host
        vals = upload_async(_real_esrgan_levels(x).view(b, 1, 1, 1), dev)
    elif levels > 0:
        vals = float(levels)
    else:
        raise InputError(f"levels must be > 0, got {levels}")
    counts = torch.poisson(x * vals, generator=generator)
    noise = (counts / vals - x) * s
    out = img + noise.to(img)
    return out.clamp(0, 1) if clip else out


def jpeg(img: torch.Tensor, quality: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """JPEG-compress and decode each image with PIL (libjpeg, 4:2:0 chroma for RGB).

    The image is rounded to 8 bits first, as any saved JPEG is. ``quality`` in [1, 100],
    one value or one per image. Returns a tensor of ``img``'s dtype and device.
    """
    _check(img, "jpeg")
    b, c = img.shape[:2]
    if c not in (1, 3):
        raise InputError(f"jpeg needs 1 or 3 channels, got {c}")
    q = _per_image(quality, b, "quality").reshape(-1).round().long().tolist()
    if any(not 1 <= v <= 100 for v in q):
        raise InputError(f"JPEG quality must be in [1, 100], got {q}")
    arr = (img.detach().clamp(0, 1) * 255.0).round().to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for i in range(b):
        pil = Image.fromarray(arr[i, ..., 0] if c == 1 else arr[i])  # uint8 HxW -> L, HxWx3 -> RGB
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(q[i]))
        dec = np.array(Image.open(buf))
        out.append(torch.from_numpy(dec.reshape(dec.shape[0], dec.shape[1], c).copy()))
    res = torch.stack(out).permute(0, 3, 1, 2).to(img.dtype) / 255.0
    return res.to(img.device)


def _haar_bands(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One level of the orthonormal 2-D Haar transform of ``g`` (CxHxW; an odd last row or column
    is dropped): the approximation ``(a + b + c + d) / 2`` of each 2x2 block, and its details
    ``(a - b + c - d) / 2``, ``(a + b - c - d) / 2`` and ``HH = (a - b - c + d) / 2`` stacked (3xCxH/2xW/2).
    White noise has the same variance in every band at every level."""
    g = g[:, :g.shape[1] // 2 * 2, :g.shape[2] // 2 * 2]
    a, b, c, d = g[:, 0::2, 0::2], g[:, 0::2, 1::2], g[:, 1::2, 0::2], g[:, 1::2, 1::2]
    return (a + b + c + d) / 2, torch.stack(((a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2))


def _haar_diagonal(g: torch.Tensor) -> torch.Tensor:
    """``HH = (a - b - c + d) / 2`` of each 2x2 block of ``g`` (:func:`_haar_bands`)."""
    return _haar_bands(g)[1][2]


def estimate_noise_level(img: torch.Tensor, block: int = 8, quantile: float = 0.1) -> float:
    """Std. dev. of white noise in ``img`` (1xCxHxW in [0, 1]), in 8-bit levels.

    The diagonal Haar detail ``HH = (a - b - c + d) / 2`` of each 2x2 block carries the
    noise's full variance and, in flat regions, almost no image content. Its RMS over
    ``block`` x ``block`` tiles is taken in the flattest tiles: the ``quantile`` of the
    tiles' RMS (per channel, then the mean over channels). Texture raises the estimate in
    detailed images; 8-bit quantisation alone gives about 0.3 levels.
    """
    _check(img, "image")
    hh = _haar_diagonal(img.float()[0])
    b = max(1, min(block, hh.shape[1], hh.shape[2]))
    rms = torch.nn.functional.avg_pool2d(hh[:, None] ** 2, b, stride=b).flatten(1).sqrt()
    return float(torch.quantile(rms, quantile, dim=1).mean()) * 255.0


def estimate_chroma_noise(img: torch.Tensor, block: int = 8) -> float:
    """Std. dev. of noise drawn independently in each colour channel of ``img`` (1x3xHxW in
    [0, 1]), in 8-bit levels; 0 for a grey image.

    Texture moves the channels together (mostly in brightness), such noise does not. In each
    ``block`` x ``block`` tile of the diagonal Haar detail ``HH`` (:func:`estimate_noise_level`), the
    3x3 covariance between the channels has texture in its largest eigenvalue and the noise's
    variance in the other two; the estimate is the median over tiles of the square root of the
    smallest. Unlike the flattest-tile estimate, photos without flat regions do not raise it
    (benchmarks/RESULTS.md, 'Noise in the colours'); noise shared by the channels (grey noise) and
    noise that chroma subsampling removed (most JPEGs) do not show.
    """
    _check(img, "image")
    if img.shape[1] != 3:
        return 0.0
    hh = _haar_diagonal(img.double()[0] * 255.0)
    b = max(2, min(block, hh.shape[1], hh.shape[2]))
    rows, cols = hh.shape[1] // b, hh.shape[2] // b
    if rows == 0 or cols == 0:
        return 0.0
    tiles = hh[:, :rows * b, :cols * b].reshape(3, rows, b, cols, b).permute(1, 3, 0, 2, 4).reshape(-1, 3, b * b)
    tiles = tiles - tiles.mean(dim=2, keepdim=True)
    cov = tiles @ tiles.transpose(1, 2) / (b * b - 1)
    smallest = torch.linalg.eigvalsh(cov)[:, 0].clamp_min(0).sqrt()
    return float(smallest.median())


def white_noise_share(img: torch.Tensor, tile: int = 16, ratio: float = 0.7, floor: float = 2.0,
                      per_channel: bool = False) -> float:
    """The share of ``img``'s ``tile`` x ``tile`` tiles (1xCxHxW in [0, 1], the mean of its channels)
    whose finest details look like white noise: 0 for a noise-free photo, most tiles for noise that
    shows (benchmarks/RESULTS.md, 'Noise in the brightness'). ``per_channel``: the mean of each
    channel's share, where noise drawn apart in each channel (colour noise) is not averaged down
    ('Whole where the noise is white').

    White noise puts as much energy in the finest Haar details as in the next coarser ones
    (:func:`_haar_bands`); a downscaled photo puts less, as its spectrum falls with frequency.
    A tile counts where its finest details' mean energy is at least ``ratio`` times the next
    level's, and at least ``floor`` 8-bit levels RMS (quantisation and JPEG remnants stay
    below). Unlike :func:`estimate_noise_level`, texture does not count as noise; unlike
    :func:`estimate_chroma_noise`, noise shared by the channels (luminance noise) counts. Noise
    hidden by texture or clipped in dark regions does not: the share is small there whatever
    the noise. 0 for an image smaller than a tile.
    """
    _check(img, "image")
    if tile % 4 or tile < 4:
        raise ValueError(f"tile must be a multiple of 4, got {tile}")
    if per_channel:
        return float(np.mean([white_noise_share(img[:, c:c + 1], tile, ratio, floor) for c in range(img.shape[1])]))
    g = img.double()[0].mean(dim=0, keepdim=True) * 255.0
    rows, cols = g.shape[1] // tile, g.shape[2] // tile
    if rows == 0 or cols == 0:
        return 0.0
    approx, fine = _haar_bands(g[:, :rows * tile, :cols * tile])
    coarse = _haar_bands(approx)[1]
    energy = [torch.nn.functional.avg_pool2d(bands[:, 0] ** 2, tile // 2 // level).mean(dim=0)
              for level, bands in ((1, fine), (2, coarse))]
    white = (energy[0] >= ratio * energy[1]) & (energy[0] >= floor ** 2)
    return float(white.double().mean())
