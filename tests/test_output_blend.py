"""Blending outputs instead of weights: the module, the adapter's results, saving and loading back."""

from __future__ import annotations

import dataclasses

import pytest
import spandrel
import torch

import ttasr
from ttasr import InternalLearning
from ttasr.adapters.stopping import HeldOutPairs
from ttasr.errors import ModelError
from ttasr.inference import enhance_tensor
from ttasr.models import OutputBlend, blend_outputs
from ttasr.models.saving import save_model

FAST = {"batch_size": 2, "patch_size": 16, "progress": False, "max_steps": 4, "lr": 2e-3, "eval_every": 2,
        "stopping": "heldout"}


def test_an_output_blend_is_the_lerp_of_the_two_outputs_and_never_below_both_ends():
    torch.manual_seed(0)
    a, b = torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Conv2d(3, 3, 3, padding=1)
    x, target = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        out = OutputBlend(a, b, 0.3)(x)
        torch.testing.assert_close(out, 0.7 * a(x) + 0.3 * b(x))
        # squared error of the blend = the blend of the errors − λ(1 − λ)‖difference‖²: below the worse end
        mse = [float((y - target).pow(2).sum()) for y in (a(x), b(x), out)]
        gap = float((b(x) - a(x)).pow(2).sum())
    assert mse[2] == pytest.approx(0.7 * mse[0] + 0.3 * mse[1] - 0.21 * gap, rel=1e-5)
    assert mse[2] <= max(mse[0], mse[1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        OutputBlend(a, b, 1.5)


def test_blend_outputs_refuses_two_scales_and_is_not_one_architecture(tiny_compact):
    model = ttasr.load_model(tiny_compact)
    blended = blend_outputs(model, model, 0.5)
    assert not blended.spandrel_compatible and blended.metadata["blend_space"] == "outputs"
    other = ttasr.load_model(torch.nn.Upsample(scale_factor=3), scale=3)
    with pytest.raises(ValueError, match="x2 and a x3"):
        blend_outputs(model, other, 0.5)


@pytest.fixture
def base_file(tmp_path, tiny_compact):
    """The tiny model as a checkpoint file, so that saved adaptations can name their base."""
    path = tmp_path / "base.safetensors"
    save_model(ttasr.load_model(tiny_compact), path)
    return path


def test_an_output_blend_keeps_the_whole_adaptation_and_enhances_with_the_blend(base_file, photo):
    model = ttasr.load_model(base_file)
    full = InternalLearning(model, **FAST).fit(photo)
    part = InternalLearning(model, blend=0.3, blend_space="outputs", **FAST).fit(photo)
    r = part.results[0]
    assert (r.blend, r.blend_space) == (0.3, "outputs")
    whole = full.adapted_model().module.state_dict()
    assert all(torch.equal(v, whole[k]) for k, v in r.weights.items())  # the weights stay whole
    start, adapted = model(photo), full.adapted_model()(photo)
    assert not torch.allclose(start, adapted)
    torch.testing.assert_close(part.adapted_model()(photo), 0.7 * start + 0.3 * adapted, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(part.enhance(photo), part.adapted_model()(photo).clamp(0, 1), rtol=0, atol=1e-5)
    # the start selected: one network
    assert part._blended(dataclasses.replace(r, best_step=0, blend=1.0, blend_space="weights")).blend_space == "weights"
    # blend 0 is no adaptation: one network, the pretrained one
    none = InternalLearning(model, blend=0.0, blend_space="outputs", **FAST).fit(photo)
    assert none.results[0].blend_space == "weights" and none.adapted_model().spandrel_compatible


def test_a_saved_output_blend_loads_back_as_the_blend_and_in_spandrel_as_the_adaptation(base_file, tmp_path, photo,
                                                                                         caplog):
    model = ttasr.load_model(base_file)
    part = InternalLearning(model, blend=0.3, blend_space="outputs", **FAST).fit(photo)
    with caplog.at_level("WARNING", logger="ttasr"):
        [path] = part.save(tmp_path / "adapted.safetensors")
    assert "holds the adapted network whole" in caplog.text
    loaded = ttasr.load_model(path)
    assert isinstance(loaded.module, OutputBlend) and loaded.module.fraction == pytest.approx(0.3)
    torch.testing.assert_close(loaded(photo), part.adapted_model()(photo), rtol=1e-5, atol=1e-6)
    plain = spandrel.ModelLoader().load_from_file(path)  # spandrel: the adapted network, whole
    with torch.no_grad():
        torch.testing.assert_close(plain.model(photo), part.model.with_weights(part.results[0].weights)(photo),
                                   rtol=1e-5, atol=1e-6)
    # the base must be the one it was adapted from; without the file, pass it
    other = {k: v + 0.01 for k, v in model.module.state_dict().items()}
    wrong = tmp_path / "other.safetensors"
    save_model(model.with_weights(other), wrong)
    with pytest.raises(ModelError, match="other weights; pass the pretrained model"):
        ttasr.load_model(path, blend_base=wrong)
    base_file.unlink()
    with pytest.raises(ModelError, match="cannot be loaded.*blend_base="):
        ttasr.load_model(path)
    again = ttasr.load_model(path, blend_base=model)
    torch.testing.assert_close(again(photo), loaded(photo), rtol=0, atol=0)


def test_adassr_checks_blends_of_outputs_in_output_space(tiny_compact, photo, monkeypatch):
    from ttasr.adapters import stopping
    from ttasr.degradations import gaussian_kernel

    k = gaussian_kernel(7, 1.2)
    a = ttasr.AdaSSR(tiny_compact, kernel=k, blend_space="outputs", batch_size=2, patch_size=16, progress=False,
                     attention="none", augment=False, max_steps=4, eval_every=2, lr=3e-3).fit(photo)
    # the default blends outputs with guarded-fallback (a given kernel, multi-image), weights otherwise
    assert ttasr.AdaSSR(tiny_compact, kernel=k).blend_space() == "outputs"
    assert ttasr.AdaSSR(tiny_compact, kernel=k, mode="single").blend_space() == "weights"
    assert ttasr.AdaSSR(tiny_compact).blend_space() == "weights"
    r = a.results[0]
    group = ttasr.adapters.ImageGroup([None], [0], [photo])
    seen, errors = [], iter([1.0, 1.2, 0.9])  # the start, ×0.5 worse, ×0.2 no worse

    def scripted(self, adapter, network, group):
        seen.append(network)
        return next(errors)

    monkeypatch.setattr(stopping.HeldOutPairs, "score", scripted)
    picked = dataclasses.replace(r, best_step=2, best_score=0.1)  # weights the guard accepted: 'auto' is 0.5
    assert a.checked_blend(picked, group) == 0.2
    assert [type(n).__name__ for n in seen[1:]] == ["OutputBlend", "OutputBlend"]
    assert [n.fraction for n in seen[1:]] == [0.5, 0.2]


def test_adassr_returns_the_whole_output_where_jpeg_shows_and_checks_it_first(tiny_compact, photo, monkeypatch):
    from ttasr.adapters import stopping
    from ttasr.degradations import gaussian_kernel, jpeg

    k = gaussian_kernel(7, 1.2)
    kw = {"kernel": k, "batch_size": 2, "patch_size": 16, "progress": False, "attention": "none", "augment": False,
          "max_steps": 4, "eval_every": 2, "lr": 3e-3}
    compressed = jpeg(photo, 40)
    a = ttasr.AdaSSR(tiny_compact, **kw).fit(compressed)
    assert a.results[0].image_traces == ("jpeg",)
    assert ttasr.AdaSSR(tiny_compact, **kw).fit(photo).results[0].image_traces == ()  # no JPEG in the photo
    # the weights' blends of another rule keep their fractions: the JPEG is not looked for
    assert ttasr.AdaSSR(tiny_compact, **kw, stopping="heldout-guarded").fit(compressed).results[0].image_traces == ()
    r = a.results[0]
    for score in (0.1, 1000.0):  # accepted by the guard, or a fallback pick: the whole output either way
        assert a.auto_blend(dataclasses.replace(r, best_score=score, blend_checked=None)) == 1.0
        assert a.auto_blend(dataclasses.replace(r, best_score=score, blend_checked=None, image_traces=())) \
            == (0.5 if score < 1 else 0.2)
    weights = ttasr.AdaSSR(tiny_compact, **kw, blend_space="weights")
    assert weights.auto_blend(dataclasses.replace(r, best_score=0.1, blend_checked=None)) == 0.5
    group = ttasr.adapters.ImageGroup([None], [0], [compressed])
    seen, errors = [], iter([1.0, 1.1, 0.9])  # the start, the whole output worse, ×0.5 no worse

    def scripted(self, adapter, network, group):
        seen.append(network)
        return next(errors)

    monkeypatch.setattr(stopping.HeldOutPairs, "score", scripted)
    assert a.checked_blend(dataclasses.replace(r, best_step=2, best_score=0.1), group) == 0.5
    assert [n.fraction for n in seen[1:]] == [1.0, 0.5]


def test_where_the_image_shows_colour_noise_half_of_the_final_change_is_returned(tiny_compact, photo, monkeypatch):
    from ttasr.adapters.training import blend_weights
    from ttasr.degradations import add_gaussian_noise, estimate_chroma_noise, gaussian_kernel

    g = torch.Generator().manual_seed(0)
    noisy, noisy2 = (add_gaussian_noise(photo, 8 / 255, generator=g) for _ in range(2))
    kw = {"kernel": gaussian_kernel(7, 1.2), "batch_size": 2, "patch_size": 16, "progress": False, "seed": 0,
          "attention": "none", "augment": False, "max_steps": 4, "eval_every": 2, "lr": 3e-3, "mode": "single"}
    monkeypatch.setattr(ttasr.AdaSSR, "noisy_max_steps", 2)  # 300 by default; the budget is 1,500
    plain = ttasr.AdaSSR(tiny_compact, **kw, noisy_final=False, blend=1.0).fit(noisy).results[0]
    a = ttasr.AdaSSR(tiny_compact, **kw)
    a.fit([noisy, photo])
    first, second = a.results
    assert (first.image_traces, second.image_traces) == (("noise",), ())
    # a given kernel, one image at a time: half of the final weights' change, the whole budget (noisy_uncapped)
    assert a.noisy_budget() is None
    assert (first.steps, first.best_step, first.final_weights, a.auto_blend(first), first.blend) == (4, 4, None, 0.5,
                                                                                                    0.5)
    final = plain.weights if plain.final_weights is None else plain.final_weights  # the same run's last weights
    half = blend_weights(a.model.module.state_dict(), final, 0.5)
    assert all(torch.allclose(first.weights[k], half[k]) for k in half)
    assert (second.steps, a.auto_blend(second)) == (4, 0.2)
    # multi-image mode: half of the images must be noisy; training stops at noisy_max_steps, half of that step's
    # output is returned (at 1,500 steps the final output lost 0.97 dB on a pattern photo), unchecked
    multi = {**kw, "mode": "multi"}
    m = ttasr.AdaSSR(tiny_compact, **multi)
    both = m.fit([noisy, noisy2]).results[0]
    assert m.noisy_budget() == 2
    assert (both.image_traces, both.steps, both.best_step, both.blend_checked) == (("noise",), 2, 2, None)
    assert (both.blend, both.blend_space) == (0.5, "outputs")  # as the multi-image default blends
    # the 2-step run's last weights, and the steps up to the cap are those of the longer budget
    shorter, longer = (ttasr.AdaSSR(tiny_compact, **{**multi, "max_steps": n}, noisy_final=False, blend=1.0)
                       .fit([noisy, noisy2]).results[0] for n in (2, 4))
    last = shorter.weights if shorter.final_weights is None else shorter.final_weights
    assert all(torch.equal(both.weights[k], last[k]) for k in last)
    at2 = [[h["score"] for h in r.history if h.get("step") == 2 and "score" in h] for r in (longer, shorter)]
    assert at2[0] == at2[1] != [] and longer.steps == 4
    # at least half of the images must be noisy (claim Y2: texture can hide the noise in one)
    assert ttasr.AdaSSR(tiny_compact, **multi).fit([noisy, photo]).results[0].image_traces == ("noise",)
    assert ttasr.AdaSSR(tiny_compact, **multi).fit([noisy, photo, photo]).results[0].image_traces == ()
    # noise shared by the channels (luminance noise) counts through its white-noise share (claim Y)
    sky = torch.linspace(0.3, 0.7, photo.shape[-1]).expand_as(photo).contiguous()  # texture would hide it
    grey = add_gaussian_noise(sky, 4 / 255, gray=True, generator=g)
    group = ttasr.adapters.ImageGroup([None, None], [0, 1], [grey, photo])
    assert estimate_chroma_noise(grey) < m.config.chroma_noise_threshold
    assert m.noisy_images(group) == ["image000"]
    assert ttasr.AdaSSR(tiny_compact, **multi, noise_share_threshold=1.0).noisy_images(group) == []
    # where every image shows white noise in its brightness, the whole step is returned (claim Z); noise seen only
    # in the colours, or white in some images only (a textured photo beside them would lose), keeps half
    grey2 = add_gaussian_noise(sky, 4 / 255, gray=True, generator=g)
    assert m.noise_traces(ttasr.adapters.ImageGroup([None, None], [0, 1], [grey, grey2])) == ("noise", "white-noise")
    assert m.noise_traces(group) == ("noise",)
    assert m.noise_traces(ttasr.adapters.ImageGroup([None, None], [0, 1], [noisy, noisy2])) == ("noise",)
    # colour noise white one channel at a time counts too (claims Z4, Z6), in the cells white_per_channel names
    speck, speck2 = (add_gaussian_noise(sky, 4 / 255, generator=g) for _ in range(2))
    assert m.noise_traces(ttasr.adapters.ImageGroup([None, None], [0, 1], [speck, speck2])) == ("noise", "white-noise")
    one = ttasr.adapters.ImageGroup([None], [0], [speck])
    assert (a.cell(), a.noise_traces(one)) == ("given-single", ("noise", "white-noise"))
    with monkeypatch.context() as patch:
        patch.setattr(ttasr.AdaSSR, "white_per_channel", ("blind-single", "blind-multi", "given-multi"))
        assert a.noise_traces(one) == ("noise",)
    white = ttasr.AdaSSR(tiny_compact, **multi).fit([grey, grey2]).results[0]
    assert (white.image_traces, white.steps, white.best_step, white.blend) == (("noise", "white-noise"), 2, 2, 1.0)
    # a rule the user chose is kept, by name or as an object (which trains the whole budget)
    assert ttasr.AdaSSR(tiny_compact, **kw, stopping="heldout").fit(noisy).results[0].image_traces == ()
    mine = ttasr.AdaSSR(tiny_compact, **multi, stopping=HeldOutPairs()).fit([noisy, noisy2]).results[0]
    assert (mine.image_traces, mine.steps) == ((), 4)


def test_single_image_mode_returns_half_the_pick_where_jpeg_shows_in_that_image(tiny_compact, photo):
    from ttasr.degradations import gaussian_kernel, jpeg

    kw = {"kernel": gaussian_kernel(7, 1.2), "batch_size": 2, "patch_size": 16, "progress": False,
          "attention": "none", "augment": False, "max_steps": 4, "eval_every": 2, "lr": 3e-3, "mode": "single"}
    a = ttasr.AdaSSR(tiny_compact, **kw)
    assert a.stopping_rule() == "heldout"
    a.fit([jpeg(photo, 40), photo])
    first, second = a.results
    assert (first.image_traces, second.image_traces) == (("jpeg",), ())
    assert (a.auto_blend(first), a.auto_blend(second)) == (0.5, 0.2)
    assert (first.blend_checked, second.blend_checked) == (None, None)  # the held-out pick already beat the start


def test_without_a_kernel_half_of_the_output_is_returned_where_jpeg_or_colour_noise_shows(tiny_compact, photo):
    from ttasr.degradations import add_gaussian_noise, jpeg

    g = torch.Generator().manual_seed(0)
    noisy, noisy2 = (add_gaussian_noise(photo, 8 / 255, generator=g) for _ in range(2))
    kw = {"batch_size": 2, "patch_size": 16, "progress": False, "seed": 0, "attention": "none", "augment": False,
          "max_steps": 4, "eval_every": 2, "lr": 3e-3, "mode": "single"}
    a = ttasr.AdaSSR(tiny_compact, **kw)
    assert (a.config.kernel_source, a.stopping_rule()) == ("consistency", "heldout")
    compressed = jpeg(photo, 40)
    sr = a.fit([compressed, noisy, photo]).enhance()
    first, grainy, clean = a.results
    # colour noise: half of the final output, training stopped at noisy_max_steps (300, above this budget)
    assert [r.image_traces for r in a.results] == [("jpeg",), ("noise",), ()]
    assert [r.blend for r in a.results] == [0.5, 0.5, 0.1]
    assert (first.best_step, first.blend_space) == (4, "outputs")  # the held-out pick (here the last step)
    assert (grainy.steps, grainy.best_step, grainy.blend_space, clean.blend_space) == (4, 4, "outputs", "weights")
    # the JPEG image's output is half of the pick's output and half of the pretrained one
    whole = a.model.with_weights(first.weights)
    half = 0.5 * enhance_tensor(whole, compressed) + 0.5 * enhance_tensor(a.model, compressed)
    torch.testing.assert_close(sr[0], half, atol=1 / 255, rtol=0)  # one 8-bit level: here each end is clamped first
    # multi-image mode: JPEG in one image of the set is enough; noise must show in half of them
    multi = {**kw, "mode": "multi"}
    both = ttasr.AdaSSR(tiny_compact, **multi).fit([compressed, photo]).results[0]
    assert (both.image_traces, both.blend) == (("jpeg",), 0.5)
    assert both.blend_space == ("outputs" if both.best_step else "weights")
    grain = ttasr.AdaSSR(tiny_compact, **multi).fit([noisy, noisy2]).results[0]
    assert (grain.image_traces, grain.blend, grain.blend_space) == (("noise",), 0.5, "outputs")
    # at least half of the images must be noisy (claim Y2: texture can hide the noise in one)
    assert ttasr.AdaSSR(tiny_compact, **multi).fit([noisy, photo]).results[0].image_traces == ("noise",)
    assert ttasr.AdaSSR(tiny_compact, **multi).fit([noisy, photo, photo]).results[0].image_traces == ()
    # colour noise on a smooth image: white one channel at a time, so the whole step is returned (claims Z2, Z4),
    # where every image shows it
    sky = torch.linspace(0.3, 0.7, photo.shape[-1]).expand_as(photo).contiguous()
    speckled, speckled2 = (add_gaussian_noise(sky, 4 / 255, generator=g) for _ in range(2))
    group = ttasr.adapters.ImageGroup([None], [0], [speckled])
    assert a.noise_traces(group) == ttasr.AdaSSR(tiny_compact, **multi).noise_traces(group) == ("noise", "white-noise")
    pair = ttasr.adapters.ImageGroup([None, None], [0, 1], [speckled, speckled2])
    assert ttasr.AdaSSR(tiny_compact, **multi).noise_traces(pair) == ("noise", "white-noise")
    mixed = ttasr.adapters.ImageGroup([None, None], [0, 1], [speckled, noisy])
    assert ttasr.AdaSSR(tiny_compact, **multi).noise_traces(mixed) == ("noise",)
    # that share makes an image noisy too, where the chroma level misses the noise (claim Y3)
    quiet = ttasr.AdaSSR(tiny_compact, **multi, chroma_noise_threshold=10.0)
    assert quiet.noisy_images(pair) == ["image000", "image001"]
    assert ttasr.AdaSSR(tiny_compact, **multi, chroma_noise_threshold=10.0, noise_share_threshold=1.0) \
        .noisy_images(pair) == []
    assert quiet.config.counts_as_noisy(1.0, 0.1, 0.4) and not quiet.config.counts_as_noisy(1.0, 0.1, 0.2)
    whole = ttasr.AdaSSR(tiny_compact, **kw).fit(speckled).results[0]
    assert (whole.image_traces, whole.blend, whole.best_step) == (("noise", "white-noise"), 1.0, 4)
    # a space or blend the user chose is kept
    mine = ttasr.AdaSSR(tiny_compact, **kw, blend_space="weights").fit(compressed).results[0]
    assert (mine.image_traces, mine.blend, mine.blend_space) == (("jpeg",), 0.5, "weights")
    assert ttasr.AdaSSR(tiny_compact, **kw, blend=0.3).fit(compressed).results[0].image_traces == ()

def test_several_images_where_some_show_white_noise_each_image_gets_its_own_blend(tiny_compact, photo, tmp_path,
                                                                                   caplog):
    from safetensors import safe_open

    from ttasr.degradations import add_gaussian_noise

    g = torch.Generator().manual_seed(0)
    sky = torch.linspace(0.3, 0.7, photo.shape[-1]).expand_as(photo).contiguous()
    speckled = add_gaussian_noise(sky, 4 / 255, generator=g)  # white in each channel
    noisy = add_gaussian_noise(photo, 8 / 255, generator=g)  # colour noise that texture keeps from looking white
    kw = {"batch_size": 2, "patch_size": 16, "progress": False, "seed": 0, "attention": "none", "augment": False,
          "max_steps": 4, "eval_every": 2, "lr": 3e-2, "mode": "multi"}
    a = ttasr.AdaSSR(tiny_compact, **kw)
    readings = a.noise_readings(ttasr.adapters.ImageGroup([None, None], [0, 1], [speckled, noisy]))
    assert a.white_images(readings) == [True, False]
    sr = a.fit([speckled, noisy]).enhance()
    r = a.results[0]
    # one adaptation, one group blend (half: not every image is white), and each image's own blend (claim Z5)
    assert (r.image_traces, r.blend, r.blend_space, r.image_blends) == (("noise",), 0.5, "outputs", (1.0, 0.5))
    assert a.blends_per_image and (r.blend_of(0), r.blend_of(1), r.blend_of(None)) == (1.0, 0.5, 0.5)
    adapted = a.model.with_weights(r.weights)
    whole, start = enhance_tensor(adapted, speckled), enhance_tensor(a.model, speckled)
    half = blend_outputs(a.model, adapted, 0.5)
    assert not torch.allclose(whole, start, atol=2 / 255)
    torch.testing.assert_close(sr[0], whole, atol=1e-6, rtol=0)
    torch.testing.assert_close(sr[1], enhance_tensor(half, noisy), atol=1e-6, rtol=0)
    # new images get the group's blend; the file records each fitted image's and restores the group's
    torch.testing.assert_close(a.enhance(speckled), enhance_tensor(half, speckled), atol=1e-6, rtol=0)
    with caplog.at_level("WARNING", logger="ttasr"):
        [path] = a.save(tmp_path / "adapted.safetensors")
    assert "each by its own fraction" in caplog.text
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert (meta["blend"], meta["image_blends"]) == ("0.5", "tensor #0=1,tensor #1=0.5")
    # every image white, or none: one blend, as before; a blend or space the user chose: one blend
    assert ttasr.AdaSSR(tiny_compact, **kw).fit([speckled, speckled]).results[0].image_blends == ()
    assert ttasr.AdaSSR(tiny_compact, **kw, blend=0.5).fit([speckled, noisy]).results[0].image_blends == ()
    mine = ttasr.AdaSSR(tiny_compact, **kw, blend_space="weights").fit([speckled, noisy]).results[0]
    assert (mine.blend_space, mine.image_blends) == ("weights", ())


def test_without_a_kernel_where_jpeg_shows_and_the_start_is_kept_half_of_step_300_is_returned(tiny_compact, photo,
                                                                                              monkeypatch):
    from ttasr.adapters.stopping import HeldOutPairs
    from ttasr.degradations import jpeg

    compressed = jpeg(photo, 40)
    kw = {"batch_size": 2, "patch_size": 16, "progress": False, "seed": 0, "attention": "none", "augment": False,
          "eval_every": 2, "lr": 1e-12, "mode": "multi"}  # nothing learnt: the held-out rule keeps the start
    monkeypatch.setattr(ttasr.AdaSSR, "start_kept_step", 2)  # the step whose weights are returned (300)

    class Steps(ttasr.Callback):
        def __init__(self):
            self.steps = []

        def on_step(self, adapter, step, loss):
            self.steps.append(step)

    a, steps = ttasr.AdaSSR(tiny_compact, **kw, max_steps=4), Steps()
    sr = a.fit([compressed, photo], callbacks=[steps]).enhance()
    r = a.results[0]
    assert (r.image_traces, r.best_step, r.blend, r.blend_space) == (("jpeg",), 2, 0.5, "outputs")
    assert steps.steps == [1, 2, 3, 4] and r.kept_weights == {}  # step 2's weights kept in the run: not trained again
    # the weights of step 2 (as a 2-step budget ends), and the last ones kept for final=True
    two = ttasr.AdaSSR(tiny_compact, **kw, max_steps=2).fit([compressed, photo]).results[0]
    assert (two.best_step, two.steps, two.blend) == (2, 2, 0.5)
    assert all(torch.equal(r.weights[k], two.weights[k]) for k in r.weights)
    last = ttasr.AdaSSR(tiny_compact, **kw, max_steps=4, blend=1.0).fit([compressed, photo]).results[0]
    assert last.best_step == 0 and all(torch.equal(r.final_weights[k], last.final_weights[k]) for k in r.weights)
    half = 0.5 * enhance_tensor(a.model.with_weights(two.weights), photo) + 0.5 * enhance_tensor(a.model, photo)
    torch.testing.assert_close(sr[1], half, atol=1 / 255, rtol=0)
    # not without JPEG, nor in single-image mode, nor with a Stopping object of the caller's
    assert ttasr.AdaSSR(tiny_compact, **kw, max_steps=4).fit([photo, photo]).results[0].best_step == 0
    single = ttasr.AdaSSR(tiny_compact, **{**kw, "mode": "single"}, max_steps=4).fit(compressed).results[0]
    assert (single.image_traces, single.best_step) == (("jpeg",), 0)
    mine = ttasr.AdaSSR(tiny_compact, **kw, max_steps=4, stopping=HeldOutPairs()).fit([compressed, photo])
    assert mine.results[0].best_step == 0
