"""Adapter base machinery and InternalLearning, on tiny models and a real photo crop."""

from __future__ import annotations

import copy

import pytest
import spandrel
import torch
from torch import nn

import ttasr
from ttasr import Callback, InternalLearning, create_adapter, list_adapters
from ttasr.adapters import ImageGroup
from ttasr.adapters.training import (
    add_proximal_gradient_,
    blend_weights,
    ema_update_,
    proximal_term,
    weighted_l1,
)
from ttasr.errors import InputError

FAST = dict(batch_size=2, patch_size=16, progress=False)


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_ema_update_is_exact():
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    expect = {k: 0.9 * a.state_dict()[k] + 0.1 * v for k, v in b.state_dict().items()}
    ema_update_(a, b, 0.9)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, expect[k], rtol=0, atol=1e-7)


def test_proximal_gradient_equals_autograd_of_the_term():
    torch.manual_seed(0)
    net = nn.Linear(5, 2)
    params = list(net.parameters())
    anchor = [p.detach() + torch.randn_like(p) for p in params]
    mu = 1e-2
    (mu * proximal_term(params, anchor)).backward()
    autograd = [p.grad.clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    add_proximal_gradient_(params, anchor, mu)
    for g, p in zip(autograd, params):
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-8)
    assert float(proximal_term(params, [p.detach() for p in params])) == 0.0


def test_weighted_l1():
    pred, target = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    w = torch.tensor([[[[0.1, 0.1], [3.0, 0.0]]]])
    assert float(weighted_l1(pred, target)) == 1.0
    assert float(weighted_l1(pred, target, w)) == pytest.approx((0.1 + 0.1 + 3.0) / 4)


def test_blend_weights_interpolates_float_entries_and_keeps_integer_buffers():
    start = {"w": torch.zeros(3), "b": torch.tensor([2.0]), "count": torch.tensor(1)}
    adapted = {"w": torch.tensor([1.0, -2.0, 4.0]), "b": torch.tensor([4.0]), "count": torch.tensor(7)}
    quarter = blend_weights(start, adapted, 0.25)
    assert torch.equal(quarter["w"], torch.tensor([0.25, -0.5, 1.0])) and torch.equal(quarter["b"], torch.tensor([2.5]))
    assert int(quarter["count"]) == 7
    assert torch.equal(blend_weights(start, adapted, 0.0)["w"], start["w"])
    assert torch.equal(blend_weights(start, adapted, 1.0)["w"], adapted["w"])
    with pytest.raises(ValueError, match="same network"):
        blend_weights({"w": torch.zeros(3)}, adapted, 0.5)


def test_blend_returns_that_fraction_of_the_adaptation_for_the_selected_and_final_weights(tiny_compact, photo):
    model = ttasr.load_model(tiny_compact)
    start = _weights(model.module)
    settings = dict(max_steps=4, lr=2e-3, eval_every=2, stopping="heldout", **FAST)
    full = InternalLearning(model, **settings).fit(photo)
    part = InternalLearning(model, blend=0.3, **settings).fit(photo)
    assert part.results[0].best_step == full.results[0].best_step  # training and selection are unchanged
    for final in (False, True):
        adapted = full.adapted_model(final=final).module.state_dict()
        blended = part.adapted_model(final=final).module.state_dict()
        moved = [k for k in start if not torch.equal(adapted[k], start[k])]
        assert moved
        for k in moved:
            torch.testing.assert_close(blended[k], start[k] + 0.3 * (adapted[k] - start[k]), rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match="blend"):
        InternalLearning(model, blend=1.5)


def test_internal_learning_lowers_its_loss_and_changes_weights(tiny_compact, photo):
    model = ttasr.load_model(tiny_compact)
    adapter = InternalLearning(model, max_steps=60, lr=2e-3, **FAST)
    gen = torch.Generator().manual_seed(123)
    adapter.prepare(ImageGroup([None], [0], [photo]), model.trainable_copy())
    fixed = [adapter.sample_batch(gen) for _ in range(4)]

    def loss_of(module: nn.Module) -> float:
        with torch.no_grad():
            return sum(float(adapter.compute_loss(module, b)) for b in fixed) / len(fixed)

    before = loss_of(model.module)
    adapter.fit(photo)
    after = loss_of(adapter.adapted_model().module)
    assert after < before * 0.9, (before, after)
    changed = [k for k, v in adapter.adapted_model().module.state_dict().items()
               if not torch.equal(v, model.module.state_dict()[k])]
    assert changed
    # the original model is untouched
    assert torch.equal(model.module.state_dict()["body.0.weight"], tiny_compact.model.state_dict()["body.0.weight"])


@pytest.mark.parametrize("ema", [None, 0.99])
def test_zero_learning_rate_leaves_weights_bit_identical(tiny_compact, photo, ema):
    model = ttasr.load_model(tiny_compact)
    ref = _weights(model.module)
    adapter = InternalLearning(model, max_steps=5, lr=0.0, ema_decay=ema, **FAST).fit(photo)
    for k, v in adapter.adapted_model().module.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_save_loads_back_in_spandrel_with_metadata(tiny_span, photo, tmp_path):
    adapter = InternalLearning(tiny_span, max_steps=3, lr=1e-3, **FAST).fit(photo)
    [path] = adapter.save(tmp_path / "adapted.safetensors")
    desc = spandrel.ModelLoader().load_from_file(path)
    assert desc.architecture.name == "SPAN" and desc.scale == 2
    adapted = adapter.adapted_model()
    x = photo[..., :32, :32]
    torch.testing.assert_close(desc(x), adapted(x).clamp(0, 1), atol=1e-5, rtol=0)
    meta = ttasr.load_model(path).metadata
    assert meta["ttasr_method"] == "internal" and meta["ttasr_version"] == ttasr.__version__
    assert meta["base_model_sha256"] == ttasr.load_model(tiny_span).weights_hash()
    assert '"max_steps": 3' in meta["ttasr_config"]


