"""Capturing what a network computes inside (ttasr.models.features): unwrapping, padding
to size requirements, the trunk-feature rule per architecture, block inputs, and that a
capture leaves the network as it found it (train/eval flags, hooks, gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ttasr.errors import InputError, ModelError
from ttasr.models import load_model
from ttasr.models.features import (
    capture_input,
    capture_trunk_features,
    crop_valid,
    pad_for_model,
    pad_to_requirements,
    padded_size,
    unwrap_module,
    valid_feature_size,
)


def _no_hooks(module: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())


# --------------------------------------------------------------------------- unwrapping
def test_unwrap_module(tiny_compact):
    model = load_model(tiny_compact)
    assert unwrap_module(model) is model.module
    assert unwrap_module(tiny_compact) is tiny_compact.model
    assert unwrap_module(tiny_compact.model) is tiny_compact.model
    with pytest.raises(ModelError, match="expected an SRModel"):
        unwrap_module("model.pth")


# --------------------------------------------------------------------------- padding
def test_pad_for_model_reflects_or_replicates():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    assert pad_for_model(x, 0, 0) is x
    assert torch.equal(pad_for_model(x, 2, 1), F.pad(x, (0, 1, 0, 2), mode="reflect"))
    # reflection needs padding smaller than the side: replicate otherwise
    assert torch.equal(pad_for_model(x, 3, 1), F.pad(x, (0, 1, 0, 3), mode="replicate"))


def test_pad_to_requirements(tiny_swinir):
    model = load_model(tiny_swinir)  # SwinIR: at least 16 x 16
    assert model.size_requirements.minimum == 16
    x = torch.rand(1, 3, 10, 12)
    padded = pad_to_requirements(model, x)
    assert padded.shape[-2:] == (16, 16) == padded_size(model, (10, 12))
    assert torch.equal(padded, F.pad(x, (0, 4, 0, 6), mode="reflect"))
    tiny = torch.rand(1, 3, 5, 5)
    assert torch.equal(pad_to_requirements(model, tiny), F.pad(tiny, (0, 11, 0, 11), mode="replicate"))
    big = torch.rand(1, 3, 20, 17)
    assert pad_to_requirements(model, big) is big
    # a spandrel descriptor's own size requirements have no padding(): left as is
    assert pad_to_requirements(tiny_swinir, x) is x and padded_size(tiny_swinir, (10, 12)) == (10, 12)


def test_valid_feature_size_and_crop():
    # stride 1, 2 and 4 feature maps of a 30 x 27 image padded to 32 x 28
    assert valid_feature_size((32, 28), (32, 28), (30, 27)) == (30, 27)
    assert valid_feature_size((16, 14), (32, 28), (30, 27)) == (15, 14)
    assert valid_feature_size((8, 7), (32, 28), (30, 25)) == (8, 7)
    assert valid_feature_size((8, 7), (32, 28), (28, 20)) == (7, 5)
    feat = torch.rand(1, 5, 16, 14)
    assert torch.equal(crop_valid(feat, (32, 28), (29, 21)), feat[..., :15, :11])


# --------------------------------------------------------------------------- trunk features
@pytest.mark.parametrize("fixture, layer, hw", [
    # Compact(num_conv=2).body ends conv, prelu, conv(3*s*s) -> PixelShuffle: the last PReLU
    ("tiny_compact", "body.5", (20, 18)),
    ("tiny_span", "conv_cat", (20, 18)),
    # SwinIR pads to a multiple of its window (4) inside forward
    ("tiny_swinir", "conv_after_body", (20, 20)),
])
def test_trunk_layer_per_architecture(fixture, layer, hw, request):
    descriptor = request.getfixturevalue(fixture)
    image = torch.rand(1, 3, 20, 18)
    for model in (descriptor, load_model(descriptor)):
        feat, name = capture_trunk_features(model, image)
        assert name == layer
        assert feat.ndim == 4 and feat.shape[1] > 4
        named, got = capture_trunk_features(model, image, layer=layer)
        assert got == layer and torch.equal(named, feat)
        module = unwrap_module(model)
        assert torch.equal(capture_trunk_features(model, image, layer=dict(module.named_modules())[layer])[0], feat)
    assert feat.shape[-2:] == hw
    assert crop_valid(feat, hw, (20, 18)).shape[-2:] == (20, 18)


def test_trunk_features_of_a_padded_image_crop_back(tiny_swinir):
    model = load_model(tiny_swinir)
    image = torch.rand(1, 3, 13, 11)  # below SwinIR's minimum of 16
    feat, _ = capture_trunk_features(model, image)
    assert feat.shape[-2:] == (16, 16)
    assert crop_valid(feat, padded_size(model, (13, 11)), (13, 11)).shape[-2:] == (13, 11)


def test_layer_errors_leave_no_hooks(tiny_swinir):
    model = load_model(tiny_swinir)
    image = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="no layer named 'nope'"):
        capture_trunk_features(model, image, layer="nope")
    with pytest.raises(ModelError, match="does not output a BCHW"):
        capture_trunk_features(model, image, layer="patch_embed")  # tokens (B, HW, C)
    assert _no_hooks(model.module)


def test_train_eval_flags_are_restored(tiny_span):
    model = load_model(tiny_span)
    module = model.module
    module.train()
    module.conv_1.eval()  # a mixed state, as in adaptation mode
    before = [m.training for m in module.modules()]
    seen: list[bool] = []
    spy = module.conv_cat.register_forward_pre_hook(lambda *_: seen.extend(m.training for m in module.modules()))
    capture_trunk_features(model, torch.rand(1, 3, 12, 12))
    spy.remove()
    assert seen and not any(seen)  # the network ran in eval mode
    assert [m.training for m in module.modules()] == before
    assert _no_hooks(module)
    # also when the forward pass fails half-way
    def fail(*_: object) -> None:
        raise RuntimeError("boom")

    spy = module.conv_cat.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        capture_trunk_features(model, torch.rand(1, 3, 12, 12))
    spy.remove()
    assert [m.training for m in module.modules()] == before
    assert _no_hooks(module)


def test_gradients_are_the_callers_choice(tiny_compact):
    module = load_model(tiny_compact).trainable_copy()
    image = torch.rand(1, 3, 12, 12)
    assert not capture_trunk_features(module, image)[0].requires_grad  # default: no_grad
    feat, _ = capture_trunk_features(module, image, grad=True)
    assert feat.requires_grad
    feat.square().mean().backward()
    first: nn.Conv2d = module.body[0]
    assert first.weight.grad is not None and float(first.weight.grad.abs().sum()) > 0
    with torch.no_grad():
        assert not capture_trunk_features(module, image, grad=True)[0].requires_grad


# --------------------------------------------------------------------------- block inputs
def test_capture_input_of_a_transformer_block(tiny_swinir):
    model = load_model(tiny_swinir)
    module = model.module
    block = module.layers[0].residual_group.blocks[1]
    image = torch.rand(1, 3, 13, 11)
    args, kwargs = capture_input(model, image, "layers.0.residual_group.blocks.1")
    tokens = args[0] if args else kwargs["x"]
    size = args[1] if len(args) > 1 else kwargs["x_size"]
    assert tuple(size) == (16, 16)  # padded to the minimum
    assert tokens.shape == (1, 16 * 16, 12) and not tokens.requires_grad

    ran_after: list[str] = []
    module.upsample.register_forward_hook(lambda *_: ran_after.append("upsample"))
    ref: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, a: tuple[torch.Tensor, ...], kw: dict[str, torch.Tensor]) -> None:
        ref.setdefault("x", a[0] if a else kw["x"])

    again, again_kw = capture_input(model, image, block)  # by module, not by name
    assert not ran_after  # the network stopped at the block
    block.register_forward_pre_hook(keep, with_kwargs=True)
    with torch.no_grad():  # the reference: a full forward pass
        module(pad_to_requirements(model, image))
    assert ran_after and torch.equal(ref["x"], tokens)
    assert torch.equal(again[0] if again else again_kw["x"], tokens)


def test_capture_input_of_a_module_never_run(tiny_swinir):
    with pytest.raises(ModelError, match="the extra head was not run by SwinIR.forward"):
        capture_input(tiny_swinir, torch.rand(1, 3, 16, 16), nn.Linear(2, 2), what="extra head")
