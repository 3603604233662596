"""The AdaSSR adapter: paper defaults, stopping rule, best-weight selection, attention paths."""

from __future__ import annotations

import pytest
import spandrel
import torch

import ttasr
from ttasr.adapters.base import FitResult
from ttasr.adapters.stopping import GuardedFallback, GuardedHeldOut, HeldOutPairs, NIQEPlateau
from ttasr.errors import InputError, TTASRError
from ttasr.methods.adassr import AdaSSR, AdaSSRConfig, niqe_plateau

FAST = dict(batch_size=2, patch_size=12, progress=False, stopping="fixed", max_steps=3)
QUICK = {k: v for k, v in FAST.items() if k != "stopping"}


def test_paper_defaults():
    c = AdaSSRConfig.paper()
    assert (c.max_steps, c.lr, c.batch_size, c.ema_decay, c.proximal_weight, c.eval_every) == (
        1500, 1e-4, 4, 0.999, 1e-4, 100)
    assert (c.stopping, c.noise_augment) == ("niqe-plateau", "always")
    # the default differs in its selection only: held-out pairs with a 1 % margin (guarded with a given kernel in
    # multi-image mode), EMA 0.99, part of the adaptation (the rules that met the no-harm targets on photos that
    # chose nothing; README)
    d = AdaSSRConfig()
    assert (d.stopping, d.heldout_min_gain, d.ema_decay, d.blend) == ("auto", 0.01, 0.99, "auto")
    assert (c.heldout_min_gain, c.blend) == (0.0, 1.0)
    assert d.replace(stopping="niqe-plateau", heldout_min_gain=0.0, ema_decay=0.999, blend=1.0) == c
    assert (c.niqe_min_delta, c.niqe_patience, c.attention_mix, c.admm_rounds) == (0.05, 3, 0.9, 1)
    a = c.augment_config
    assert (a.gaussian_noise_p, a.poisson_noise_p, a.affine_scale) == (0.24, 0.16, (0.5, 1.0))


@pytest.mark.parametrize("scores, stop", [
    ([5.0, 4.9, 4.8, 4.7, 4.6], False),          # steady progress
    ([5.0, 4.9, 4.88, 4.87, 4.86], True),        # three small decreases in a row
    ([5.0, 4.98, 4.97, 4.8, 4.79, 4.78], False),  # the run was reset by a big decrease
    ([5.0, 5.2, 5.3, 5.4], True),                 # increases count as "less than 0.05"
    ([5.0, 4.99, 4.98], False),                   # only two
])
def test_niqe_plateau_rule(scores, stop):
    assert niqe_plateau(scores, 0.05, 3) is stop


class _Scripted(NIQEPlateau):
    """The NIQE rule with scripted scores (step 0 first) instead of NIQE."""

    def __init__(self, script):
        super().__init__()
        self.script = list(script)

    def prepare(self, adapter, group):
        pass

    def score(self, adapter, network, group):
        return self.script.pop(0)


def test_early_stopping_by_the_rule_and_best_weights(tiny_compact, photo):
    adapter = AdaSSR(tiny_compact, stopping=_Scripted([5.0, 4.0, 3.99, 3.98, 3.97, 1.0, 1.0]), **dict(QUICK, max_steps=100, eval_every=5, lr=1e-3,
                                                                      ema_decay=None, attention="none"))
    adapter.fit(photo)
    r = adapter.results[0]
    assert r.stopped_early and r.steps == 20 and r.best_step == 20 and r.best_score == 3.97


def test_unadapted_weights_win_when_adaptation_only_hurts(tiny_compact, photo):
    adapter = AdaSSR(tiny_compact, stopping=_Scripted([4.0, 4.5, 4.6, 4.7, 9.0]), **dict(QUICK, max_steps=100, eval_every=5, lr=1e-3,
                                                                      ema_decay=None, attention="none"))
    adapter.fit(photo)
    r = adapter.results[0]
    assert r.stopped_early and r.steps == 15 and r.best_step == 0
    for k, v in adapter.adapted_model().module.state_dict().items():
        assert torch.equal(v, tiny_compact.model.state_dict()[k]), k


