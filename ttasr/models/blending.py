"""Blending two networks' outputs, ``λ·N_θ(x) + (1 − λ)·N_θ0(x)`` (ours).

A blend of outputs is not a blend of weights: the squared error of the output blend is at most
``λ`` times the adapted network's plus ``1 − λ`` times the pretrained one's, less
``λ(1 − λ)‖N_θ(x) − N_θ0(x)‖²``, so it can never fall below both ends, while a blend of the
weights can (benchmarks/RESULTS.md, 'Blending the outputs').
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .model import SRModel, forward

__all__ = ["OutputBlend", "blend_outputs"]


class OutputBlend(nn.Module):
    """``fraction·adapted(x) + (1 − fraction)·base(x)``: two networks of one scale, one output."""

    def __init__(self, base: nn.Module, adapted: nn.Module, fraction: float) -> None:
        super().__init__()
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"an output blend's fraction must lie in [0, 1], got {fraction}")
        self.base, self.adapted, self.fraction = base, adapted, float(fraction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.lerp(forward(self.base, x), forward(self.adapted, x), self.fraction)


def blend_outputs(base: SRModel, adapted: SRModel, fraction: float) -> SRModel:
    """An :class:`SRModel` that enhances with ``fraction`` of ``adapted``'s output and the rest
    of ``base``'s (the networks are shared, not copied). It runs both networks, so it costs
    two forward passes, and its state dict is not one architecture's (``spandrel_compatible``
    is False): save the adapted network itself (:meth:`ttasr.adapters.Adapter.save` does)."""
    if base.scale != adapted.scale:
        raise ValueError(f"cannot blend the outputs of a x{base.scale} and a x{adapted.scale} model")
    out = copy.copy(adapted)
    out.module = OutputBlend(base.module, adapted.module, fraction)
    out.spandrel_compatible = False
    out.supports_half = base.supports_half and adapted.supports_half
    out.supports_bfloat16 = base.supports_bfloat16 and adapted.supports_bfloat16
    out.metadata = {**adapted.metadata, "blend_space": "outputs", "blend": f"{fraction:g}"}
    return out
