"""Real-ESRGAN's random blur kernels and a batched, per-image blur (Wang et al., ICCVW 2021, §3.1-3.2).

Families, each drawn with its probability from :attr:`BlurConfig.family_probs`:

* ``iso`` / ``aniso``: Gaussian ``exp(-1/2 x^T S^-1 x)``, ``S = R(theta) diag(sx^2, sy^2) R(theta)^T``;
* ``generalized_iso`` / ``generalized_aniso``: ``exp(-1/2 (x^T S^-1 x)^beta)`` (eq. 3);
* ``plateau_iso`` / ``plateau_aniso``: ``1 / (1 + (x^T S^-1 x)^beta)``;
* ``sinc``: the ideal circular low-pass ``omega_c J1(omega_c r) / (2 pi r)`` (eq. 4), drawn
  instead of the families above with probability :attr:`BlurConfig.sinc_prob`.

``x = (column, row)`` offsets from the centre pixel; ``theta`` turns the first axis from
the column (x) axis towards the row (y) axis. Isotropic kernels have ``sy = sx``,
``theta = 0``. Every kernel is normalised to sum 1 and is point-symmetric, so correlation
and convolution agree.

The draws follow Real-ESRGAN's code (``realesrgan/data/realesrgan_dataset.py`` and
``basicsr/data/degradations.py``, options ``train_realesrgan_x4plus.yml``): odd sizes
uniform on 7..21; ``sx``, ``sy`` uniform on the stage's sigma range, ``theta`` on
[-pi, pi]; beta with probability 1/2 uniform on [beta_low, 1], else on [1, beta_high]
(so a plateau kernel's beta in [1, 2] is exactly 1 half of the time); sinc cut-off
``omega_c`` uniform on [pi/3, pi] for sizes below 13, on [pi/5, pi] otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from . import _draws
from ._draws import Range
from .kernels import gaussian_kernels, upload_async

__all__ = [
    "KERNEL_FAMILIES",
    "BlurConfig",
    "KernelDraw",
    "apply_blur",
    "draw_blur_kernel",
    "draw_sinc_kernel",
    "generalized_gaussian_kernel",
    "plateau_kernel",
    "random_blur_kernel",
    "random_sinc_kernel",
    "sinc_kernel",
]

KERNEL_FAMILIES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
"""Real-ESRGAN's ``kernel_list``, in the order of :attr:`BlurConfig.family_probs`."""


# --------------------------------------------------------------------------- families


def _quad_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """``x^T S^-1 x`` on the ``size x size`` grid of offsets, float64."""
    c, s = math.cos(theta), math.sin(theta)
    r = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    u = xx * c + yy * s  # coordinates along the principal axes
    v = -xx * s + yy * c
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float,
                                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``exp(-1/2 (x^T S^-1 x)^beta)``, normalised (Real-ESRGAN eq. 3; beta = 1 is Gaussian)."""
    k = torch.exp(-0.5 * _quad_form(size, sigma_x, sigma_y, theta).pow(beta))
    return (k / k.sum()).to(dtype)


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``1 / (1 + (x^T S^-1 x)^beta)``, normalised (Real-ESRGAN's plateau-shaped kernel)."""
    k = 1.0 / (1.0 + _quad_form(size, sigma_x, sigma_y, theta).pow(beta))
    return (k / k.sum()).to(dtype)