def test_attention_paths(tiny_compact, tiny_swinir, photo):
    # a transformer model gives its own attention map
    a = AdaSSR(tiny_swinir, **FAST, attention="auto").fit(photo[..., :64, :64])
    assert a.describe()["attention"] == "auto" and len(a.attention_maps) == 1
    w = a.sampler.weights[0]
    assert w.shape == (1, 1, 64, 64) and float(w.min()) >= 0.1 and float(w.max()) <= 3.0
    # a convolutional model: our feature attention, or a transformer given as attention_model
    b = AdaSSR(tiny_compact, **FAST, attention="features").fit(photo)
    assert b.sampler.weights[0].shape == (1, 1, 96, 96)
    c = AdaSSR(tiny_compact, **FAST, attention="transformer", attention_model=tiny_swinir).fit(photo)
    assert not torch.allclose(c.sampler.weights[0], b.sampler.weights[0])
    with pytest.raises(InputError, match="attention_model"):
        AdaSSR(tiny_compact, **FAST, attention="transformer").fit(photo)
    assert AdaSSR(tiny_compact, **FAST, attention="none").fit(photo).sampler.weights == [None]


def test_heatmaps_are_written(tiny_compact, photo, tmp_path):
    AdaSSR(tiny_compact, **FAST, attention="features", attention_dir=str(tmp_path)).fit(photo)
    [png] = tmp_path.glob("*_attention.png")
    from PIL import Image

    assert Image.open(png).size[0] >= 96


def test_auto_rule_and_blend_follow_where_the_kernel_comes_from_and_the_mode(tiny_compact):
    k = ttasr.degradations.gaussian_kernel(7, 1.2)

    def auto(**kw):
        a = AdaSSR(tiny_compact, **kw)
        return a.stopping.name, a.blend_fraction()

    assert auto() == ("heldout", 0.1)  # estimated kernel: a tenth
    assert auto(mode="single") == ("heldout", 0.1)
    assert auto(kernel=k) == ("guarded-fallback", 0.5)  # a measured kernel, multi-image: guarded, half
    assert auto(kernel=k, mode="single") == ("heldout", 0.2)  # single-image: unguarded, a fifth
    # of a fallback pick (weights the guard rejected, kept because it accepted none) a fifth
    a = AdaSSR(tiny_compact, kernel=k)
    rejected, accepted = (FitResult(weights={}, steps=9, best_step=9, best_score=s, stopped_early=False,
                                    interrupted=False, seconds=0.0) for s in (GuardedFallback.REJECTED + 0.2, 0.2))
    assert (a.blend_fraction(rejected), a.blend_fraction(accepted), a.blend_fraction()) == (0.2, 0.5, 0.5)
    assert auto(kernel=k, mode="single", stopping="guarded-fallback") == ("guarded-fallback", 0.5)
    assert auto(kernel=k, mode="single", stopping="heldout-guarded") == ("heldout-guarded", 0.2)
    assert auto(kernel=k, stopping="heldout") == ("heldout", 0.2)
    assert auto(kernel=k, stopping=HeldOutPairs(min_gain=0.01)) == ("heldout", 0.2)
    assert auto(kernel=k, stopping=GuardedHeldOut(min_gain=0.01)) == ("heldout-guarded", 0.5)
    assert auto(kernel_estimator="bicubic") == ("heldout", 0.1)  # assumed, not measured
    assert auto(kernel=k, blend=0.3) == ("guarded-fallback", 0.3)
    assert auto(preset="paper", kernel=k) == ("niqe-plateau", 1.0)
    internal = ttasr.InternalLearning(tiny_compact, blend="auto", stopping="auto")
    assert (internal.stopping.name, internal.blend_fraction()) == ("fixed", 1.0)


def test_given_kernel_and_bad_settings(tiny_compact, photo):
    k = ttasr.degradations.gaussian_kernel(7, 1.2)
    a = AdaSSR(tiny_compact, **FAST, kernel=k, attention="none").fit(photo)  # 'auto': a set kernel is used
    assert a.kernel_estimates[0].kind == "kernel" and a.kernel_estimates[0].params["estimator"] == "given"
    assert AdaSSR(tiny_compact, **FAST, kernel_estimator="bicubic", attention="none").fit(photo) \
        .kernel_estimates[0].kind == "bicubic"
    with pytest.raises(InputError, match="kernel is set but kernel_estimator='bicubic' does not use it"):
        AdaSSR(tiny_compact, kernel=k, kernel_estimator="bicubic")
    with pytest.raises(InputError, match="needs kernel"):
        AdaSSR(tiny_compact, kernel_estimator="given")
    with pytest.raises(InputError, match="external_images"):
        AdaSSR(tiny_compact, admm_rounds=2)


