"""Blur kernels, blurring, subsampling and MATLAB-compatible bicubic resizing.

Pure tensor functions on BCHW float tensors. A degradation ``D_k(y)`` in the papers is
:func:`blur` with kernel ``k`` followed by :func:`subsample` by the scale.

Every function runs on its input's device. The constant tensors they need (resize
matrices, Gaussian taps) are built on the host once, uploaded without waiting for the
device, and kept in a small cache, so that a training step calling them many times never
synchronises with the GPU.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch
import torch.nn.functional as F

__all__ = [
    "alignment_shift",
    "bicubic_kernel",
    "bicubic_kernel_weights",
    "blur",
    "degrade_with_kernel",
    "gaussian_blur",
    "gaussian_kernel",
    "gaussian_kernels",
    "imresize",
    "kernel_size_for",
    "response_distance",
    "subsample",
    "unsharp_mask",
]


class _ConstantCache:
    """Least-recently-used constant tensors, at most ``max_bytes`` of them in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self.items: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        with self.lock:
            t = self.items.get(key)
            if t is not None:
                self.items.move_to_end(key)
                return t
        t = make()
        size = t.numel() * t.element_size()
        with self.lock:
            if size <= self.max_bytes and key not in self.items:
                self.items[key] = t
                self.bytes += size
                while self.bytes > self.max_bytes:
                    _, old = self.items.popitem(last=False)
                    self.bytes -= old.numel() * old.element_size()
        return t


# Pair sampling resizes windows of region..2*region pixels to region: for x4 and 48-pixel
# patches ~230 matrices of at most 0.4 MB, so all of them fit.
_CONSTANTS = _ConstantCache(128 << 20)


