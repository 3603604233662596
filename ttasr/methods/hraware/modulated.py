"""StyleGAN2's modulated, demodulated convolution (Karras et al., CVPR 2020, Sec. 2.2).

The HR-aware reconstructor (METHODS §2, after LWay) lets the degradation embedding steer
every convolution of its trunk the way StyleGAN2 lets a style vector steer a generator:

1. :func:`modulate_weight` (StyleGAN2 eq. 1): ``w'_{b,o,i,k} = g · s_{b,i} · w_{o,i,k}``,
   one weight per sample ``b``, where ``s_b`` is the sample's style and
   ``g = 1/sqrt(fan_in)`` the equalised-learning-rate gain (``fan_in = C_in·k·k``).
2. :func:`demodulate_weight` (eq. 3): ``w''_{b,o,i,k} = w' / sqrt(sum_{i,k} w'^2 + eps)``,
   so every output channel's effective filter has unit L2 norm and the output's scale no
   longer depends on the style's magnitude.
3. :func:`modulated_conv2d`: all samples in one ``conv2d`` call, with the batch folded
   into the channel axis and ``groups = B`` (StyleGAN2's grouped-convolution trick).

:class:`ModulatedConv2d` is the module: weight, bias and the affine map ``A`` from the
embedding to the style (a linear layer, which on a vector is LWay's "1x1 conv").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError

__all__ = ["ModulatedConv2d", "demodulate_weight", "modulate_weight", "modulated_conv2d"]


def modulate_weight(weight: torch.Tensor, style: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """StyleGAN2 eq. 1: a ``O x I x k x k`` weight scaled per input channel by each sample's
    ``B x I`` style (and by ``gain``), shape ``B x O x I x k x k``."""
    if weight.ndim != 4 or style.ndim != 2 or style.shape[1] != weight.shape[1]:
        raise InputError(f"modulate_weight needs an O x I x k x k weight and a B x I style, got "
                         f"{tuple(weight.shape)} and {tuple(style.shape)}")
    return gain * weight.unsqueeze(0) * style[:, None, :, None, None]


def demodulate_weight(weight: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """StyleGAN2 eq. 3: a ``B x O x I x k x k`` weight divided by each output channel's L2
    norm, ``sqrt(sum_{i,k,k} w^2 + eps)``."""
    if weight.ndim != 5:
        raise InputError(f"demodulate_weight needs a B x O x I x k x k weight, got {tuple(weight.shape)}")
    return weight * torch.rsqrt(weight.square().sum(dim=(2, 3, 4), keepdim=True) + eps)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    style: torch.Tensor,
    *,
    demodulate: bool = True,
    eps: float = 1e-8,
    gain: float | None = None,
) -> torch.Tensor:
    """Convolve each sample of ``x`` (``B x I x H x W``) with its own modulated weight.

    ``gain`` defaults to ``1/sqrt(I·k·k)``. Padding keeps the size (``k // 2``, zeros;
    ``k`` must be odd). The batch is folded into the channels, ``1 x (B·I) x H x W``, and
    convolved once with the ``(B·O) x I x k x k`` stack of weights in ``B`` groups.
    """
    if x.ndim != 4 or x.shape[1] != weight.shape[1] or style.shape[0] != x.shape[0]:
        raise InputError(f"modulated_conv2d: input {tuple(x.shape)}, weight {tuple(weight.shape)} and "
                         f"style {tuple(style.shape)} do not agree (B x I x H x W, O x I x k x k, B x I)")
    out_ch, in_ch, kh, kw = weight.shape
    if kh != kw or kh % 2 == 0:
        raise InputError(f"modulated_conv2d needs a square, odd kernel, got {kh}x{kw}")
    b, _, h, w = x.shape
    g = 1.0 / math.sqrt(in_ch * kh * kw) if gain is None else gain
    wb = modulate_weight(weight, style, g)
    if demodulate:
        wb = demodulate_weight(wb, eps)
    out = F.conv2d(x.reshape(1, b * in_ch, h, w), wb.reshape(b * out_ch, in_ch, kh, kw),
                   padding=kh // 2, groups=b)
    return out.reshape(b, out_ch, h, w)


class ModulatedConv2d(nn.Module):
    """A convolution whose weight each sample's embedding modulates (and demodulates).

    ``style = A(embedding)`` with ``A`` a linear map ``style_dim -> in_channels`` whose bias
    starts at 1 (as in StyleGAN2), so an untrained layer sees styles near 1. The weight is
    drawn from ``N(0, 1)`` and scaled at run time by ``1/sqrt(fan_in)`` (equalised learning
    rate); the bias is added after the convolution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        *,
        eps: float = 1e-8,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0 or kernel_size < 1:
            raise InputError(f"ModulatedConv2d needs an odd kernel size, got {kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.style_dim, self.demodulate, self.eps = style_dim, demodulate, eps
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.affine = nn.Linear(style_dim, in_channels)
        nn.init.ones_(self.affine.bias)
        self.gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def style(self, embedding: torch.Tensor) -> torch.Tensor:
        """The ``B x in_channels`` style of a ``B x style_dim`` embedding."""
        if embedding.ndim != 2 or embedding.shape[1] != self.style_dim:
            raise InputError(f"ModulatedConv2d expects a B x {self.style_dim} embedding, got {tuple(embedding.shape)}")
        return self.affine(embedding)  # type: ignore[no-any-return]

    def effective_weight(self, embedding: torch.Tensor) -> torch.Tensor:
        """The ``B x O x I x k x k`` weights the samples are convolved with."""
        w = modulate_weight(self.weight, self.style(embedding), self.gain)
        return demodulate_weight(w, self.eps) if self.demodulate else w

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        out = modulated_conv2d(x, self.weight, self.style(embedding), demodulate=self.demodulate,
                               eps=self.eps, gain=self.gain)
        if self.bias is not None:
            out = out + self.bias[None, :, None, None]
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"style_dim={self.style_dim}, demodulate={self.demodulate}")
