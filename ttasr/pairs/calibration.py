"""A camera's blur kernel measured on registered (HR, LR) pairs: not blind, but right.

Blind estimation from the LR alone does not see the blur (benchmarks/RESULTS.md): the
consistency estimate reads the model, not the camera. A few pairs from the same camera (a
zoom lens at two focal lengths, pairs of RealSR or DRealSR, a chart) measure it: the kernel
``k`` minimising ``||D_k(x) - y||`` over the most textured LR crops of every pair.

Two families compete: the best anisotropic Gaussian and MATLAB bicubic downscaling
(:func:`~ttasr.degradations.bicubic_kernel`, the training degradation of most models, which
no Gaussian matches); the lower error wins. Noise in ``y`` raises both errors alike. JPEG
does not: it removes the fine detail that a wider blur would, so a plain fit on JPEG LR
reads far too wide a kernel (quality 40–60 read sigma 2.5 for a true 1.0 on the proxy). With
the LR's JPEG settings (its quantisation tables, read from the file by
:func:`jpeg_settings_of`), every candidate ``D_k(x)`` is compressed the same way before it
is compared, and the fit recovers the kernel.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..degradations.kernels import (
    alignment_shift,
    bicubic_kernel,
    degrade_with_kernel,
    gaussian_kernels,
    kernel_size_for,
)
from ..errors import InputError
from .augment import _gray
from .estimation import (
    Alignment,
    KernelEstimate,
    _check_image,
    _check_kernel,
    consistency_normal_equations,
    consistency_rmse,
    fit_gaussian_kernel,
    search_gaussian,
    select_textured_crops,
)

__all__ = ["JpegSettings", "calibrate_kernel", "jpeg_settings_of", "save_kernel"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- JPEG
@dataclass(frozen=True)
class JpegSettings:
    """How an LR image was JPEG-compressed: a ``quality`` (libjpeg's tables) or the file's own
    quantisation ``qtables``, and its chroma ``subsampling`` (0: 4:4:4, 1: 4:2:2, 2: 4:2:0)."""

    quality: int | None = None
    qtables: tuple[tuple[int, ...], ...] | None = None
    subsampling: int = 2

    def __post_init__(self) -> None:
        if (self.quality is None) == (self.qtables is None):
            raise InputError("JpegSettings needs either a quality or the quantisation tables, not both")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise InputError(f"JPEG quality must be in [1, 100], got {self.quality}")
        if self.subsampling not in (0, 1, 2):
            raise InputError(f"JPEG subsampling must be 0 (4:4:4), 1 (4:2:2) or 2 (4:2:0), got {self.subsampling}")

    def roundtrip(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` (1xCxHxW in [0, 1], C 1 or 3) compressed with these settings and decoded."""
        from PIL import Image

        arr = (image[0].detach().clamp(0, 1) * 255).round().to("cpu", torch.uint8).permute(1, 2, 0).numpy()
        pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        options: dict[str, Any] = {"subsampling": self.subsampling}
        if self.qtables is not None:
            options["qtables"] = [list(t) for t in self.qtables]
        else:
            options["quality"] = self.quality
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", **options)
        decoded = np.array(Image.open(buffer)).reshape(arr.shape[0], arr.shape[1], -1)
        return torch.from_numpy(decoded.copy()).permute(2, 0, 1)[None].to(image.dtype) / 255


def jpeg_settings_of(path: str | Path) -> JpegSettings | None:
    """The JPEG settings stored in an image file (its quantisation tables and chroma
    subsampling); ``None`` when the file is not a JPEG."""
    from PIL import Image, JpegImagePlugin

    with Image.open(path) as im:
        if im.format != "JPEG":
            return None
        tables = tuple(tuple(int(v) for v in table) for _, table in sorted(im.quantization.items()))
        sampling = JpegImagePlugin.get_sampling(im)
    return JpegSettings(qtables=tables, subsampling=sampling if sampling in (0, 1, 2) else 2)


# --------------------------------------------------------------------------- pairs
def _pair_scale(hr: torch.Tensor, lr: torch.Tensor, scale: int | None, name: str) -> int:
    """The integer scale of one (HR, LR) pair, checked against ``scale`` when given."""
    (hh, hw), (lh, lw) = hr.shape[-2:], lr.shape[-2:]
    found = round(hh / lh) if lh else 0
    if found < 1 or not (found * lh <= hh < (found + 1) * lh and found * lw <= hw < found * lw + found):
        raise InputError(f"{name}: HR {hh}x{hw} is not an integer multiple of LR {lh}x{lw}; calibration "
                         "needs registered pairs whose HR is the LR's size times the scale (crop both alike)")
    if found < 2:
        raise InputError(f"{name}: HR {hh}x{hw} and LR {lh}x{lw} have the same size; give the HR at the "
                         "model's scale (2x, 3x, 4x ... the LR's size)")
    if scale is not None and found != scale:
        raise InputError(f"{name}: HR {hh}x{hw} over LR {lh}x{lw} is scale {found}, not the {scale} asked for")
    return found


def _luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of a 1x3xHxW image (any linear mix commutes with the blur); gray stays."""
    return _gray(x) if x.shape[1] == 3 else x


def _per_pair_jpeg(jpeg: Any, pairs: list[tuple[torch.Tensor, torch.Tensor]], labels: list[str],
                   s: int) -> list[JpegSettings | None]:
    """One JPEG setting per pair. ``"auto"`` (for all, or in the list for one pair) reads the
    LR's from its pixels (:func:`~ttasr.pairs.jpeg_trace.detect_jpeg`) and crops that pair,
    in ``pairs``, to JPEG's grid."""
    count = len(pairs)
    given = [jpeg] * count if jpeg is None or isinstance(jpeg, (int, str, JpegSettings)) else list(jpeg)
    if len(given) != count:
        raise InputError(f"jpeg gives {len(given)} settings for {count} pairs: give one per pair, or one for all")
    settings: list[JpegSettings | None] = []
    for i, (j, label) in enumerate(zip(given, labels)):
        if isinstance(j, str):
            if j != "auto":
                raise InputError(f"jpeg: {j!r} is not a setting; give a quality, JpegSettings, None or 'auto'")
            from .jpeg_trace import detect_jpeg

            hr, lr = pairs[i]
            trace = detect_jpeg(lr, name=f"{label} LR")
            if trace is not None and trace.offset != (0, 0):
                top, left = trace.offset
                pairs[i] = (hr[..., s * top:, s * left:], lr[..., top:, left:])
            settings.append(None if trace is None else trace.settings)
        else:
            settings.append(JpegSettings(quality=j) if isinstance(j, int) else j)
    return settings


# --------------------------------------------------------------------------- the fit
def calibrate_kernel(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    scale: int | None = None,
    *,
    jpeg: int | JpegSettings | Literal["auto"] | Sequence[int | JpegSettings | Literal["auto"] | None] | None = None,
    crops: int = 8,
    crop_size: int = 64,
    margin: int = 4,
    sigma_range: tuple[float, float] = (0.2, 4.0),
    alignment: Alignment = "centre",
    channels: Literal["luma", "rgb"] = "luma",
    names: Sequence[str] | None = None,
) -> KernelEstimate:
    """A camera's blur kernel measured on registered ``(HR, LR)`` pairs of its images.

    Each image is ``1x3xHxW`` in [0, 1]; an HR up to ``scale - 1`` pixels larger than
    ``scale`` times its LR is cropped at the bottom/right. ``crops`` textured ``crop_size``
    LR crops of every pair enter the fit, ``margin`` LR pixels from their borders left out.
    ``jpeg`` gives how the LR images were compressed (a quality, :class:`JpegSettings`, or
    one per pair; ``None``: not compressed; ``"auto"``: read from each LR's pixels by
    :func:`~ttasr.pairs.jpeg_trace.detect_jpeg`, for an LR that was compressed and then saved
    losslessly); then candidates are compressed alike before the comparison (the module
    docstring says why). The fit uses the luma by default: JPEG's
    chroma subsampling blurs the colour channels far more than the lens does
    (``channels="rgb"`` fits all three).

    Returns a ``"kernel"`` estimate (for ``kernel_estimator="given", kernel=...``;
    :func:`save_kernel` writes it) whose ``params`` hold the family that won, the best
    Gaussian's sigmas (HR pixels) and angle, and both errors (RMSE, 8-bit levels).
    """
    if not pairs:
        raise InputError("calibrate_kernel needs at least one (HR, LR) pair")
    lo, hi = sigma_range
    if not 0 < lo < hi:
        raise InputError(f"sigma_range must satisfy 0 < lo < hi, got {sigma_range}")
    if channels not in ("luma", "rgb"):
        raise InputError(f"channels must be 'luma' or 'rgb', got {channels!r}")
    labels = list(names) if names is not None else [f"pair {i + 1}" for i in range(len(pairs))]
    scales = set()
    for (hr, lr), label in zip(pairs, labels):
        _check_image(hr, f"{label} HR")
        _check_image(lr, f"{label} LR")
        if hr.shape[1] != lr.shape[1]:
            raise InputError(f"{label}: HR has {hr.shape[1]} channels and LR {lr.shape[1]}; give both as RGB")
        scales.add(_pair_scale(hr, lr, scale, label))
    if len(scales) > 1:
        raise InputError(f"the pairs have different scales {sorted(scales)}: calibrate one scale at a time")
    s = scales.pop()
    pairs = list(pairs)
    settings = _per_pair_jpeg(jpeg, pairs, labels, s)
    shift = alignment_shift(s, alignment)
    bicubic = bicubic_kernel(s, shift)
    size = max(kernel_size_for(hi, shift), bicubic.shape[0])
    if any(settings):
        fit = _fit_through_jpeg(pairs, settings, labels, s, size, shift, bicubic, crops, crop_size, margin,
                                sigma_range, channels)
    else:
        fit = _fit_linear(pairs, labels, s, size, shift, bicubic, crops, crop_size, margin, sigma_range, channels)
    sx, sy, th, rmse_gauss, rmse_bicubic, n = fit
    if rmse_bicubic <= rmse_gauss:
        family, kernel = "bicubic", bicubic
    else:
        family, kernel = "gaussian", gaussian_kernels(kernel_size_for(sx, shift), sx, sy, th, shift)[0]
    kernel = (kernel / kernel.sum()).to(torch.float32)
    params = {"estimator": "calibrated", "family": family, "scale": s, "sigma_x": sx, "sigma_y": sy, "theta": th,
              "shift": shift, "rmse_gaussian": 255 * rmse_gauss, "rmse_bicubic": 255 * rmse_bicubic,
              "channels": channels, "jpeg": sum(j is not None for j in settings), "pairs": len(pairs),
              "samples": n}
    log.info("calibrated kernel: %s (Gaussian sigma=(%.3f, %.3f) theta=%.3f: RMSE %.3f levels; bicubic %.3f)%s",
             family, sx, sy, th, params["rmse_gaussian"], params["rmse_bicubic"],
             " through JPEG" if params["jpeg"] else "")
    return KernelEstimate("kernel", kernel, params)


def _fit_linear(pairs, labels, s, size, shift, bicubic, crops, crop_size, margin, sigma_range, channels):
    """No compression: ``||D_k(x) - y||²`` is quadratic in ``k`` (normal equations)."""
    gram: torch.Tensor | None = None
    b = c = torch.zeros((), dtype=torch.float64)
    n = 0
    for (hr, lr), label in zip(pairs, labels):
        if channels == "luma":
            hr, lr = _luma(hr), _luma(lr)
        for top, left in select_textured_crops(lr, crop_size, crops):
            crop = lr[..., top:top + crop_size, left:left + crop_size]
            x = hr[..., s * top:s * (top + crop.shape[-2]), s * left:s * (left + crop.shape[-1])]
            try:
                g_, b_, c_, n_ = consistency_normal_equations(x.cpu(), crop.cpu(), s, size, margin)
            except InputError as exc:
                raise InputError(f"{label}: {exc}; calibration needs LR images of at least "
                                 f"{2 * margin + size // s + 2} px a side") from None
            gram = g_ if gram is None else gram + g_
            b, c, n = b + b_, c + c_, n + n_
    assert gram is not None
    sx, sy, th, rmse_gauss, _ = fit_gaussian_kernel(gram, b, c, n, size, shift, sigma_range)
    pad = (size - bicubic.shape[0]) // 2
    rmse_bicubic = float(consistency_rmse(F.pad(bicubic, (pad,) * 4)[None], gram, b, c, n)[0])
    return sx, sy, th, rmse_gauss, rmse_bicubic, n


def _fit_through_jpeg(pairs, settings, labels, s, size, shift, bicubic, crops, crop_size, margin, sigma_range,
                      channels, jpeg_crops=4):
    """Compressed LR: every candidate ``D_k(x)`` of every crop goes through the pair's JPEG
    settings before it is compared; crops sit on the 16-px grid of JPEG's blocks (4:2:0 MCUs).
    At most ``jpeg_crops`` crops per pair: each candidate costs a blur and a compression each."""
    if crop_size % 16:
        raise InputError(f"crop_size must be a multiple of 16 to keep JPEG's blocks aligned, got {crop_size}")
    reach = s * math.ceil((size // 2 + s) / s)  # HR context around a crop, a multiple of the scale
    cut = reach // s
    work = []  # (HR window, LR crop as compared, settings) per crop
    compared = _luma if channels == "luma" else (lambda x: x)
    for (hr, lr), jp, label in zip(pairs, settings, labels):
        h, w = lr.shape[-2:]
        if min(h, w) < crop_size:
            raise InputError(f"{label}: LR {h}x{w} is smaller than one {crop_size}-px crop; give larger pairs")
        padded = F.pad(hr[..., :s * h, :s * w], (reach,) * 4, mode="reflect")
        for top, left in select_textured_crops(lr, crop_size, max(1, min(crops, jpeg_crops))):
            window = padded[..., s * top:s * (top + crop_size) + 2 * reach, s * left:s * (left + crop_size) + 2 * reach]
            crop = lr[..., top:top + crop_size, left:left + crop_size].float()
            work.append((window.float().contiguous(), compared(crop), jp))
    n = len(work) * (crop_size - 2 * margin) ** 2 * work[0][1].shape[1]

    def rmse(kernel: torch.Tensor) -> float:
        kernel, total = kernel.float(), 0.0
        for window, target, jp in work:
            sim = degrade_with_kernel(window, kernel, s)[..., cut:cut + crop_size, cut:cut + crop_size]
            sim = sim.clamp(0, 1)
            sim = jp.roundtrip(sim) if jp is not None else (sim * 255).round() / 255
            diff = compared(sim) - target
            total += float(diff[..., margin:crop_size - margin, margin:crop_size - margin].double().square().sum())
        return math.sqrt(total / n)

    def loss(p: torch.Tensor) -> torch.Tensor:
        ks = gaussian_kernels(size, p[:, 0].exp(), p[:, 1].exp(), p[:, 2], shift)
        return torch.tensor([rmse(k) for k in ks], dtype=torch.float64)

    # every candidate costs a blur and a compression per crop: a coarser grid, a shorter search
    sx, sy, th, rmse_gauss, _ = search_gaussian(loss, sigma_range, n_sigma=8, n_theta=2, refine_steps=30)
    return sx, sy, th, rmse_gauss, rmse(bicubic), n


def save_kernel(path: str | Path, kernel: torch.Tensor) -> Path:
    """Write a kernel as ``.npy`` (float32), atomically, for ``kernel=`` and :func:`~ttasr.pairs.load_kernel`."""
    from .._fs import atomic_write_bytes

    path = Path(path).expanduser()
    if path.suffix.lower() != ".npy":
        raise InputError(f"{path}: a kernel is saved as .npy; give a path ending in .npy")
    _check_kernel(kernel)
    buffer = io.BytesIO()
    np.save(buffer, kernel.detach().cpu().to(torch.float32).numpy(), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())
    return path