def test_niqe_problems_are_reported_before_training(tiny_compact, photo, monkeypatch, tmp_path):
    small = AdaSSR(tiny_compact, **dict(FAST, stopping="niqe-plateau"))
    with pytest.raises(InputError, match="384 px"):
        small.fit(photo)  # 96 px x2 = 192 px SR: too small for NIQE
    monkeypatch.setenv("TTASR_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    big = photo.repeat(1, 1, 3, 3)[..., :200, :200]
    adapter = AdaSSR(tiny_compact, **dict(FAST, stopping="niqe-plateau"))
    steps: list[int] = []
    with pytest.raises(TTASRError, match="ttasr metrics fetch niqe"):
        adapter.fit(big, callbacks=[type("C", (ttasr.Callback,), {"on_step": lambda s, a, st, l: steps.append(st)})()])
    assert steps == []


def test_real_niqe_evaluation_selects_weights(tiny_compact, photo, niqe_params_file):
    big = torch.nn.functional.interpolate(photo, size=(192, 192), mode="bicubic").clamp(0, 1)
    a = AdaSSR(tiny_compact, **dict(FAST, stopping="niqe-plateau", max_steps=4, eval_every=2, attention="none",
                                    niqe_params=str(niqe_params_file)))
    a.fit(big)
    scored = [h["score"] for h in a.results[0].history if "score" in h]
    assert len(scored) == 3 and all(2.0 < s < 100 for s in scored)
    assert a.results[0].best_score == min(scored)


def test_save_loads_in_spandrel_with_kernel_metadata(tiny_span, photo, tmp_path):
    a = AdaSSR(tiny_span, **FAST, attention="none").fit(photo)
    [path] = a.save(tmp_path / "a.safetensors")
    assert spandrel.ModelLoader().load_from_file(path).architecture.name == "SPAN"
    meta = ttasr.load_model(path).metadata
    assert meta["ttasr_method"] == "adassr" and "sigma_x" in meta["kernel"]
    assert meta["blend"] == "0.1" == f"{a.results[0].blend:g}"  # the estimated kernel: a tenth was returned


def test_single_image_mode_resets_between_images(tiny_compact, photo):
    other = photo.flip(-2)
    a = AdaSSR(tiny_compact, **dict(FAST, mode="single", lr=1e-3, attention="none")).fit([photo, other])
    b = AdaSSR(tiny_compact, **dict(FAST, mode="single", lr=1e-3, attention="none"))
    b._make_generator = lambda offset: a._make_generator(1)  # type: ignore[method-assign]
    b.fit(other)
    for k, v in a.adapted_model(1).module.state_dict().items():
        torch.testing.assert_close(v, b.adapted_model().module.state_dict()[k], rtol=0, atol=0)


def test_admm_rounds_alternate_external_and_internal_learning(tiny_compact, photo, tmp_path, monkeypatch):
    from PIL import Image

    from ttasr.methods.adassr import admm

    hr_dir = tmp_path / "hr"
    hr_dir.mkdir()
    for i in range(2):
        arr = (photo[0].roll(13 * i, -1).permute(1, 2, 0).numpy() * 255).round().astype("uint8")
        Image.fromarray(arr).save(hr_dir / f"{i}.png")
    calls = []
    real = admm.external_learning

    def spy(model, start, anchor, hr_images, settings, **kw):
        calls.append((start, len(hr_images), settings.max_steps, kw["lam"]))
        return real(model, start, anchor, hr_images, settings, **kw)

    monkeypatch.setattr(admm, "external_learning", spy)
    cfg = dict(FAST, attention="none", lr=1e-3, external_steps=2, external_images=str(hr_dir))
    two = AdaSSR(tiny_compact, **cfg, admm_rounds=2).fit(photo)
    one = AdaSSR(tiny_compact, **cfg, admm_rounds=1).fit(photo)
    assert len(calls) == 1 and calls[0][1:] == (2, 2, 1e-3)
    # round 2's external target Θ⁽¹⁾ − ū⁽¹⁾ = Θe⁽¹⁾: the pretrained weights
    for k, v in tiny_compact.model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(calls[0][0][k], v, atol=1e-6, rtol=0)
    assert two.results[0].steps == 2 * one.results[0].steps
    w1, w2 = one.adapted_model().module.state_dict(), two.adapted_model().module.state_dict()
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)


def test_dual_update_and_targets_are_the_scaled_admm_forms():
    from ttasr.methods.adassr.admm import dual_update, proximal_target

    theta, theta_e = {"w": torch.tensor([3.0]), "n": torch.tensor([1])}, {"w": torch.tensor([1.0]), "n": torch.tensor([1])}
    u = dual_update(None, theta, theta_e)
    assert set(u) == {"w"} and float(u["w"]) == 2.0
    assert float(dual_update(u, theta, theta_e)["w"]) == 4.0
    assert float(proximal_target(theta, u, -1.0)["w"]) == 1.0 and float(proximal_target(theta_e, u, 1.0)["w"]) == 3.0


