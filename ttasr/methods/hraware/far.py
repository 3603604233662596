"""The Feature-Alignment Regularizer (FAR) of HR-aware adaptation (paper Sec. 4.4, eqs. 9-11).

FAR compares the channel statistics of two encoders on the same HR image ``x``: the
trainable image encoder ``E_i`` and a frozen, established encoder ``E_c`` (CLIP RN50 in the
paper; see :mod:`.encoders`). Pretraining on natural HR images teaches linear maps
``φ, ψ`` to predict ``E_c``'s statistics from ``E_i``'s; in finetuning, a super-resolved
image whose statistics the maps no longer predict is "off the natural-image
distribution", and the SR model is pushed back towards it.

* :func:`gram_matrix` (eq. 10): ``G = F·Fᵀ / (HW)`` of a ``C x HW`` feature map.
* :func:`gram_descriptors` (eq. 10): the mean and the max of each row of ``G``, two
  ``C``-vectors: how strongly each channel correlates with the others, on average and at
  most.
* :func:`feature_alignment_regularizer` (eq. 11):
  ``L_far = ‖φ(d_avg(E_i x)) − d_avg(E_c x)‖ + ‖ψ(d_max(E_i x)) − d_max(E_c x)‖``.

The norm is the paper's Frobenius norm of each sample's ``C_c``-vector difference (its
L2 norm), averaged over the batch so that the loss does not grow with the batch size
(the paper does not say how a batch is reduced). ``norm="squared"`` (the mean of the
squared differences) is offered as a smoother alternative; it is not the paper's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch

from ..._lookup import unknown_name
from ...errors import InputError

__all__ = ["FarNorm", "GramDescriptors", "feature_alignment_regularizer", "gram_descriptors", "gram_matrix"]

FarNorm = Literal["l2", "squared"]
"""How FAR measures a descriptor difference: ``"l2"`` its L2 (Frobenius) norm, the paper's;
``"squared"`` the mean of its squared entries."""

_NORMS = ("l2", "squared")


class GramDescriptors(NamedTuple):
    """The statistical descriptor of a feature map (eq. 10): two ``B x C`` tensors."""

    avg: torch.Tensor
    """Mean of each row of the Gram matrix."""
    max: torch.Tensor
    """Max of each row of the Gram matrix."""


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Eq. 10's Gram matrix, ``F·Fᵀ / (HW)`` per sample: ``B x C x H x W`` -> ``B x C x C``.

    Half-precision features are promoted to float32 first: the sum over ``HW`` positions
    overflows float16 on HR crops.
    """
    if features.ndim != 4:
        raise InputError(f"gram_matrix needs a B x C x H x W feature map, got shape {tuple(features.shape)}")
    b, c, h, w = features.shape
    if h * w == 0:
        raise InputError(f"gram_matrix got an empty {h}x{w} feature map")
    if features.dtype in (torch.float16, torch.bfloat16):
        features = features.float()
    flat = features.reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)


def gram_descriptors(features: torch.Tensor) -> GramDescriptors:
    """Eq. 10's descriptors of a ``B x C x H x W`` feature map: row mean and row max of its
    Gram matrix, each ``B x C``."""
    g = gram_matrix(features)
    return GramDescriptors(g.mean(dim=2), g.amax(dim=2))


def _difference(a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample size of ``a - b`` (both ``B x C``), shape ``(B,)``."""
    if a.shape != b.shape:
        raise InputError(f"FAR compares descriptors of the same shape; the aligned E_i descriptor is "
                         f"{tuple(a.shape)}, the E_c descriptor {tuple(b.shape)}: φ/ψ must map to E_c's channels")
    d = a - b
    if norm == "l2":
        return torch.linalg.vector_norm(d, dim=1)
    return d.square().mean(dim=1)


def feature_alignment_regularizer(
    desc_i: GramDescriptors,
    desc_c: GramDescriptors,
    phi: Callable[[torch.Tensor], torch.Tensor],
    psi: Callable[[torch.Tensor], torch.Tensor],
    *,
    norm: FarNorm = "l2",
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Eq. 11: ``‖φ(avg_i) − avg_c‖ + ‖ψ(max_i) − max_c‖`` per sample, averaged over the batch.

    ``desc_i`` are :func:`gram_descriptors` of ``E_i``'s features (``B x C_i``), ``desc_c``
    those of ``E_c``'s (``B x C_c``); ``φ, ψ`` map ``C_i -> C_c``. ``reduction="none"``
    returns the ``(B,)`` per-sample values. Gradients reach ``φ``, ``ψ`` and whatever
    produced the descriptors; freezing ``E_c`` (or detaching ``desc_c``) is the caller's.
    """
    if norm not in _NORMS:
        raise unknown_name("FAR norm", str(norm), _NORMS)
    per_sample = _difference(phi(desc_i.avg), desc_c.avg, norm) + _difference(psi(desc_i.max), desc_c.max, norm)
    if reduction == "none":
        return per_sample
    if reduction != "mean":
        raise unknown_name("FAR reduction", str(reduction), ("mean", "none"))
    return per_sample.mean()
