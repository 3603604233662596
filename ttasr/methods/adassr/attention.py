"""Self-similarity attention maps that weight AdaSSR's internal loss (Sec. III-C-1, eqs. 11-15).

The paper takes the input ``X`` of the last self-attention block of a transformer SR
network (SwinIR), normalises it with the block's ``norm1``, average-pools it by ``n``
into tokens ``G`` (``HW/n^2 x C``), projects ``Q = G P_Q``, ``K = G P_K`` with the
block's own weights (eq. 12), computes *global* attention ``A = softmax(Q K^T / sqrt(d))``
(eq. 13) and sums its columns, ``map_j = sum_i A_ij`` (eq. 14), averaged over heads. A
token that many tokens attend to (a patch that recurs in the image) gets a high score;
column sums average to 1. The loss weight is ``w = clip(0.9 map + 0.1, 0.1, 3.0)``
(Sec. IV-A-1): :func:`attention_weights`.

* :func:`transformer_attention_map`: the paper's map, from SwinIR, Swin2SR, HAT or DAT
  (spandrel layouts; :func:`locate_attention` says which block). The attention model
  may be another checkpoint than the adapted one (the paper adapts Real-ESRGAN).
* :func:`feature_attention_map`: **our extension, not in the paper**, for convolutional
  models without self-attention: the adapted model's own deep features with
  parameter-free attention (``Q = K`` = centred, L2-normalised pooled features).

The equations, one function each: :func:`pooled_tokens` and :func:`query_key` (eq. 12),
:func:`column_attention_map` (eqs. 13-14), :func:`attention_weights` (Sec. IV-A-1).
Reaching inside the network (padding, hooks, trunk features) is
:mod:`ttasr.models.features`; heat-map PNGs are :mod:`.heatmap`, the per-image cache
:mod:`.attention_cache`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError, ModelError
from ...models.features import (
    capture_input,
    capture_trunk_features,
    crop_valid,
    padded_size,
    unwrap_module,
)

__all__ = [
    "AttentionBlock",
    "attention_weights",
    "column_attention_map",
    "feature_attention_map",
    "find_attention_block",
    "locate_attention",
    "pooled_tokens",
    "query_key",
    "transformer_attention_map",
]

log = logging.getLogger(__name__)

ScaleMode = Literal["head_dim", "channels"]


# --------------------------------------------------------------------------- locating the block
@dataclass(frozen=True)
class AttentionBlock:
    """The self-attention block an attention map is taken from.

    ``block`` is the transformer block whose *input* is captured, ``attn`` its attention
    module (``qkv`` projection), ``norm`` the layer norm applied before attention (None
    for Swin v2's post-norm), ``cosine`` whether the block uses Swin v2 cosine attention
    with a learnt per-head ``logit_scale``.
    """

    block: nn.Module
    attn: nn.Module
    norm: nn.Module | None
    num_heads: int
    cosine: bool
    path: str

    @property
    def dim(self) -> int:
        qkv: Any = self.attn.qkv
        return int(qkv.weight.shape[1])

    def qk_projection(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(W_q, W_k, b_q, b_k)``: rows ``[0:C]`` and ``[C:2C]`` of ``qkv`` (eq. 12)."""
        c = self.dim
        qkv: Any = self.attn.qkv
        w = qkv.weight
        bias = getattr(qkv, "bias", None)
        if bias is not None:
            return w[:c], w[c : 2 * c], bias[:c], bias[c : 2 * c]
        q_bias = getattr(self.attn, "q_bias", None)  # Swin v2: q and v biases, none for k
        return w[:c], w[c : 2 * c], q_bias, None


def _is_spatial_attention(attn: nn.Module) -> bool:
    qkv = getattr(attn, "qkv", None)
    # DAT's channel attention has a per-head temperature and attends over channels
    return isinstance(qkv, nn.Linear) and not hasattr(attn, "temperature") and hasattr(attn, "num_heads")


def locate_attention(model: Any) -> AttentionBlock:
    """Find the last spatial self-attention block of a transformer SR network.

    SwinIR, Swin2SR and HAT: ``layers[-1].residual_group.blocks[-1].attn`` (HAT's
    ``overlap_attn`` is cross-window attention, not used). DAT alternates spatial and
    channel blocks in ``layers[-1].blocks``: the last spatial one. Other models: the last
    module with ``norm1`` and an ``attn`` having a ``qkv`` linear layer and ``num_heads``.
    """
    module = unwrap_module(model)
    candidates: list[tuple[str, nn.Module]] = []
    layers = getattr(module, "layers", None)
    if isinstance(layers, nn.ModuleList) and len(layers) > 0:
        last = layers[-1]
        group = getattr(last, "residual_group", last)
        blocks = getattr(group, "blocks", None)
        if isinstance(blocks, nn.ModuleList):
            prefix = f"layers.{len(layers) - 1}" + (".residual_group" if group is not last else "")
            candidates = [(f"{prefix}.blocks.{i}", b) for i, b in enumerate(blocks)]
    if not candidates:
        candidates = list(module.named_modules())
    for path, block in reversed(candidates):
        attn = getattr(block, "attn", None)
        norm1 = getattr(block, "norm1", None)
        if isinstance(attn, nn.Module) and _is_spatial_attention(attn) and isinstance(norm1, nn.Module):
            cosine = hasattr(attn, "logit_scale")
            heads: Any = attn.num_heads
            return AttentionBlock(
                block=block,
                attn=attn,
                norm=None if cosine else norm1,
                num_heads=int(heads),
                cosine=cosine,
                path=f"{path}.attn",
            )
    raise ModelError(
        f"{type(module).__name__} has no spatial self-attention block (SwinIR, Swin2SR, HAT and "
        "DAT have one): pass a transformer checkpoint as the attention model, or use "
        "feature_attention_map (attention='features') for convolutional models"
    )


def find_attention_block(model: Any) -> nn.Module:
    """The attention module (``...attn``) whose projections define the map."""
    return locate_attention(model).attn


# --------------------------------------------------------------------------- the maths (eqs. 12-14)
def pooled_tokens(feat: torch.Tensor, pool: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Eq. 12's tokens ``G``: a 1xCxhxw map average-pooled by ``pool`` (partial windows at
    the border averaged over what they cover); returns ``(N, C)`` and the pooled grid size."""
    if pool > 1:
        feat = F.avg_pool2d(feat, pool, stride=pool, ceil_mode=True)
    _, c, gh, gw = feat.shape
    return feat[0].reshape(c, gh * gw).T.contiguous(), (gh, gw)


def query_key(spec: AttentionBlock, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 12's ``Q = G P_Q``, ``K = G P_K`` with the block's own ``qkv`` rows, per head.

    ``g``: tokens ``(N, C)``; returns ``q``, ``k`` as ``(heads, N, C / heads)``, float32.
    Swin v2's cosine attention compares directions, so its ``q``, ``k`` are L2-normalised.
    """
    wq, wk, bq, bk = spec.qk_projection()
    q = F.linear(g, wq.float(), None if bq is None else bq.float())
    k = F.linear(g, wk.float(), None if bk is None else bk.float())
    heads = spec.num_heads
    d = g.shape[-1] // heads
    q = q.reshape(-1, heads, d).transpose(0, 1)
    k = k.reshape(-1, heads, d).transpose(0, 1)
    if spec.cosine:
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    return q, k


def _softmax_scale(spec: AttentionBlock, scale: ScaleMode | float, channels: int) -> torch.Tensor | float:
    """Eq. 13's temperature: see ``scale`` in :func:`transformer_attention_map`."""
    if spec.cosine:
        logit_scale: Any = spec.attn.logit_scale
        ls = logit_scale.float().reshape(-1)
        return torch.clamp(ls, max=math.log(1.0 / 0.01)).exp()
    if isinstance(scale, (int, float)):
        return float(scale)
    if scale == "head_dim":
        return (channels // spec.num_heads) ** -0.5
    if scale == "channels":
        return channels**-0.5
    raise InputError(f"scale must be 'head_dim', 'channels' or a number, got {scale!r}")


def column_attention_map(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: torch.Tensor | float,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Eqs. 13-14 averaged over heads: ``mean_h sum_i softmax_j(scale_h q_hi . k_hj)``.

    ``q``, ``k``: ``(heads, N, d)``; ``scale``: a float or one value per head. Rows are
    processed ``chunk_size`` at a time so memory stays ``O(heads * chunk * N)``, not
    ``O(N^2)``. Returns ``(N,)``; its mean is 1 (each row of ``A`` sums to 1).
    """
    if q.ndim != 3 or q.shape != k.shape:
        raise InputError(f"q and k must both be (heads, N, d), got {tuple(q.shape)} and {tuple(k.shape)}")
    heads, n, _ = q.shape
    s = torch.as_tensor(scale, dtype=q.dtype, device=q.device).reshape(-1, 1, 1)
    if s.shape[0] not in (1, heads):
        raise InputError(f"scale must be a float or have one value per head ({heads}), got {s.shape[0]}")
    kt = k.transpose(1, 2)
    total = torch.zeros(heads, n, dtype=torch.float64, device=q.device)
    for start in range(0, n, chunk_size):
        logits = (q[:, start : start + chunk_size] @ kt) * s
        total += torch.softmax(logits, dim=-1).sum(1, dtype=torch.float64)
    return total.mean(0).to(q.dtype)


def _map_to_image(
    grid_map: torch.Tensor, pool: int, feat_hw: tuple[int, int], image_hw: tuple[int, int]
) -> torch.Tensor:
    """Pooled-grid map -> feature grid (bilinear, cropped) -> image size (bilinear)."""
    gh, gw = grid_map.shape
    m = grid_map[None, None]
    if pool > 1:
        m = F.interpolate(m, size=(gh * pool, gw * pool), mode="bilinear", align_corners=False)
    m = m[..., : feat_hw[0], : feat_hw[1]]
    if tuple(m.shape[-2:]) != tuple(image_hw):
        m = F.interpolate(m, size=image_hw, mode="bilinear", align_corners=False)
    return m[0, 0]


def _check_inputs(image: torch.Tensor, pool: int) -> tuple[int, int]:
    """Raise on anything but one finite 1xCxHxW image and a positive pool; returns ``(H, W)``."""
    if image.ndim != 4 or image.shape[0] != 1:
        raise InputError(f"the attention map takes one image as a 1xCxHxW tensor, got shape {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise InputError("the image contains NaN or infinite values")
    if pool < 1:
        raise InputError(f"pool must be a positive integer, got {pool}")
    return int(image.shape[-2]), int(image.shape[-1])


def _block_input(model: Any, image: torch.Tensor, spec: AttentionBlock) -> torch.Tensor:
    """Eq. 12's ``X``: the tokens entering ``spec.block``, normalised by its ``norm1``
    (none for Swin v2's post-norm), as a float32 1xCxhxw map cropped to the image."""
    args, kwargs = capture_input(model, image, spec.block, what=f"attention block {spec.path}")
    image_hw = (int(image.shape[-2]), int(image.shape[-1]))
    dtype = next(unwrap_module(model).parameters()).dtype
    with torch.no_grad():
        tokens = (args[0] if args else kwargs["x"]).float()
        size = args[1] if len(args) > 1 else kwargs["x_size"]
        h, w = int(size[0]), int(size[1])
        if spec.norm is not None:
            tokens = spec.norm.float()(tokens) if dtype != torch.float32 else spec.norm(tokens)
        c = tokens.shape[-1]
        feat = tokens[0].T.reshape(1, c, h, w)
        return crop_valid(feat, padded_size(model, image_hw), image_hw)


def transformer_attention_map(
    model: Any,
    image: torch.Tensor,
    pool: int = 4,
    *,
    scale: ScaleMode | float = "head_dim",
    chunk_size: int = 1024,
) -> torch.Tensor:
    """The paper's attention map (eqs. 12-14) of ``image`` (1x3xHxW in [0, 1]): ``HxW``.

    ``model``: an ``SRModel`` (its size requirements are honoured by reflect padding), a
    spandrel descriptor or an ``nn.Module`` of SwinIR, Swin2SR, HAT or DAT. The features
    entering the last attention block are captured with a forward pre-hook (the rest of
    the network is not run), normalised by its ``norm1``, pooled by ``pool`` and projected
    with its ``qkv`` rows.

    ``scale``: softmax temperature. ``"head_dim"`` (default, METHODS) uses ``1/sqrt(d)``
    with ``d = C/heads``, as the block itself does; ``"channels"`` uses ``1/sqrt(C)`` as
    eq. 13 is printed; a float is used as is. Swin2SR's cosine attention ignores it and
    uses the block's own learnt ``logit_scale`` per head on normalised ``q``, ``k`` (its
    dot products are not meaningful otherwise); it has no pre-norm, so ``X`` is used as is.
    Window partitioning and relative position biases do not apply to global attention.
    """
    image_hw = _check_inputs(image, pool)
    spec = locate_attention(model)
    feat = _block_input(model, image, spec)
    with torch.no_grad():
        g, grid = pooled_tokens(feat, pool)
        q, k = query_key(spec, g)
        factor = _softmax_scale(spec, scale, int(feat.shape[1]))
        cols = column_attention_map(q, k, factor, chunk_size)
        amap = _map_to_image(cols.reshape(grid), pool, (int(feat.shape[-2]), int(feat.shape[-1])), image_hw)
    log.debug(
        "attention map from %s: %d tokens, %d heads, mean %.3f", spec.path, cols.numel(), spec.num_heads, float(amap.mean())
    )
    return amap.to(image.device)


# --------------------------------------------------------------------------- our extension
def feature_attention_map(
    model: Any,
    image: torch.Tensor,
    pool: int = 4,
    *,
    layer: str | nn.Module | None = None,
    temperature: float = 0.1,
    center: bool = True,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Our extension (not in the paper): a self-similarity map from any model's features.

    Same column-sum map as eq. 14, with parameter-free attention: tokens ``G`` are the
    pooled deep features of ``model`` (see :func:`ttasr.models.features.capture_trunk_features`),
    centred by their mean over the image when ``center`` (ReLU features are all positive,
    which would make every pair look alike) and L2-normalised; ``Q = K = G`` and
    ``A = softmax(Q K^T / temperature)``, one head. ``temperature`` (our default 0.1)
    sets how sharply a token attends to its most similar ones; cosine similarities lie in
    ``[-1, 1]``, so ``1/sqrt(C)`` would give a nearly uniform map. Returns ``HxW``.
    """
    image_hw = _check_inputs(image, pool)
    if not temperature > 0:
        raise InputError(f"temperature must be positive, got {temperature}")
    feat, name = capture_trunk_features(model, image, layer)
    with torch.no_grad():
        feat = crop_valid(feat.float(), padded_size(model, image_hw), image_hw)
        g, grid = pooled_tokens(feat, pool)
        if center:
            g = g - g.mean(0, keepdim=True)
        g = F.normalize(g, dim=-1)[None]
        cols = column_attention_map(g, g, 1.0 / temperature, chunk_size)
        amap = _map_to_image(cols.reshape(grid), pool, (int(feat.shape[-2]), int(feat.shape[-1])), image_hw)
    log.debug("feature attention map from %s: %d tokens", name, cols.numel())
    return amap.to(image.device)


# --------------------------------------------------------------------------- weights
def attention_weights(
    attention_map: torch.Tensor,
    *,
    alpha: float = 0.9,
    floor: float = 0.1,
    lo: float = 0.1,
    hi: float = 3.0,
) -> torch.Tensor:
    """Loss weights ``w = clip(alpha * map + floor, lo, hi)`` (Sec. IV-A-1: 0.9, 0.1, [0.1, 3])."""
    return (alpha * attention_map + floor).clamp(lo, hi)