def test_final_weights_are_kept_beside_the_selected_ones(tiny_compact, photo):
    adapter = AdaSSR(tiny_compact, stopping=_Scripted([1.0, 2.0, 3.0]), **dict(QUICK, max_steps=10, eval_every=5, lr=1e-3,
                                                                      ema_decay=None, attention="none"))
    adapter.fit(photo)
    base = tiny_compact.model.state_dict()
    best, final = adapter.adapted_model().module.state_dict(), adapter.adapted_model(final=True).module.state_dict()
    assert all(torch.equal(best[k], base[k]) for k in base)
    assert any(not torch.equal(final[k], base[k]) for k in base)


def test_noise_augmentation_only_on_noisy_inputs_by_default(tiny_compact):
    from ttasr.degradations import add_gaussian_noise

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 96), indexing="ij")
    clean = torch.stack([yy, xx, (yy + xx) / 2])[None] * 0.8 + 0.1
    noisy = add_gaussian_noise(clean, 6 / 255, generator=torch.Generator().manual_seed(0))
    cfg = dict(FAST, max_steps=1, attention="none", kernel_estimator="bicubic", noise_augment="auto")
    on_clean = AdaSSR(tiny_compact, **cfg).fit(clean)
    on_noisy = AdaSSR(tiny_compact, **cfg).fit(noisy)
    assert on_clean.noise_level < 1.0 < 4.0 < on_noisy.noise_level
    assert on_clean.sampler.augment.gaussian_noise_p == 0 and on_clean.sampler.augment.poisson_noise_p == 0
    assert on_noisy.sampler.augment.gaussian_noise_p == 0.24
    always = AdaSSR(tiny_compact, **{**cfg, "noise_augment": "always"}).fit(clean)
    assert always.sampler.augment.gaussian_noise_p == 0.24


def test_no_gap_to_the_bicubic_training_degradation_means_no_adaptation(tiny_compact, photo, tmp_path, caplog):
    from ttasr.degradations import add_gaussian_noise, bicubic_kernel, gaussian_kernel, jpeg

    bicubic = bicubic_kernel(2)
    cfg = dict(FAST, attention="none", kernel=bicubic)
    kept = AdaSSR(tiny_compact, **cfg)
    with caplog.at_level("WARNING", logger="ttasr"):
        kept.fit(photo)
    [r] = kept.results
    assert (r.steps, r.best_step) == (0, 0) and "bicubic x2" in r.not_adapted
    assert "no adaptation" in caplog.text and "trained_on='unknown'" in caplog.text
    base = tiny_compact.model.state_dict()
    assert all(torch.equal(v, base[k]) for k, v in kept.adapted_model().module.state_dict().items())
    [path] = kept.save(tmp_path / "kept.safetensors")
    meta = ttasr.load_model(path).metadata
    assert "training degradation" in meta["not_adapted"] and meta["blend"] == "0" and r.blend == 0.0

    def trained(images, **kw):
        a = AdaSSR(tiny_compact, **{**cfg, **kw}).fit(images)
        return a.results[0].steps > 0 and a.results[0].not_adapted is None

    assert trained(photo, trained_on="unknown")  # the user says the model was not trained on bicubic
    assert trained(photo, kernel=gaussian_kernel(7, 1.2))  # a blur the model was not trained on
    noisy = add_gaussian_noise(photo, 6 / 255, generator=torch.Generator().manual_seed(0)).clamp(0, 1)
    assert not trained(noisy)  # noise is not checked
    assert trained(noisy, trained_on="unknown")
    assert trained(jpeg(photo, 50))  # JPEG is: compressed bicubic images are a gap to adapt to
    assert trained([photo, jpeg(photo.flip(-1), 50)])  # one compressed image in the set is enough
    assert trained(photo, kernel=None)  # an estimated kernel never skips
    single = AdaSSR(tiny_compact, **dict(cfg, mode="single")).fit([photo, photo.flip(-1)])
    assert [r.steps for r in single.results] == [0, 0]


def test_kernel_response_distance():
    from ttasr.degradations import bicubic_kernel, gaussian_kernel, response_distance

    b = bicubic_kernel(4)
    assert response_distance(b, b, 4) == 0.0
    assert response_distance(bicubic_kernel(4, shift=0.0), b, 4) < 0.01  # where a kernel is centred does not count
    assert response_distance(b * 3, b, 4) == 0.0  # nor its scale
    gauss = [response_distance(gaussian_kernel(21, s), b, 4) for s in (0.5, 1.0, 1.35, 2.0, 3.0)]
    assert min(gauss) > 0.05  # no Gaussian blur passes for bicubic at the default tolerance
    assert gauss[0] > gauss[1] > gauss[2] < gauss[3] < gauss[4]
    g = gaussian_kernel(21, 1.0)
    assert response_distance(g, b, 4) == pytest.approx(response_distance(b, g, 4))
