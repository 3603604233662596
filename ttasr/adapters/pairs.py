"""Internal-learning pairs ``(y↓, y)`` and aligned random crops.

The test image ``y`` is the target; ``y↓ = D(y)`` is ``y`` degraded once more by the model
scale (ZSSR; AdaSSR Sec. III-B). Crops are aligned so that input pixel ``i`` of ``y↓``
corresponds to target pixels ``i·s … (i+1)·s − 1`` of ``y``.
"""

from __future__ import annotations

import torch

from ..degradations.kernels import degrade_with_kernel, imresize

__all__ = ["downscale_pair", "aligned_crops", "dihedral"]


def downscale_pair(y: torch.Tensor, scale: int, kernel: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y↓, y)`` with ``y`` cropped to a multiple of ``scale``.

    ``kernel=None``: MATLAB bicubic downscaling; otherwise blur with ``kernel`` and subsample.
    """
    h, w = (y.shape[-2] // scale) * scale, (y.shape[-1] // scale) * scale
    y = y[..., :h, :w]
    low = imresize(y, 1.0 / scale) if kernel is None else degrade_with_kernel(y, kernel, scale)
    return low.clamp(0, 1), y


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips/rotations of the square's symmetry group (k in 0..7)."""
    if k & 4:
        x = x.flip(-1)
    return torch.rot90(x, k & 3, dims=(-2, -1))


def aligned_crops(
    low: torch.Tensor,
    high: torch.Tensor,
    scale: int,
    patch: int,
    count: int,
    generator: torch.Generator,
    weights: torch.Tensor | None = None,
    flips: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``count`` random aligned crops: inputs ``patch²`` from ``low``, targets ``(patch·s)²``.

    ``weights`` (1x1xHxW, at ``high``'s size) is cropped like the targets. With ``flips``,
    each crop gets a random element of the dihedral group, the same for all three.
    """
    ph = min(patch, low.shape[-2])
    pw = min(patch, low.shape[-1])
    ps = min(ph, pw)
    top = torch.randint(0, low.shape[-2] - ps + 1, (count,), generator=generator)
    left = torch.randint(0, low.shape[-1] - ps + 1, (count,), generator=generator)
    ks = torch.randint(0, 8 if flips else 1, (count,), generator=generator)
    xs, ys, ws = [], [], []
    for t, l, k in zip(top.tolist(), left.tolist(), ks.tolist()):
        xs.append(dihedral(low[..., t:t + ps, l:l + ps], k))
        sl = (..., slice(t * scale, (t + ps) * scale), slice(l * scale, (l + ps) * scale))
        ys.append(dihedral(high[sl], k))
        if weights is not None:
            ws.append(dihedral(weights[sl], k))
    return torch.cat(xs), torch.cat(ys), (torch.cat(ws) if weights is not None else None)
