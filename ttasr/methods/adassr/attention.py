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
  (spandrel layouts; :func:`find_attention_block` says which block). The attention model
  may be another checkpoint than the adapted one (the paper adapts Real-ESRGAN).
* :func:`feature_attention_map`: **our extension, not in the paper**, for convolutional
  models without self-attention: the adapted model's own deep features with
  parameter-free attention (``Q = K`` = centred, L2-normalised pooled features).

Maps are computed once per image; :class:`AttentionCache` keeps them in memory and
optionally on disk. :func:`save_heatmap` writes a PNG to look at.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError, ModelError

__all__ = [
    "AttentionBlock",
    "AttentionCache",
    "attention_weights",
    "column_attention_map",
    "feature_attention_map",
    "find_attention_block",
    "heatmap_rgb",
    "locate_attention",
    "save_heatmap",
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


def _unwrap(model: Any) -> nn.Module:
    module = getattr(model, "module", None)  # SRModel
    if isinstance(module, nn.Module):
        return module
    inner = getattr(model, "model", None)  # spandrel descriptor
    if not isinstance(model, nn.Module) and isinstance(inner, nn.Module):
        return inner
    if isinstance(model, nn.Module):
        return model
    raise ModelError(f"expected an SRModel, spandrel descriptor or nn.Module, got {type(model).__name__}")


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
    module = _unwrap(model)
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


# --------------------------------------------------------------------------- the maths
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


def _pool_tokens(feat: torch.Tensor, pool: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Average-pool a 1xCxhxw map by ``pool`` (partial windows at the border averaged over
    what they cover); returns tokens ``(N, C)`` and the pooled grid size."""
    if pool > 1:
        feat = F.avg_pool2d(feat, pool, stride=pool, ceil_mode=True)
    _, c, gh, gw = feat.shape
    return feat[0].reshape(c, gh * gw).T.contiguous(), (gh, gw)


def _check_image(image: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape[0] != 1:
        raise InputError(f"the attention map takes one image as a 1xCxHxW tensor, got shape {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise InputError("the image contains NaN or infinite values")


def _pad_for(model: Any, image: torch.Tensor) -> torch.Tensor:
    req = getattr(model, "size_requirements", None)
    if req is None or not hasattr(req, "padding"):
        return image
    pb, pr = req.padding(*image.shape[-2:])
    if pb or pr:
        mode = "reflect" if pb < image.shape[-2] and pr < image.shape[-1] else "replicate"
        image = F.pad(image, (0, pr, 0, pb), mode=mode)
    return image


class _Captured(Exception):
    """Raised inside a hook to stop the forward pass once the features are in hand."""


def _run_until_captured(module: nn.Module, x: torch.Tensor, handles: list[Any]) -> None:
    """Run ``module`` in eval mode without gradients until a hook raises :class:`_Captured`,
    then remove the hooks and restore every submodule's own train/eval flag."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            module(x)
    except _Captured:
        pass
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training


def _valid_feature_size(feat_hw: tuple[int, int], padded_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[int, int]:
    """Rows/cols of a feature map that cover the unpadded image (padding is bottom/right)."""
    stride = max(1, round(padded_hw[0] / feat_hw[0]))
    return min(feat_hw[0], math.ceil(image_hw[0] / stride)), min(feat_hw[1], math.ceil(image_hw[1] / stride))


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
    _check_image(image)
    if pool < 1:
        raise InputError(f"pool must be a positive integer, got {pool}")
    spec = locate_attention(model)
    module = _unwrap(model)
    p = next(module.parameters())
    x = _pad_for(model, image).to(p.device, p.dtype)

    captured: dict[str, Any] = {}

    def hook(_mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        tokens = args[0] if args else kwargs["x"]
        size = args[1] if len(args) > 1 else kwargs["x_size"]
        captured["tokens"], captured["size"] = tokens, (int(size[0]), int(size[1]))
        raise _Captured

    _run_until_captured(module, x, [spec.block.register_forward_pre_hook(hook, with_kwargs=True)])
    if "tokens" not in captured:
        raise ModelError(f"the attention block {spec.path} was not run by {type(module).__name__}.forward")

    with torch.no_grad():
        tokens = captured["tokens"].float()
        h, w = captured["size"]
        if spec.norm is not None:
            tokens = spec.norm.float()(tokens) if p.dtype != torch.float32 else spec.norm(tokens)
        c = tokens.shape[-1]
        feat = tokens[0].T.reshape(1, c, h, w)
        image_hw = (int(image.shape[-2]), int(image.shape[-1]))
        hv, wv = _valid_feature_size((h, w), (int(x.shape[-2]), int(x.shape[-1])), image_hw)
        feat = feat[..., :hv, :wv]
        g, grid = _pool_tokens(feat, pool)
        wq, wk, bq, bk = spec.qk_projection()
        q = F.linear(g, wq.float(), None if bq is None else bq.float())
        k = F.linear(g, wk.float(), None if bk is None else bk.float())
        heads = spec.num_heads
        d = c // heads
        q = q.reshape(-1, heads, d).transpose(0, 1)
        k = k.reshape(-1, heads, d).transpose(0, 1)
        if spec.cosine:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
            logit_scale: Any = spec.attn.logit_scale
            ls = logit_scale.float().reshape(-1)
            factor: torch.Tensor | float = torch.clamp(ls, max=math.log(1.0 / 0.01)).exp()
        elif isinstance(scale, (int, float)):
            factor = float(scale)
        elif scale == "head_dim":
            factor = d**-0.5
        elif scale == "channels":
            factor = c**-0.5
        else:
            raise InputError(f"scale must be 'head_dim', 'channels' or a number, got {scale!r}")
        cols = column_attention_map(q, k, factor, chunk_size)
        amap = _map_to_image(cols.reshape(grid), pool, (hv, wv), image_hw)
    log.debug("attention map from %s: %d tokens, %d heads, mean %.3f", spec.path, cols.numel(), heads, float(amap.mean()))
    return amap.to(image.device)


# --------------------------------------------------------------------------- our extension
def _feature_layer_by_name(module: nn.Module, layer: str | nn.Module) -> nn.Module:
    if isinstance(layer, nn.Module):
        return layer
    modules = dict(module.named_modules())
    if layer not in modules:
        near = [n for n in modules if layer.split(".")[-1] in n][:5]
        raise InputError(f"no layer named {layer!r} in {type(module).__name__}; similar names: {near}")
    return modules[layer]


def capture_trunk_features(model: Any, image: torch.Tensor, layer: str | nn.Module | None = None) -> tuple[torch.Tensor, str]:
    """Deep features of ``model`` on ``image``: ``(1xCxhxw, layer name)``.

    With ``layer=None`` the rule is: the output of the last module, in execution order,
    whose output is a feature map (more than 4 channels) at the trunk's resolution (that
    of the first module's output), before the first module that enlarges the map (the
    upsampler); a convolution feeding a ``PixelShuffle`` is part of the upsampler and
    skipped. For spandrel ESRGAN this is the trunk's shortcut block (``model.1``), for
    SPAN ``conv_cat``, for Compact the last PReLU of ``body``.
    """
    module = _unwrap(model)
    p = next(module.parameters())
    x = _pad_for(model, image).to(p.device, p.dtype)
    names = {m: n for n, m in module.named_modules()}
    state: dict[str, Any] = {"trunk": None, "last": None, "prev": None, "last_mod": None}
    handles = []

    if layer is not None:
        target = _feature_layer_by_name(module, layer)

        def take(mod: nn.Module, _inp: Any, out: Any) -> None:
            if isinstance(out, (tuple, list)):
                out = next((o for o in out if isinstance(o, torch.Tensor)), None)
            if not isinstance(out, torch.Tensor) or out.ndim != 4:
                raise ModelError(f"layer {names.get(mod, mod)!r} does not output a BCHW feature map")
            state["last"] = (names.get(mod, "layer"), out)
            raise _Captured

        handles.append(target.register_forward_hook(take))
    else:

        def watch(mod: nn.Module, _inp: Any, out: Any) -> None:
            if mod is module:
                return
            if isinstance(out, (tuple, list)):
                out = next((o for o in out if isinstance(o, torch.Tensor) and o.ndim == 4), None)
            if not isinstance(out, torch.Tensor) or out.ndim != 4:
                return
            hw = tuple(out.shape[-2:])
            if state["trunk"] is None:
                state["trunk"] = hw
            trunk = state["trunk"]
            if hw[0] > trunk[0] or hw[1] > trunk[1]:
                before = state["last_mod"]
                feeds_shuffle = isinstance(mod, nn.PixelShuffle) and before is not None and not list(before.children())
                if feeds_shuffle and state["last"] is not None and state["last"][2] is before:
                    state["last"] = state["prev"]
                raise _Captured
            state["last_mod"] = mod
            if hw == trunk and out.shape[1] > 4:
                state["prev"], state["last"] = state["last"], (names.get(mod, "?"), out, mod)

        for m in module.modules():
            handles.append(m.register_forward_hook(watch))
    _run_until_captured(module, x, handles)
    if state["last"] is None:
        raise ModelError(
            f"found no feature map in {type(module).__name__}: pass layer= naming a module "
            "whose output is a BCHW feature map at the input resolution"
        )
    name, feat = state["last"][0], state["last"][1]
    return feat, name


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
    pooled deep features of ``model`` (see :func:`capture_trunk_features`), centred by
    their mean over the image when ``center`` (ReLU features are all positive, which
    would make every pair look alike) and L2-normalised; ``Q = K = G`` and
    ``A = softmax(Q K^T / temperature)``, one head. ``temperature`` (our default 0.1)
    sets how sharply a token attends to its most similar ones; cosine similarities lie in
    ``[-1, 1]``, so ``1/sqrt(C)`` would give a nearly uniform map. Returns ``HxW``.
    """
    _check_image(image)
    if pool < 1:
        raise InputError(f"pool must be a positive integer, got {pool}")
    if not temperature > 0:
        raise InputError(f"temperature must be positive, got {temperature}")
    padded = _pad_for(model, image)
    padded_hw = (int(padded.shape[-2]), int(padded.shape[-1]))
    image_hw = (int(image.shape[-2]), int(image.shape[-1]))
    feat, name = capture_trunk_features(model, image, layer)
    with torch.no_grad():
        feat = feat.float()
        h, w = feat.shape[-2:]
        hv, wv = _valid_feature_size((h, w), padded_hw, image_hw)
        feat = feat[..., :hv, :wv]
        g, grid = _pool_tokens(feat, pool)
        if center:
            g = g - g.mean(0, keepdim=True)
        g = F.normalize(g, dim=-1)[None]
        cols = column_attention_map(g, g, 1.0 / temperature, chunk_size)
        amap = _map_to_image(cols.reshape(grid), pool, (hv, wv), image_hw)
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


# --------------------------------------------------------------------------- viewing
# anchor colours of a dark-blue -> purple -> orange -> yellow ramp (our own choice)
_RAMP = np.array(
    [[0.02, 0.02, 0.12], [0.25, 0.05, 0.45], [0.62, 0.12, 0.45], [0.93, 0.38, 0.20], [0.99, 0.85, 0.25], [1.0, 1.0, 0.75]]
)


def heatmap_rgb(attention_map: torch.Tensor, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """An ``HxWx3`` uint8 colour image of a map (min-max scaled unless ``vmin``/``vmax``)."""
    m = attention_map.detach().to("cpu", torch.float64).squeeze().numpy()
    if m.ndim != 2:
        raise InputError(f"a heat map needs a 2-D map, got shape {tuple(attention_map.shape)}")
    lo = float(m.min()) if vmin is None else vmin
    hi = float(m.max()) if vmax is None else vmax
    t = np.clip((m - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(m)
    pos = t * (len(_RAMP) - 1)
    i = np.minimum(pos.astype(int), len(_RAMP) - 2)
    f = (pos - i)[..., None]
    rgb = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    return (rgb * 255 + 0.5).astype(np.uint8)


def save_heatmap(
    attention_map: torch.Tensor,
    path: str | Path,
    image: torch.Tensor | None = None,
    *,
    alpha: float = 0.55,
) -> Path:
    """Write a heat-map PNG of ``attention_map`` (HxW), blended over ``image`` if given."""
    from PIL import Image

    rgb = heatmap_rgb(attention_map).astype(np.float64)
    if image is not None:
        img = image.detach().to("cpu", torch.float64).squeeze(0)
        if img.ndim != 3 or tuple(img.shape[-2:]) != rgb.shape[:2]:
            raise InputError(
                f"image {tuple(image.shape)} does not match the map {rgb.shape[:2]}: pass the image the map was computed on"
            )
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        base = img[:3].clamp(0, 1).permute(1, 2, 0).numpy() * 255
        rgb = alpha * rgb + (1 - alpha) * base
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------- caching
def _tensor_digest(t: torch.Tensor) -> str:
    a = t.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(str(tuple(a.shape)).encode())
    h.update(a.numpy().tobytes())
    return h.hexdigest()


def _weights_digest(model: Any) -> str:
    fn = getattr(model, "weights_hash", None)
    if callable(fn):
        return str(fn())
    module = _unwrap(model)
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class AttentionCache:
    """Attention maps keyed by (image data, model weights, method and its parameters).

    An LRU of ``max_items`` maps in memory; with ``directory`` (a path, or ``True`` for
    ``cache_dir("attention")``) maps are also stored there as ``.pt`` files, written
    atomically, so a second run on the same image and model skips the computation.
    """

    def __init__(self, max_items: int = 32, directory: str | Path | bool | None = None) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        if directory is True:
            from ...models.download import cache_dir

            self.directory: Path | None = cache_dir("attention")
        elif directory:
            self.directory = Path(directory)
            self.directory.mkdir(parents=True, exist_ok=True)
        else:
            self.directory = None
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(image: torch.Tensor, model: Any, method: str, **params: Any) -> str:
        h = hashlib.sha256()
        h.update(_tensor_digest(image).encode())
        h.update(_weights_digest(model).encode())
        h.update(method.encode())
        h.update(repr(sorted((k, repr(v)) for k, v in params.items())).encode())
        return h.hexdigest()[:32]

    def get_or_compute(
        self,
        image: torch.Tensor,
        model: Any,
        compute: Callable[[], torch.Tensor],
        *,
        method: str,
        **params: Any,
    ) -> torch.Tensor:
        """The cached map for this key, or ``compute()`` stored under it."""
        key = self.key(image, model, method, **params)
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key].clone()
        if self.directory is not None:
            file = self.directory / f"{key}.pt"
            if file.is_file():
                try:
                    value = torch.load(file, map_location="cpu", weights_only=True)
                    self.hits += 1
                    self._store(key, value)
                    return value.clone().to(image.device)
                except (OSError, RuntimeError, EOFError, ValueError) as exc:  # corrupt: recompute
                    log.warning("ignoring unreadable attention cache file %s: %s", file, exc)
        self.misses += 1
        value = compute().detach()
        # Some networks rewrite weights on their first forward (spandrel's SPAN rebuilds its
        # fused eval_conv), so the key after computing may differ: store under both.
        keys = {key, self.key(image, model, method, **params)}
        for k in keys:
            self._store(k, value.cpu())
            if self.directory is not None:
                from ...models.download import atomic_write_path

                file = self.directory / f"{k}.pt"
                tmp = atomic_write_path(file)
                torch.save(value.cpu(), tmp)
                os.replace(tmp, file)
        return value.clone()

    def _store(self, key: str, value: torch.Tensor) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