def sinc_kernel(size: int, omega_c: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Ideal circular low-pass with cut-off ``omega_c`` (rad/px), truncated to ``size`` and
    normalised: ``omega_c J1(omega_c r) / (2 pi r)``, ``omega_c^2 / (4 pi)`` at r = 0 (eq. 4)."""
    r = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    d = torch.sqrt(xx**2 + yy**2)
    safe = torch.where(d == 0, torch.ones_like(d), d)
    k = omega_c * torch.special.bessel_j1(omega_c * safe) / (2 * math.pi * safe)
    k = torch.where(d == 0, torch.full_like(d, omega_c**2 / (4 * math.pi)), k)
    return (k / k.sum()).to(dtype)


# --------------------------------------------------------------------------- draws


@dataclass(frozen=True)
class BlurConfig:
    """One stage's random blur kernel; defaults are Real-ESRGAN's first stage
    (``train_realesrgan_x4plus.yml``: ``blur_sigma``, ``kernel_prob``, ``betag_range``,
    ``betap_range``, ``sinc_prob``; sizes and ``omega_c`` from ``realesrgan_dataset.py``)."""

    kernel_sizes: tuple[int, int] = (7, 21)
    """Smallest and largest odd size; every odd size between is equally likely."""
    family_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    """Weights of :data:`KERNEL_FAMILIES` (iso, aniso, generalised iso/aniso, plateau iso/aniso)."""
    sigma: Range = (0.2, 3.0)
    """Range of ``sx`` and ``sy`` in pixels (Real-ESRGAN: [0.2, 3] stage 1, [0.2, 1.5] stage 2)."""
    rotation: Range = (-math.pi, math.pi)
    """Range of the anisotropic kernels' angle ``theta``."""
    beta_generalized: Range = (0.5, 4.0)
    """Generalised Gaussian shape range ``betag_range``."""
    beta_plateau: Range = (1.0, 2.0)
    """Plateau shape range ``betap_range``."""
    sinc_prob: float = 0.1
    """Probability of a sinc kernel instead of the families above."""
    sinc_omega_small: Range = (math.pi / 3, math.pi)
    """``omega_c`` range for sinc kernels smaller than :attr:`sinc_small_below`."""
    sinc_omega_large: Range = (math.pi / 5, math.pi)
    """``omega_c`` range for the larger ones (a wider kernel can hold a lower cut-off)."""
    sinc_small_below: int = 13
    """Size from which :attr:`sinc_omega_large` applies."""

    def __post_init__(self) -> None:
        lo, hi = self.kernel_sizes
        if lo % 2 == 0 or hi % 2 == 0 or not 1 <= lo <= hi:
            raise InputError(f"kernel_sizes must be odd sizes 1 <= low <= high, got {self.kernel_sizes}")
        if len(self.family_probs) != len(KERNEL_FAMILIES):
            raise InputError(f"family_probs needs {len(KERNEL_FAMILIES)} weights ({', '.join(KERNEL_FAMILIES)})")
        _draws.check_probs("family_probs", self.family_probs)
        _draws.check_range("sigma", self.sigma, low=1e-6)
        _draws.check_range("rotation", self.rotation)
        _draws.check_range("beta_generalized", self.beta_generalized, low=1e-6)
        _draws.check_range("beta_plateau", self.beta_plateau, low=1e-6)
        _draws.check_prob("sinc_prob", self.sinc_prob)
        _draws.check_range("sinc_omega_small", self.sinc_omega_small, low=1e-6, high=math.pi)
        _draws.check_range("sinc_omega_large", self.sinc_omega_large, low=1e-6, high=math.pi)


@dataclass(frozen=True)
class KernelDraw:
    """The drawn parameters of one kernel; :meth:`build` makes it."""

    family: str
    """One of :data:`KERNEL_FAMILIES` or ``"sinc"``."""
    size: int
    sigma_x: float | None = None
    sigma_y: float | None = None
    theta: float | None = None
    beta: float | None = None
    """Shape of the generalised Gaussian and plateau families; ``None`` otherwise."""
    omega_c: float | None = None
    """Cut-off (rad/px) of a sinc kernel; ``None`` otherwise."""

    def build(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The ``(size, size)`` kernel on the CPU, summing to 1."""
        if self.family == "sinc":
            assert self.omega_c is not None
            return sinc_kernel(self.size, self.omega_c, dtype)
        assert self.sigma_x is not None and self.sigma_y is not None and self.theta is not None
        sx, sy, th = self.sigma_x, self.sigma_y, self.theta
        if self.family in ("iso", "aniso"):
            return gaussian_kernels(self.size, sx, sy, th)[0].to(dtype)
        assert self.beta is not None
        if self.family.startswith("generalized"):
            return generalized_gaussian_kernel(self.size, sx, sy, th, self.beta, dtype)
        return plateau_kernel(self.size, sx, sy, th, self.beta, dtype)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _draw_size(generator: torch.Generator, sizes: tuple[int, int]) -> int:
    return 2 * _draws.integer(generator, sizes[0] // 2, sizes[1] // 2) + 1


def _draw_beta(generator: torch.Generator, beta: Range) -> float:
    # Real-ESRGAN: half the draws below 1, half above (the range is assumed to straddle 1)
    if _draws.bernoulli(generator, 0.5):
        return _draws.uniform(generator, beta[0], min(1.0, beta[1]))
    return _draws.uniform(generator, max(1.0, beta[0]), beta[1])


def draw_blur_kernel(generator: torch.Generator, config: BlurConfig | None = None) -> KernelDraw:
    """Draw one stage-blur kernel's parameters (module docstring), in Real-ESRGAN's order:
    size, sinc or not, then ``omega_c`` or the family, ``sx``, [``sy``, ``theta``], [beta]."""
    cfg = config or BlurConfig()
    size = _draw_size(generator, cfg.kernel_sizes)
    if _draws.bernoulli(generator, cfg.sinc_prob):
        omega = cfg.sinc_omega_small if size < cfg.sinc_small_below else cfg.sinc_omega_large
        return KernelDraw("sinc", size, omega_c=_draws.uniform(generator, *omega))
    family = KERNEL_FAMILIES[_draws.choice(generator, cfg.family_probs)]
    sx = _draws.uniform(generator, *cfg.sigma)
    if not family.endswith("aniso"):
        sy, theta = sx, 0.0
    else:
        sy = _draws.uniform(generator, *cfg.sigma)
        theta = _draws.uniform(generator, *cfg.rotation)
    beta = None
    if family.startswith("generalized"):
        beta = _draw_beta(generator, cfg.beta_generalized)
    elif family.startswith("plateau"):
        beta = _draw_beta(generator, cfg.beta_plateau)
    return KernelDraw(family, size, sx, sy, theta, beta)


def draw_sinc_kernel(generator: torch.Generator, sizes: tuple[int, int] = (7, 21),
                     omega_c: Range = (math.pi / 3, math.pi)) -> KernelDraw:
    """Draw the final sinc filter of stage 2: a size on ``sizes`` (odd), ``omega_c`` on ``omega_c``."""
    size = _draw_size(generator, sizes)
    return KernelDraw("sinc", size, omega_c=_draws.uniform(generator, *omega_c))


def random_blur_kernel(generator: torch.Generator, config: BlurConfig | None = None,
                       dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, KernelDraw]:
    """A random stage-blur kernel ``(size, size)`` on the CPU and the parameters drawn for it."""
    draw = draw_blur_kernel(generator, config)
    return draw.build(dtype), draw


def random_sinc_kernel(generator: torch.Generator, sizes: tuple[int, int] = (7, 21),
                       omega_c: Range = (math.pi / 3, math.pi),
                       dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, KernelDraw]:
    """A random final sinc kernel (:func:`draw_sinc_kernel`) and its parameters."""
    draw = draw_sinc_kernel(generator, sizes, omega_c)
    return draw.build(dtype), draw


# --------------------------------------------------------------------------- blur


def _stack_kernels(kernels: torch.Tensor | Sequence[torch.Tensor | None], batch: int) -> torch.Tensor:
    """``(batch, k, k)`` float64 CPU/device kernels, smaller ones zero-padded to the largest
    (the zero taps change nothing: the padded image holds the same values at the same
    offsets); ``None`` is the identity (Real-ESRGAN's pulse kernel)."""
    if isinstance(kernels, torch.Tensor):
        if kernels.ndim == 2:
            kernels = kernels.expand(batch, *kernels.shape)
        if kernels.ndim != 3 or kernels.shape[0] != batch or kernels.shape[-1] != kernels.shape[-2]:
            raise InputError(f"kernels must be (k, k) or ({batch}, k, k), got {tuple(kernels.shape)}")
        if kernels.shape[-1] % 2 == 0:
            raise InputError(f"kernel sizes must be odd, got {kernels.shape[-1]}")
        return kernels
    ks = list(kernels)
    if len(ks) != batch:
        raise InputError(f"need one kernel per image ({batch}), got {len(ks)}")
    size = max([k.shape[-1] for k in ks if k is not None], default=1)
    out = []
    for k in ks:
        if k is None:
            k = torch.ones(1, 1, dtype=torch.float64)
        if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
            raise InputError(f"each kernel must be square with an odd size, got {tuple(k.shape)}")
        p = (size - k.shape[-1]) // 2
        out.append(F.pad(k, (p, p, p, p)))
    return torch.stack(out)


def apply_blur(x: torch.Tensor, kernels: torch.Tensor | Sequence[torch.Tensor | None]) -> torch.Tensor:
    """Convolve image ``i`` of a BCHW batch with its own kernel, all in one grouped convolution.

    ``kernels``: one ``(k, k)`` kernel for all, a ``(B, k, k)`` tensor, or a sequence of ``B``
    odd square kernels of any sizes (``None`` leaves that image as it is). Reflect padding,
    as Real-ESRGAN's ``filter2D`` (replicate when the image is too small to reflect); the
    kernels move to ``x``'s device and dtype.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise InputError(f"apply_blur expects a float BCHW tensor, got {getattr(x, 'shape', x)}")
    b, c, h, w = x.shape
    k = _stack_kernels(kernels, b)
    size = k.shape[-1]
    if size == 1:
        return x * k.reshape(b, 1, 1, 1).to(x)
    k = upload_async(k, x.device, x.dtype) if k.device != x.device else k.to(x.dtype)
    pad = size // 2
    mode = "reflect" if min(h, w) > pad else "replicate"
    xp = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode=mode)
    # conv2d correlates; flipping makes it a convolution (the same for these symmetric kernels)
    weight = k.flip(-1, -2).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(xp, weight, groups=b * c).reshape(b, c, h, w)
