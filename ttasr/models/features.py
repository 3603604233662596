"""Capturing what an SR network computes inside: trunk features and a block's input.

Methods weight or regularise their loss with something the network itself computes:
AdaSSR's attention maps need the input of the last self-attention block (eq. 12) or, in
our extension, the trunk's deep features; HR-aware adaptation needs the trunk's features
too. This module is the one place that reaches inside a network:

* :func:`unwrap_module`: the ``nn.Module`` in an ``SRModel``, a spandrel descriptor or a
  module.
* :func:`pad_to_requirements` / :func:`pad_for_model` / :func:`padded_size`: bottom/right
  padding to a model's size requirements (reflect, or replicate for tiny inputs), and
  :func:`valid_feature_size` / :func:`crop_valid` to drop the padded border again from a
  feature map of any stride.
* :func:`run_until_captured`: run a network under forward hooks until one raises
  :class:`StopForward` (the rest of the network is not run), then remove the hooks and
  restore every submodule's own train/eval flag.
* :func:`capture_input` (the positional and keyword arguments a submodule is called with)
  and :func:`capture_trunk_features` (the deepest feature map before the upsampler).

Gradients: by default the network runs under ``torch.no_grad`` (maps are computed once
per image and never trained through). ``grad=True`` leaves the gradient mode to the
caller, so features can take part in a loss; the network still runs in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..errors import InputError, ModelError

__all__ = [
    "StopForward",
    "capture_input",
    "capture_trunk_features",
    "crop_valid",
    "find_layer",
    "pad_for_model",
    "pad_to_requirements",
    "padded_size",
    "run_until_captured",
    "unwrap_module",
    "valid_feature_size",
]


# --------------------------------------------------------------------------- the network
def unwrap_module(model: Any) -> nn.Module:
    """The network of an ``SRModel`` (``.module``), a spandrel descriptor (``.model``) or a module."""
    module = getattr(model, "module", None)  # SRModel
    if isinstance(module, nn.Module):
        return module
    inner = getattr(model, "model", None)  # spandrel descriptor
    if not isinstance(model, nn.Module) and isinstance(inner, nn.Module):
        return inner
    if isinstance(model, nn.Module):
        return model
    raise ModelError(f"expected an SRModel, spandrel descriptor or nn.Module, got {type(model).__name__}")


def find_layer(module: nn.Module, layer: str | nn.Module) -> nn.Module:
    """``layer`` itself if a module, else the submodule of ``module`` with that dotted name."""
    if isinstance(layer, nn.Module):
        return layer
    modules = dict(module.named_modules())
    if layer not in modules:
        near = [n for n in modules if layer.split(".")[-1] in n][:5]
        raise InputError(f"no layer named {layer!r} in {type(module).__name__}; similar names: {near}")
    return modules[layer]


# --------------------------------------------------------------------------- padding
def pad_for_model(x: torch.Tensor, pad_bottom: int, pad_right: int) -> torch.Tensor:
    """Pad a BCHW tensor at the bottom/right: reflect where possible, else replicate."""
    if pad_bottom == 0 and pad_right == 0:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if pad_bottom < h and pad_right < w else "replicate"
    return F.pad(x, (0, pad_right, 0, pad_bottom), mode=mode)


def _padding(model: Any, hw: tuple[int, int]) -> tuple[int, int]:
    """(bottom, right) padding from ``model.size_requirements.padding``; none without it
    (spandrel's own ``SizeRequirements`` has no ``padding``: descriptors are not padded)."""
    req = getattr(model, "size_requirements", None)
    if req is None or not hasattr(req, "padding"):
        return 0, 0
    pb, pr = req.padding(*hw)
    return int(pb), int(pr)


def padded_size(model: Any, hw: tuple[int, int]) -> tuple[int, int]:
    """The size :func:`pad_to_requirements` gives an ``hw`` input of ``model``."""
    pb, pr = _padding(model, hw)
    return hw[0] + pb, hw[1] + pr


def pad_to_requirements(model: Any, image: torch.Tensor) -> torch.Tensor:
    """``image`` (BCHW) padded at the bottom/right to ``model``'s size requirements."""
    pb, pr = _padding(model, (int(image.shape[-2]), int(image.shape[-1])))
    return pad_for_model(image, pb, pr)


def valid_feature_size(
    feat_hw: tuple[int, int], padded_hw: tuple[int, int], image_hw: tuple[int, int]
) -> tuple[int, int]:
    """Rows/cols of a feature map that cover the unpadded image (padding is bottom/right).

    The feature map's stride is inferred from ``padded_hw / feat_hw``.
    """
    stride = max(1, round(padded_hw[0] / feat_hw[0]))
    return min(feat_hw[0], math.ceil(image_hw[0] / stride)), min(feat_hw[1], math.ceil(image_hw[1] / stride))


def crop_valid(feat: torch.Tensor, padded_hw: tuple[int, int], image_hw: tuple[int, int]) -> torch.Tensor:
    """``feat`` (``...xhxw``) cropped to :func:`valid_feature_size`."""
    hv, wv = valid_feature_size((int(feat.shape[-2]), int(feat.shape[-1])), padded_hw, image_hw)
    return feat[..., :hv, :wv]


def _placed_input(model: Any, image: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """The network and ``image`` padded for it, on its parameters' device and dtype."""
    module = unwrap_module(model)
    p = next(module.parameters())
    return module, pad_to_requirements(model, image).to(p.device, p.dtype)


# --------------------------------------------------------------------------- running
class StopForward(Exception):
    """Raised inside a hook to stop the forward pass once the wanted tensor is in hand."""


def run_until_captured(
    module: nn.Module, x: torch.Tensor, handles: list[RemovableHandle], *, grad: bool = False
) -> None:
    """Run ``module(x)`` in eval mode until a hook raises :class:`StopForward`.

    Afterwards (also on error) the ``handles`` are removed and every submodule gets back
    its own train/eval flag (adaptation mixes the two). ``grad=False`` runs under
    ``torch.no_grad``; ``grad=True`` keeps the caller's gradient mode.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad):
            module(x)
    except StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training


def capture_input(
    model: Any,
    image: torch.Tensor,
    submodule: str | nn.Module,
    *,
    what: str = "submodule",
    grad: bool = False,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` that ``submodule`` of ``model`` is first called with on ``image``.

    ``image`` is padded to the model's size requirements and moved to its device and
    dtype; the network stops at ``submodule`` (a forward pre-hook). A transformer block,
    for instance, gets its tokens ``(B, h*w, C)`` and ``x_size = (h, w)``. ``what`` names
    the submodule in the error raised when the forward pass never reaches it.
    """
    module, x = _placed_input(model, image)
    target = find_layer(module, submodule)
    captured: dict[str, Any] = {}

    def hook(_mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        captured["args"], captured["kwargs"] = args, kwargs
        raise StopForward

    run_until_captured(module, x, [target.register_forward_pre_hook(hook, with_kwargs=True)], grad=grad)
    if "args" not in captured:
        raise ModelError(f"the {what} was not run by {type(module).__name__}.forward")
    return captured["args"], captured["kwargs"]


def _first_feature_map(out: Any) -> Any:
    """The first 4-D tensor of a tuple/list output, or the output itself."""
    if isinstance(out, (tuple, list)):
        return next((o for o in out if isinstance(o, torch.Tensor) and o.ndim == 4), None)
    return out


def _named_layer_hook(names: dict[nn.Module, str], state: dict[str, Any]) -> Callable[[nn.Module, Any, Any], None]:
    """A forward hook that stores the output of the layer it is put on and stops."""

    def take(mod: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, (tuple, list)):
            out = next((o for o in out if isinstance(o, torch.Tensor)), None)
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            raise ModelError(f"layer {names.get(mod, mod)!r} does not output a BCHW feature map")
        state["last"] = (names.get(mod, "layer"), out)
        raise StopForward

    return take


def _trunk_rule_hook(
    module: nn.Module, names: dict[nn.Module, str], state: dict[str, Any]
) -> Callable[[nn.Module, Any, Any], None]:
    """A forward hook for every submodule applying :func:`capture_trunk_features`' rule.

    ``state["last"]`` follows the latest trunk-resolution feature map; the first output
    larger than the trunk (the upsampler) stops the pass.
    """

    def watch(mod: nn.Module, _inp: Any, out: Any) -> None:
        if mod is module:
            return
        out = _first_feature_map(out)
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
            raise StopForward
        state["last_mod"] = mod
        if hw == trunk and out.shape[1] > 4:
            state["prev"], state["last"] = state["last"], (names.get(mod, "?"), out, mod)

    return watch


def capture_trunk_features(
    model: Any, image: torch.Tensor, layer: str | nn.Module | None = None, *, grad: bool = False
) -> tuple[torch.Tensor, str]:
    """Deep features of ``model`` on ``image``: ``(1xCxhxw, layer name)``.

    ``image`` is padded to the model's size requirements (crop the result with
    :func:`crop_valid`). With ``layer`` (a dotted name or a submodule) its output is
    taken. With ``layer=None`` the rule is: the output of the last module, in execution
    order, whose output is a feature map (more than 4 channels) at the trunk's resolution
    (that of the first module's output), before the first module that enlarges the map
    (the upsampler); a convolution feeding a ``PixelShuffle`` is part of the upsampler and
    skipped. For spandrel ESRGAN this is the trunk's shortcut block (``model.1``), for
    SPAN ``conv_cat``, for Compact the last PReLU of ``body``.
    """
    module, x = _placed_input(model, image)
    names = {m: n for n, m in module.named_modules()}
    state: dict[str, Any] = {"trunk": None, "last": None, "prev": None, "last_mod": None}
    if layer is not None:
        target = find_layer(module, layer)
        handles = [target.register_forward_hook(_named_layer_hook(names, state))]
    else:
        watch = _trunk_rule_hook(module, names, state)
        handles = [m.register_forward_hook(watch) for m in module.modules()]
    run_until_captured(module, x, handles, grad=grad)
    if state["last"] is None:
        raise ModelError(
            f"found no feature map in {type(module).__name__}: pass layer= naming a module "
            "whose output is a BCHW feature map at the input resolution"
        )
    name, feat = state["last"][0], state["last"][1]
    return feat, name
