"""Blur-kernel estimators for AdaSSR's internal pairs ``(y_d, y)`` (Sec. III-C, METHODS §1).

AdaSSR makes training pairs by degrading the real LR input ``y`` once more,
``y_d = D_k(y)`` (blur with ``k``, subsample by the scale ``s``); its ablation shows an
estimated ``k`` beats plain bicubic pairs. The paper estimates ``k`` "in a self-learning
manner" (KernelGAN style) without more detail; METHODS allows any estimator measured
against bicubic. This module offers:

* :class:`BicubicKernel`: no kernel, pairs made with MATLAB bicubic ``imresize`` (the
  paper's "internal learning" baseline). Antialiased bicubic downscaling is not a
  blur-then-subsample with a fixed kernel in our convention, so it is its own kind.
* :class:`GivenKernel`: a kernel the caller knows.
* :class:`ConsistencyKernelEstimator`: an anisotropic Gaussian ``k`` minimising the
  degradation consistency ``||D_k(N(y)) - y||`` of the model's own SR output ``N(y)``.

:func:`ttasr.pairs.calibration.calibrate_kernel` is not blind: it measures a camera's kernel on
registered (HR, LR) pairs of its images, for ``kernel_estimator="given"``.

Every estimator returns a :class:`KernelEstimate`; :func:`make_lr_pair` turns it into a pair.

Alignment. ``degrade_with_kernel`` keeps HR pixel ``s*i`` for LR pixel ``i``; bicubic
resizing (and most SR training data) maps LR pixel ``i`` to the centre of the HR block
``[s*i, s*i + s)``. With ``alignment="centre"`` (default) kernels are shifted by
``(s - 1) / 2`` HR pixels so that blur + subsample follows the bicubic convention; without
the shift the pairs would teach the model a sub-pixel translation.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ..degradations.kernels import alignment_shift, degrade_with_kernel, gaussian_kernels, imresize, kernel_size_for
from ..errors import InputError

__all__ = [
    "BicubicKernel",
    "ConsistencyKernelEstimator",
    "GivenKernel",
    "KernelEstimate",
    "KernelEstimator",
    "consistency_normal_equations",
    "consistency_rmse",
    "fit_gaussian_kernel",
    "make_lr_pair",
    "search_gaussian",
    "select_textured_crops",
]

log = logging.getLogger(__name__)

Alignment = Literal["centre", "corner"]


# --------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class KernelEstimate:
    """What an estimator found: a kernel, or "use bicubic resizing".

    ``kind`` is ``"bicubic"`` (``kernel`` is None: pairs use ``imresize``) or ``"kernel"``
    (``kernel`` is a 2-D odd-sized tensor summing to 1, used with ``degrade_with_kernel``).
    ``params`` records how it was found (sigmas, angle, loss, timings) for logs and metadata.
    """

    kind: Literal["bicubic", "kernel"]
    kernel: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "bicubic":
            if self.kernel is not None:
                raise InputError("a 'bicubic' KernelEstimate carries no kernel; pass kernel=None")
        elif self.kind == "kernel":
            if self.kernel is None:
                raise InputError("a 'kernel' KernelEstimate needs a kernel tensor")
            _check_kernel(self.kernel)
        else:
            raise InputError(f"KernelEstimate kind must be 'bicubic' or 'kernel', got {self.kind!r}")


class KernelEstimator(Protocol):
    """Anything with ``estimate(y, scale) -> KernelEstimate``."""

    def estimate(self, y: torch.Tensor, scale: int) -> KernelEstimate: ...


def _check_kernel(kernel: torch.Tensor) -> None:
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise InputError(
            f"a blur kernel must be a square 2-D tensor of odd size, got shape {tuple(kernel.shape)}"
        )
    total = float(kernel.sum())
    if not math.isfinite(total) or abs(total - 1.0) > 1e-3:
        raise InputError(f"a blur kernel must sum to 1, this one sums to {total:.4g}; divide it by its sum")


def _check_image(y: torch.Tensor, name: str = "y") -> None:
    if y.ndim != 4 or y.shape[0] != 1:
        raise InputError(f"{name} must be one image as a 1xCxHxW tensor, got shape {tuple(y.shape)}")


# --------------------------------------------------------------------------- pairs
def make_lr_pair(y: torch.Tensor, estimate: KernelEstimate, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """AdaSSR's internal pair ``(y_d, y')`` (Sec. III-C): ``y_d = D_k(y')``.

    ``y'`` is ``y`` cropped at the bottom/right to a multiple of ``scale`` so that
    ``y_d`` is exactly ``scale`` times smaller. Returns ``(input, target)``.
    """
    if y.ndim != 4:
        raise InputError(f"expected a BCHW image, got shape {tuple(y.shape)}")
    h, w = y.shape[-2:]
    h2, w2 = h - h % scale, w - w % scale
    if h2 < scale or w2 < scale:
        raise InputError(f"image of size {h}x{w} is too small to downscale by {scale}")
    target = y[..., :h2, :w2]
    if estimate.kind == "bicubic":
        lr = imresize(target, size=(h2 // scale, w2 // scale))
    else:
        assert estimate.kernel is not None
        lr = degrade_with_kernel(target, estimate.kernel.to(target), scale)
    return lr, target


# --------------------------------------------------------------------------- kernels
# --------------------------------------------------------------------------- simple estimators
@dataclass(frozen=True)
class BicubicKernel:
    """Pairs by MATLAB bicubic downscaling: the paper's plain internal-learning baseline."""

    def estimate(self, y: torch.Tensor, scale: int) -> KernelEstimate:
        return KernelEstimate("bicubic", None, {"estimator": "bicubic"})


@dataclass(frozen=True)
class GivenKernel:
    """A known kernel (2-D, odd size); it is normalised to sum to 1."""

    kernel: torch.Tensor

    def estimate(self, y: torch.Tensor, scale: int) -> KernelEstimate:
        k = torch.as_tensor(self.kernel, dtype=torch.float32)
        if k.ndim != 2:
            raise InputError(f"GivenKernel needs a 2-D kernel, got shape {tuple(k.shape)}")
        total = float(k.sum())
        if not total > 0:
            raise InputError("GivenKernel's kernel must have a positive sum")
        k = k / total
        return KernelEstimate("kernel", k, {"estimator": "given"})


def load_kernel(value: str | Path | Sequence[Sequence[float]] | torch.Tensor) -> torch.Tensor:
    """A blur kernel from a config value: a file (``.npy``, ``.json`` nested list, or text:
    ``.txt``/``.csv`` rows of numbers) or a nested list. Returns a 2-D float32 tensor."""
    if isinstance(value, torch.Tensor):
        return value.to(torch.float32)
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InputError(f"kernel file {path} does not exist: give a .npy, .json or .txt/.csv file")
        try:
            if path.suffix.lower() == ".npy":
                arr = np.load(path, allow_pickle=False)
            elif path.suffix.lower() == ".json":
                arr = np.asarray(json.loads(path.read_text()), dtype=np.float64)
            else:
                arr = np.loadtxt(path, delimiter="," if path.suffix.lower() == ".csv" else None, ndmin=2)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read a kernel from {path}: {exc}") from exc
        return torch.from_numpy(np.asarray(arr, dtype=np.float32))
    try:
        return torch.tensor([list(row) for row in value], dtype=torch.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"a kernel must be a file path or a 2-D list of numbers, got {value!r}") from exc


# --------------------------------------------------------------------------- consistency estimator
def select_textured_crops(y: torch.Tensor, crop_size: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners of the ``count`` non-overlapping ``crop_size`` tiles with most texture.

    Flat regions say nothing about the blur, so the cheap estimator looks where the
    gradient energy is highest. Deterministic; the whole image when it is smaller.
    """
    _check_image(y)
    h, w = y.shape[-2:]
    if h <= crop_size or w <= crop_size:
        return [(0, 0)]
    gray = y.mean(1, keepdim=True)
    energy = (gray[..., :, 1:] - gray[..., :, :-1]).abs()[..., :-1, :] + (
        gray[..., 1:, :] - gray[..., :-1, :]
    ).abs()[..., :, :-1]
    energy = F.pad(energy, (0, 1, 0, 1), mode="replicate")  # back to h x w: every tile counts
    tiles = F.avg_pool2d(energy, crop_size, stride=crop_size)[0, 0]
    order = torch.argsort(tiles.flatten(), descending=True)[:count]
    nw = tiles.shape[1]
    return [(int(i) // nw * crop_size, int(i) % nw * crop_size) for i in order]


def consistency_normal_equations(
    sr: torch.Tensor,
    lr: torch.Tensor,
    scale: int,
    size: int,
    margin: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Normal equations of ``||D_k(sr) - lr||^2`` as a function of the kernel ``k``.

    ``D_k(sr)`` at LR pixel ``i`` is a linear function of ``k``: the dot product of
    ``vec(k)`` with the flipped ``size x size`` patch of ``sr`` around HR pixel ``s*i``.
    Returns ``(G, b, c, n)`` with ``G = M^T M``, ``b = M^T lr``, ``c = lr^T lr`` (float64)
    over the ``n`` LR samples whose patch lies inside ``sr`` and ``margin`` LR pixels away
    from the border, so that ``||M vec(k) - lr||^2 = k^T G k - 2 b^T k + c`` costs
    ``O(size^4)`` per candidate kernel instead of a convolution.
    """
    hs, ws = sr.shape[-2:]
    h, w = lr.shape[-2:]
    if (hs, ws) != (h * scale, w * scale):
        raise InputError(
            f"SR output is {hs}x{ws} but the LR crop is {h}x{w} at scale {scale}: "
            f"sr_fn must return an image exactly {scale} times larger"
        )
    r = size // 2
    # patches centred on HR pixels s*i: top-left s*i - r; keep those inside the image
    i0 = max(margin, math.ceil(r / scale))
    i1h = min(h - margin, (hs - 1 - r) // scale + 1)
    i1w = min(w - margin, (ws - 1 - r) // scale + 1)
    if i1h <= i0 or i1w <= i0:
        raise InputError(f"LR crop {h}x{w} is too small for a {size}x{size} kernel at scale {scale}")
    top = i0 * scale - r
    bottom = (i1h - 1) * scale + r + 1
    right = (i1w - 1) * scale + r + 1
    region = sr[:, :, top:bottom, top:right].to(torch.float64)
    patches = F.unfold(region.reshape(-1, 1, *region.shape[-2:]), size, stride=scale)  # (BC, K*K, L)
    patches = patches.flip(1)  # convolution, not correlation: vec(k) pairs with flipped patches
    m = patches.permute(0, 2, 1).reshape(-1, size * size)
    target = lr[:, :, i0:i1h, i0:i1w].to(torch.float64).reshape(-1)
    if m.shape[0] != target.shape[0]:  # pragma: no cover - guarded by the index maths above
        raise AssertionError("patch/sample count mismatch")
    return m.T @ m, m.T @ target, target @ target, int(target.numel())


def consistency_rmse(
    kernels: torch.Tensor, gram: torch.Tensor, b: torch.Tensor, c: torch.Tensor, n: int
) -> torch.Tensor:
    """RMSE of ``D_k(sr)`` against ``lr`` for a batch of kernels ``(m, K, K)``: ``(m,)``."""
    k = kernels.reshape(kernels.shape[0], -1).to(torch.float64)
    sq = ((k @ gram) * k).sum(1) - 2.0 * (k @ b) + c
    return (sq.clamp_min(0.0) / n).sqrt()


def fit_gaussian_kernel(
    gram: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    n: int,
    size: int,
    shift: float,
    sigma_range: tuple[float, float] = (0.2, 4.0),
    n_sigma: int = 12,
    n_theta: int = 8,
    refine_steps: int = 200,
) -> tuple[float, float, float, float, int]:
    """The anisotropic Gaussian minimising ``||M vec(k) - lr||`` given its normal equations
    (:func:`consistency_normal_equations`), by :func:`search_gaussian`. Returns ``(sigma_x,
    sigma_y, theta, rmse, iterations)``, with ``sigma_x`` the major axis and ``theta`` in
    ``[0, pi)``."""

    def loss(p: torch.Tensor) -> torch.Tensor:
        ks = gaussian_kernels(size, p[:, 0].exp(), p[:, 1].exp(), p[:, 2], shift)
        return consistency_rmse(ks, gram, b, c, n)

    return search_gaussian(loss, sigma_range, n_sigma, n_theta, refine_steps)


def search_gaussian(
    loss: Callable[[torch.Tensor], torch.Tensor],
    sigma_range: tuple[float, float] = (0.2, 4.0),
    n_sigma: int = 12,
    n_theta: int = 8,
    refine_steps: int = 200,
) -> tuple[float, float, float, float, int]:
    """Minimise ``loss`` over anisotropic Gaussians: a coarse grid over ``(sigma_x, sigma_y,
    theta)`` (sigmas log-spaced in ``sigma_range``), then a pattern search in ``(log sigma_x,
    log sigma_y, theta)``. ``loss`` maps ``(m, 3)`` such parameters to ``(m,)`` values.
    Returns ``(sigma_x, sigma_y, theta, loss, iterations)`` as :func:`fit_gaussian_kernel`."""
    lo, hi = sigma_range

    # coarse grid: sigma_x >= sigma_y, angles in [0, pi); isotropic kernels once
    logs = torch.linspace(math.log(lo), math.log(hi), n_sigma, dtype=torch.float64)
    thetas = torch.arange(n_theta, dtype=torch.float64) * (math.pi / n_theta)
    cand = []
    for i in range(n_sigma):
        for j in range(i + 1):
            for t in thetas if i != j else thetas[:1]:
                cand.append((float(logs[i]), float(logs[j]), float(t)))
    grid = torch.tensor(cand, dtype=torch.float64)
    grid_loss = loss(grid)
    best = grid[int(torch.argmin(grid_loss))].clone()
    best_loss = float(grid_loss.min())

    # pattern search in (log sx, log sy, theta), steps halved when no neighbour improves
    step = torch.tensor(
        [float(logs[1] - logs[0]) / 2, float(logs[1] - logs[0]) / 2, math.pi / n_theta / 2],
        dtype=torch.float64,
    )
    bounds_lo = torch.tensor([math.log(lo), math.log(lo), -math.inf], dtype=torch.float64)
    bounds_hi = torch.tensor([math.log(hi), math.log(hi), math.inf], dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    iters = 0
    while iters < refine_steps and float(step[0]) > 2e-3:
        iters += 1
        nbrs = torch.cat([best + eye * step, best - eye * step])
        nbrs = torch.maximum(torch.minimum(nbrs, bounds_hi), bounds_lo)
        nl = loss(nbrs)
        k = int(torch.argmin(nl))
        if float(nl[k]) < best_loss - 1e-12:
            best, best_loss = nbrs[k].clone(), float(nl[k])
        else:
            step = step / 2
    sx, sy, th = math.exp(float(best[0])), math.exp(float(best[1])), float(best[2])
    if sy > sx:  # keep sigma_x the major axis
        sx, sy, th = sy, sx, th + math.pi / 2
    return sx, sy, math.remainder(th, math.pi) % math.pi, best_loss, iters


@dataclass
class ConsistencyKernelEstimator:
    """Anisotropic Gaussian kernel minimising ``||D_k(N(y)) - y||`` (METHODS §1, our choice).

    ``sr_fn`` maps a 1x3xhxw LR crop to its 1x3x(sh)x(sw) SR output (any model, e.g.
    ``lambda t: model(t).clamp(0, 1)``). The model runs on ``crops`` textured crops of
    ``crop_size`` LR pixels only; the loss is quadratic in ``k`` and evaluated through
    :func:`consistency_normal_equations`, so a coarse grid over ``(sigma_x, sigma_y,
    theta)`` plus a pattern-search refinement costs well under a second.

    Sigmas are in HR pixels (the scale at which ``k`` blurs ``N(y)``). The estimate is
    only as good as ``N(y)``: an over-smooth SR output (e.g. bicubic upsampling) biases
    ``sigma`` low, because blurring an already blurred image less is what reproduces ``y``.
    """

    sr_fn: Callable[[torch.Tensor], torch.Tensor]
    sigma_range: tuple[float, float] = (0.2, 4.0)
    """Search range of both sigmas, HR pixels (brief: ~[0.2, 4])."""
    n_sigma: int = 12
    """Grid points per sigma axis (log-spaced)."""
    n_theta: int = 8
    """Grid angles in [0, pi)."""
    crops: int = 4
    """Number of textured LR crops fed to ``sr_fn``."""
    crop_size: int = 64
    """LR side of each crop."""
    margin: int = 4
    """LR pixels dropped at each crop border (SR border effects)."""
    kernel_size: int | None = None
    """Search kernel size; default holds +-3 sigma_max around the aligned centre."""
    alignment: Alignment = "centre"
    """See the module docstring."""
    refine_steps: int = 200
    """Maximum pattern-search iterations after the grid."""

    def estimate(self, y: torch.Tensor, scale: int) -> KernelEstimate:
        """Estimate the kernel of the LR image ``y`` (1x3xHxW in [0, 1]) at ``scale``."""
        import time

        _check_image(y)
        t0 = time.perf_counter()
        lo, hi = self.sigma_range
        if not 0 < lo < hi:
            raise InputError(f"sigma_range must satisfy 0 < lo < hi, got {self.sigma_range}")
        shift = alignment_shift(scale, self.alignment)
        size = self.kernel_size or kernel_size_for(hi, shift)
        gram: torch.Tensor | None = None
        b = c = torch.zeros((), dtype=torch.float64)
        n = 0
        for top, left in select_textured_crops(y, self.crop_size, self.crops):
            crop = y[..., top : top + self.crop_size, left : left + self.crop_size]
            with torch.no_grad():
                sr = self.sr_fn(crop)
            g_, b_, c_, n_ = consistency_normal_equations(sr.detach().cpu(), crop.cpu(), scale, size, self.margin)
            gram = g_ if gram is None else gram + g_
            b, c, n = b + b_, c + c_, n + n_
        assert gram is not None
        t_sr = time.perf_counter() - t0

        sx, sy, th, best_loss, iters = fit_gaussian_kernel(
            gram, b, c, n, size, shift, self.sigma_range, self.n_sigma, self.n_theta, self.refine_steps)
        final_size = kernel_size_for(max(sx, sy), shift)
        kernel = gaussian_kernels(final_size, sx, sy, th, shift)[0].to(torch.float32)
        kernel = kernel / kernel.sum()
        elapsed = time.perf_counter() - t0
        params = {
            "estimator": "consistency",
            "sigma_x": sx,
            "sigma_y": sy,
            "theta": th,
            "shift": shift,
            "rmse": best_loss,
            "samples": n,
            "seconds": elapsed,
            "seconds_sr": t_sr,
            "refine_iterations": iters,
        }
        log.info("consistency kernel: sigma=(%.3f, %.3f) theta=%.3f rmse=%.5f in %.2fs", sx, sy, th, best_loss, elapsed)
        return KernelEstimate("kernel", kernel, params)