def upload_async(t: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A host-built tensor ``t`` on ``device`` (cast to ``dtype``), without waiting for it.

    A plain ``.to("cuda")`` of pageable memory synchronises the stream; a copy from pinned
    memory does not, and the caching host allocator keeps the buffer until it is done.
    """
    t = t if dtype is None else t.to(dtype)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def device_constant(
    key: Hashable, device: torch.device, dtype: torch.dtype, make: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """The cached ``make()`` (built on the host) on ``device`` as ``dtype``. Shared: never
    modify it in place."""
    return _CONSTANTS.get((key, device, dtype), lambda: upload_async(make(), device, dtype))


def gaussian_kernels(
    size: int,
    sigma_x: torch.Tensor | float,
    sigma_y: torch.Tensor | float,
    theta: torch.Tensor | float,
    shift: float = 0.0,
) -> torch.Tensor:
    """A batch of anisotropic Gaussian kernels, ``(n, size, size)`` float64, each summing to 1.

    ``sigma_x``/``sigma_y``: standard deviations (pixels) along the principal axes,
    ``theta``: angle of the first axis (radians, from the x axis in array coordinates),
    ``shift``: offset of the centre from the middle pixel along both axes (see
    :func:`alignment_shift`).
    """
    sx = torch.as_tensor(sigma_x, dtype=torch.float64).reshape(-1, 1, 1)
    sy = torch.as_tensor(sigma_y, dtype=torch.float64).reshape(-1, 1, 1)
    th = torch.as_tensor(theta, dtype=torch.float64).reshape(-1, 1, 1)
    r = torch.arange(size, dtype=torch.float64) - size // 2 - shift
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    c, s = torch.cos(th), torch.sin(th)
    u = xx * c + yy * s
    v = -xx * s + yy * c
    k = torch.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return k / k.sum(dim=(-2, -1), keepdim=True)


def gaussian_kernel(
    size: int,
    sigma_x: float,
    sigma_y: float | None = None,
    theta: float = 0.0,
    *,
    shift: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """One anisotropic Gaussian kernel, ``size x size``, summing to 1.

    ``sigma_y=None`` is isotropic; ``shift`` moves the centre (see :func:`alignment_shift`).
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    sy = sigma_x if sigma_y is None else sigma_y
    return gaussian_kernels(size, sigma_x, sy, theta, shift)[0].to(dtype)


def alignment_shift(scale: int, alignment: str = "centre") -> float:
    """Offset (HR pixels, both axes) of a kernel's centre for a pixel-grid convention.

    :func:`blur` is a true convolution and :func:`subsample` keeps pixel ``s*i``; moving the
    kernel's mass by ``-(s - 1)/2`` makes LR pixel ``i`` the average around the centre of
    HR block ``[s*i, s*i + s)``: the convention of bicubic resizing, of SR training data,
    and of a sensor pixel integrating its area. ``"corner"`` keeps the kernel centred.
    """
    if alignment == "centre":
        return -(scale - 1) / 2
    if alignment == "corner":
        return 0.0
    raise ValueError(f"alignment must be 'centre' or 'corner', got {alignment!r}")


def kernel_size_for(sigma: float, shift: float = 0.0, minimum: int = 3) -> int:
    """Smallest odd size holding ``+-3 sigma`` around a centre moved by ``shift``."""
    return max(minimum, 2 * math.ceil(3.0 * sigma + abs(shift)) + 1)


def blur(image: torch.Tensor, kernel: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Convolve each channel of a BCHW ``image`` with a 2-D ``kernel`` (reflect padding).

    With ``stride`` > 1 only every ``stride``-th output pixel (from 0) is computed.
    """
    if image.ndim != 4:
        raise ValueError(f"expected a BCHW tensor, got shape {tuple(image.shape)}")
    kh, kw = kernel.shape[-2:]
    c = image.shape[1]
    pad = (kw // 2, kw - 1 - kw // 2, kh // 2, kh - 1 - kh // 2)
    mode = "reflect" if min(image.shape[-2:]) > max(kh, kw) // 2 else "replicate"
    x = F.pad(image, pad, mode=mode)
    # conv2d is correlation; flip so that this is a true convolution for asymmetric kernels
    w = kernel.flip(-1, -2).to(image).expand(c, 1, kh, kw)
    return F.conv2d(x, w, groups=c, stride=stride)


def subsample(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Keep every ``scale``-th pixel, starting at 0 (the direct-downsampling convention)."""
    return image[..., ::scale, ::scale]


def degrade_with_kernel(image: torch.Tensor, kernel: torch.Tensor, scale: int) -> torch.Tensor:
    """``D_k(y)``: blur with ``kernel`` then subsample by ``scale`` (AdaSSR's pair maker).

    Equal to ``subsample(blur(image, kernel), scale)``, computed only at the kept pixels
    (a strided convolution: ``scale²`` times less work).
    """
    return blur(image, kernel, stride=scale)


def gaussian_blur(x: torch.Tensor, sigma: float, size: int | None = None) -> torch.Tensor:
    """Separable isotropic Gaussian blur of a BCHW tensor (reflect padding, replicate for
    tiny images); ``size`` defaults to ``2*ceil(3 sigma) + 1``."""
    size = size or 2 * math.ceil(3 * sigma) + 1
    g = device_constant(("gaussian", size, sigma), x.device, x.dtype,
                        lambda: _gaussian_taps(size, sigma))
    b, c, h, w = x.shape
    pad = size // 2
    mode = "reflect" if min(h, w) > pad else "replicate"
    y = F.pad(x.reshape(b * c, 1, h, w), (pad, pad, pad, pad), mode=mode)
    y = F.conv2d(F.conv2d(y, g.view(1, 1, 1, size)), g.view(1, 1, size, 1))
    return y.reshape(b, c, h, w)


def _gaussian_taps(size: int, sigma: float) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    return g / g.sum()


def unsharp_mask(x: torch.Tensor, sigma: float = 2.0, amount: float = 0.5, threshold: float = 10 / 255,
                 size: int | None = None) -> torch.Tensor:
    """Unsharp masking as Real-ESRGAN does it: ``x + amount·(x − blur(x))`` where the detail
    exceeds ``threshold`` (a blurred, soft mask), clamped to [0, 1]."""
    detail = x - gaussian_blur(x, sigma, size)
    mask = (detail.abs() > threshold).to(x.dtype)
    soft = gaussian_blur(mask, sigma, size)
    sharp = (x + amount * detail).clamp(0, 1)
    return soft * sharp + (1 - soft) * x


def _cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    near = (a + 2) * ax3 - (a + 3) * ax2 + 1
    far = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def bicubic_kernel_weights(in_size: int, out_size: int, scale: float, antialias: bool = True) -> torch.Tensor:
    """The ``out_size x in_size`` matrix of MATLAB ``imresize`` bicubic weights.

    Cubic convolution with a = -0.5; when shrinking with ``antialias`` the kernel is
    widened by ``1/scale``; borders are handled by symmetric reflection, as MATLAB does.
    """
    shrink = scale < 1 and antialias
    width = 4.0 / scale if shrink else 4.0
    out = torch.arange(1, out_size + 1, dtype=torch.float64)
    centre = out / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(centre - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = centre[:, None] - idx
    w = scale * _cubic(dist * scale) if shrink else _cubic(dist)
    w = w / w.sum(1, keepdim=True)
    # symmetric reflection of 1-based indices into [1, in_size]
    j = idx - 1
    period = 2 * in_size
    j = torch.remainder(j, period)
    j = torch.where(j >= in_size, period - 1 - j, j).long()
    mat = torch.zeros(out_size, in_size, dtype=torch.float64)
    mat.scatter_add_(1, j, w)
    return mat


def bicubic_kernel(scale: int, shift: float | None = None) -> torch.Tensor:
    """MATLAB bicubic downscaling by an integer ``scale`` as a blur kernel (float64, sums to 1).

    The antialiased cubic (a = -0.5) stretched by ``scale``, centred ``shift`` HR pixels off
    the middle (default :func:`alignment_shift`), so that ``degrade_with_kernel(x, k, scale)``
    equals ``imresize(x, 1 / scale)`` away from the borders. It lets the model's own training
    degradation compete with Gaussian blurs, e.g. in :func:`ttasr.pairs.calibrate_kernel`.
    """
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    shift = alignment_shift(scale) if shift is None else shift
    radius = math.ceil(2 * scale + abs(shift))
    taps = torch.arange(2 * radius + 1, dtype=torch.float64) - radius - shift
    w = _cubic(taps / scale)
    w = w / w.sum()
    return torch.outer(w, w)


def response_distance(kernel: torch.Tensor, reference: torch.Tensor, scale: int) -> float:
    """How differently two blur kernels (2-D, HR pixels) pass what survives subsampling by
    ``scale``: the largest difference of their frequency-response magnitudes (each kernel
    normalised to sum 1) at frequencies up to the LR Nyquist, 1 / (2 * scale) cycles per HR
    pixel on each axis. Magnitudes ignore where a kernel is centred, so a measured kernel
    can be compared with :func:`bicubic_kernel` whatever its shift. 0: the same blur."""
    side = max(*kernel.shape[-2:], *reference.shape[-2:])
    n = 1 << max(6, math.ceil(math.log2(4 * side)))

    def magnitude(k: torch.Tensor) -> torch.Tensor:
        k = k.detach().to("cpu", torch.float64).reshape(k.shape[-2:])
        return torch.fft.fft2(k / k.sum(), s=(n, n)).abs()

    f = torch.fft.fftfreq(n, dtype=torch.float64).abs()
    band = (f[:, None] <= 0.5 / scale) & (f[None, :] <= 0.5 / scale)
    return float((magnitude(kernel) - magnitude(reference)).abs()[band].max())


def imresize(image: torch.Tensor, scale: float | None = None, size: tuple[int, int] | None = None,
             antialias: bool = True) -> torch.Tensor:
    """MATLAB-compatible bicubic resize of a BCHW tensor (no clamping).

    Give either ``scale`` (output = ceil(input * scale)) or ``size`` = (height, width).
    This is the standard way SR benchmarks make bicubic LR images.
    """
    h, w = image.shape[-2:]
    if size is None:
        if scale is None:
            raise ValueError("give scale or size")
        size = (math.ceil(h * scale), math.ceil(w * scale))
    oh, ow = size
    sh, sw = (scale, scale) if scale is not None else (oh / h, ow / w)
    dtype = image.dtype if image.is_floating_point() else torch.float32
    mh = device_constant(("bicubic", h, oh, sh, antialias), image.device, dtype,
                         lambda: bicubic_kernel_weights(h, oh, sh, antialias))
    mw = device_constant(("bicubic", w, ow, sw, antialias), image.device, dtype,
                         lambda: bicubic_kernel_weights(w, ow, sw, antialias))
    x = image.to(dtype)
    if x.device.type == "cpu":
        return torch.einsum("oh,bchw,pw->bcop", mh, x, mw)  # kept: CPU results stay bit for bit
    # a three-operand einsum searches its contraction order on every call (~0.2 ms of host
    # time), more than the GPU needs for the resize itself
    return mh @ x @ mw.mT
