"""AdaSSR's unrolled ADMM (eqs. 3-8): external learning rounds between internal ones.

Round 1 is internal learning from the pretrained weights Θe⁽¹⁾ (eq. 9 is the supervised
pretraining itself). Each later round ``k`` solves

* eq. (8), external: ``Θe ← argmin λ Σ L(N(y_i|Θe), x_i) + μ‖Θe − Θ̃e‖²`` with
  ``Θ̃e = Θ⁽ᵏ⁾ − ū⁽ᵏ⁾``, on synthetic pairs from HR images (Real-ESRGAN degradations);
* eq. (10), internal: ``Θ ← argmin L_int + μ‖Θ − Θ̃‖²`` with ``Θ̃ = Θe⁽ᵏ⁺¹⁾ + ū⁽ᵏ⁾``,
  initialised at ``Θe⁽ᵏ⁺¹⁾`` (Sec. III-C-2);
* the scaled dual update ``ū⁽ᵏ⁺¹⁾ = ū⁽ᵏ⁾ + Θ⁽ᵏ⁺¹⁾ − Θe⁽ᵏ⁺¹⁾``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from ...adapters.loop import LoopResult, LoopSettings, TrainingLoop
from ...adapters.training import weighted_l1
from ...degradations.realesrgan import degrade_realesrgan
from ...models import SRModel
from ...models.model import forward

__all__ = ["external_learning", "dual_update", "proximal_target"]

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]


def proximal_target(theta: State, u: State, sign: float) -> State:
    """``Θ + sign·ū`` on floating-point tensors (others taken from ``theta``): Θ̃e (sign −1)
    and Θ̃ (sign +1) of eqs. (5)-(6)."""
    return {k: v + sign * u[k] if k in u else v for k, v in theta.items()}


def dual_update(u: State | None, theta: State, theta_e: State) -> State:
    """Eq. (7), scaled form: ``ū ← ū + Θ − Θe`` (``ū⁽⁰⁾ = 0``)."""
    out = {}
    for k, v in theta.items():
        if v.is_floating_point():
            prev = u[k] if u is not None else torch.zeros_like(v)
            out[k] = prev + (v - theta_e[k].to(v))
    return out


def _random_crops(images: Sequence[torch.Tensor], size: int, count: int, g: torch.Generator) -> torch.Tensor:
    crops = []
    for _ in range(count):
        img = images[int(torch.randint(len(images), (), generator=g))]
        h, w = img.shape[-2:]
        s = min(size, h, w)
        t = int(torch.randint(h - s + 1, (), generator=g))
        l = int(torch.randint(w - s + 1, (), generator=g))
        crops.append(img[..., t:t + s, l:l + s])
    side = min(c.shape[-1] for c in crops)
    return torch.cat([c[..., :side, :side] for c in crops])


def external_learning(
    model: SRModel,
    start: State,
    anchor: State,
    hr_images: Sequence[torch.Tensor],
    settings: LoopSettings,
    *,
    batch_size: int,
    patch_size: int,
    lam: float,
    seed: int,
    device: torch.device,
) -> LoopResult:
    """Eq. (8): fit ``model`` (from ``start``) to synthetic pairs of ``hr_images``.

    LR inputs are Real-ESRGAN second-order degradations of random HR crops of
    ``patch_size·scale`` pixels; the loss is ``λ·L1`` plus the proximal term to ``anchor``
    (``settings.proximal_weight`` = μ); with ``settings.ema_decay`` the EMA of the weights
    is the result (``.best``), as in the paper's external iterations.
    """
    s = model.scale
    net = model.trainable_copy().to(device)
    net.load_state_dict(start)

    def loss_fn(network: nn.Module, g: torch.Generator) -> torch.Tensor:
        hr = _random_crops(hr_images, patch_size * s, batch_size, g)
        pair = degrade_realesrgan(hr, s, seed=seed * 1_000_003 + loop.step)
        lr_in = pair.lr[..., : hr.shape[-2] // s, : hr.shape[-1] // s]
        return lam * weighted_l1(forward(network, lr_in.to(device)), pair.hr.to(device))

    loop = TrainingLoop(net, loss_fn, settings, generator=torch.Generator().manual_seed(seed), anchor=anchor)
    return loop.run()