class _StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step(self, adapter, step, loss):
        if step == self.step:
            raise KeyboardInterrupt


def test_interrupt_keeps_weights_and_resume_matches_uninterrupted_run(tiny_compact, photo, tmp_path):
    cfg = dict(max_steps=12, lr=1e-3, ema_decay=0.9, checkpoint_every=5, checkpoint_dir=str(tmp_path), **FAST)
    full = InternalLearning(tiny_compact, **cfg).fit(photo)

    cut = InternalLearning(tiny_compact, **cfg).fit(photo, callbacks=[_StopAt(7)])
    assert cut.state["results"][0]["interrupted"] and cut.state["results"][0]["steps"] == 7
    cut.adapted_model()  # usable: the weights so far were kept

    resumed = InternalLearning(tiny_compact, **cfg).fit(photo, resume=True)
    r = resumed.results[0]
    assert not r.interrupted and r.steps == 12 and len(r.history) == 12
    for k, v in resumed.adapted_model().module.state_dict().items():
        torch.testing.assert_close(v, full.adapted_model().module.state_dict()[k], rtol=0, atol=0)


def test_single_image_mode_resets_between_images(tiny_compact, photo):
    other = photo.flip(-1).roll(17, -2)
    both = InternalLearning(tiny_compact, max_steps=4, lr=1e-3, mode="single", **FAST).fit([photo, other])
    alone = InternalLearning(tiny_compact, max_steps=4, lr=1e-3, mode="single", seed=0, **FAST)
    # image 1 adapted alone, with the same per-image seed offset, from the base weights
    alone._make_generator = lambda offset: both._make_generator(1)  # type: ignore[method-assign]
    alone.fit(other)
    assert len(both.results) == 2
    for k, v in both.adapted_model(1).module.state_dict().items():
        torch.testing.assert_close(v, alone.adapted_model().module.state_dict()[k], rtol=0, atol=0)
    w0, w1 = both.adapted_model(0).module.state_dict(), both.adapted_model(1).module.state_dict()
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)


def test_config_overrides_and_names():
    assert {"internal"} <= set(list_adapters())
    with pytest.raises(InputError, match="Did you mean max_steps"):
        InternalLearning(nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)), max_step=3)
    with pytest.raises(InputError, match="unknown adapter 'internl'.*Did you mean internal"):
        create_adapter("internl", nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)))
    a = create_adapter("zssr", nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2)), lr=5e-4)
    assert isinstance(a, InternalLearning) and a.config.lr == 5e-4
    with pytest.raises(InputError, match="ema_decay"):
        InternalLearning(a.model, ema_decay=1.5)


def test_bad_images_are_refused_by_name(tiny_compact, photo):
    adapter = InternalLearning(tiny_compact, max_steps=1, **FAST)
    with pytest.raises(InputError, match="too small"):
        adapter.fit(photo[..., :10, :10])
    nan = photo.clone()
    nan[0, 0, 5, 5] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        adapter.fit(nan)
    with pytest.raises(InputError, match="not fitted"):
        adapter.save("x.safetensors")


def test_nan_loss_stops_with_advice(tiny_compact, photo):
    model = ttasr.load_model(tiny_compact)
    adapter = InternalLearning(model, max_steps=3, lr=1e-3, **FAST)
    adapter.compute_loss = lambda student, batch: torch.tensor(float("nan"), requires_grad=True)  # type: ignore
    with pytest.raises(FloatingPointError, match="lower lr"):
        adapter.fit(photo)


def test_plain_module_adapts_too(photo):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    start = copy.deepcopy(net.state_dict())
    adapter = InternalLearning(net, max_steps=3, lr=1e-3, **FAST).fit(photo)
    assert not torch.equal(adapter.adapted_model().module.state_dict()["0.weight"], start["0.weight"])


def test_enhance_returns_the_type_given_to_fit(tiny_compact, photo):
    import numpy as np

    single = InternalLearning(tiny_compact, max_steps=1, **FAST).fit(photo).enhance()
    assert isinstance(single, torch.Tensor) and single.shape == (1, 3, 192, 192)
    arr = (photo[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    pair = InternalLearning(tiny_compact, max_steps=1, mode="single", **FAST).fit([arr, arr]).enhance()
    assert isinstance(pair, list) and len(pair) == 2
    assert pair[0].dtype == np.uint8 and pair[0].shape == (192, 192, 3)


def test_internal_learning_can_use_the_estimated_or_a_given_kernel(tiny_compact, photo):
    base = dict(max_steps=1, **FAST)
    assert InternalLearning(tiny_compact, **base).fit(photo).sampler.estimates[0].kind == "bicubic"
    est = InternalLearning(tiny_compact, kernel_estimator="consistency", **base).fit(photo).sampler.estimates[0]
    assert est.kind == "kernel" and est.params["estimator"] != "given"
    k = ttasr.degradations.gaussian_kernel(7, 1.0)
    given = InternalLearning(tiny_compact, kernel=k, **base).fit(photo).sampler.estimates[0]
    assert given.params["estimator"] == "given"
    with pytest.raises(InputError, match="does not use it"):  # a kernel and another estimator: which one?
        InternalLearning(tiny_compact, kernel=k, kernel_estimator="consistency")
    with pytest.raises(InputError, match="needs kernel"):
        InternalLearning(tiny_compact, kernel_estimator="given")
