"""The maths every adapter shares: EMA of weights, the proximal term, weighted L1.

Pure functions on parameter lists and tensors. Paper references are to AdaSSR
(Fan et al., IEEE TIP 2024).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "ema_update_",
    "proximal_term",
    "add_proximal_gradient_",
    "weighted_l1",
    "snapshot",
    "blend_weights",
]


@torch.no_grad()
def ema_update_(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """AdaSSR eq. (16): ``Θ_A ← α·Θ_A + (1 − α)·Θ``, fused and in place.

    Floating-point buffers (e.g. BatchNorm statistics) follow the same rule; integer
    buffers are copied.
    """
    ema_p: list[torch.Tensor] = list(ema.parameters())
    cur_p = [p.detach() for p in model.parameters()]
    if ema_p:
        torch._foreach_lerp_(ema_p, cur_p, 1.0 - decay)
    for eb, b in zip(ema.buffers(), model.buffers()):
        if eb.is_floating_point():
            eb.lerp_(b, 1.0 - decay)
        else:
            eb.copy_(b)


def proximal_term(params: Sequence[torch.Tensor], anchor: Sequence[torch.Tensor]) -> torch.Tensor:
    """``‖Θ − Θ₀‖²`` summed over all parameters (AdaSSR eqs. 10 and 15, without μ)."""
    return sum(((p - a) ** 2).sum() for p, a in zip(params, anchor))  # type: ignore[return-value]


@torch.no_grad()
def add_proximal_gradient_(params: Sequence[torch.Tensor], anchor: Sequence[torch.Tensor], mu: float) -> None:
    """Add ``∇ μ‖Θ − Θ₀‖² = 2μ(Θ − Θ₀)`` to each ``p.grad`` in place.

    Exactly the gradient of the proximal term of eq. (15), without building it into the
    autograd graph (one fused pass instead of a sum over every parameter).
    """
    if mu == 0:
        return
    ps = [p for p in params if p.grad is not None]
    grads = [p.grad for p in ps]
    anc = [a for p, a in zip(params, anchor) if p.grad is not None]
    diff = torch._foreach_sub([p.detach() for p in ps], anc)
    torch._foreach_add_(grads, diff, alpha=2.0 * mu)  # type: ignore[arg-type]


def weighted_l1(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """AdaSSR eq. (15) data term: ``mean(w ∘ |N(y_d) − y|)``; plain L1 when ``weights`` is None.

    ``weights`` is Bx1xHxW (broadcast over channels) or BxCxHxW.
    """
    err = (pred - target).abs()
    if weights is not None:
        err = err * weights
    return err.mean()


@torch.no_grad()
def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state dict (for "best so far" weights)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


@torch.no_grad()
def blend_weights(start: Mapping[str, torch.Tensor], adapted: Mapping[str, torch.Tensor],
                  blend: float) -> dict[str, torch.Tensor]:
    """``Θ0 + blend·(Θ − Θ0)``: the adapted weights pulled back towards the start (ours).

    Near a start that is already optimal, the loss of a small step grows with ``blend²``; where
    it is not, the gain grows with ``blend``. So, in theory, a fraction of the adaptation keeps
    more of a gain than of a loss (measured, and not always so, in benchmarks/RESULTS.md, *Blending*).
    Floating-point entries are interpolated, others (integer buffers) taken from ``adapted``;
    the result lives where ``adapted`` does.
    """
    if set(start) != set(adapted):
        raise ValueError("blend_weights needs two state dicts of the same network")
    out = {}
    for k, v in adapted.items():
        out[k] = torch.lerp(start[k].to(v), v, blend) if v.is_floating_point() else v.clone()
    return out
