"""The no-reference selection rules (held-out pairs, back-projection consistency)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

import ttasr
from ttasr.adapters import stopping
from ttasr.adapters.stopping import (
    BackProjection,
    GuardedFallback,
    GuardedHeldOut,
    HeldOutPairs,
    holdout_mask,
)
from ttasr.degradations import degrade_with_kernel, gaussian_kernel

FAST = dict(batch_size=2, patch_size=16, progress=False, attention="none", augment=False, ema_decay=None)


@pytest.fixture
def blurred(photo):
    """The photo blurred (sigma 1.5) and subsampled x2: a blur the tiny model does not undo."""
    k = gaussian_kernel(11, 1.5)
    big = torch.nn.functional.interpolate(photo, scale_factor=2, mode="bicubic").clamp(0, 1)
    return degrade_with_kernel(big, k, 2), k


def test_holdout_mask_holds_out_one_square_in_every():
    m = holdout_mask(64, 64, 8, 8)
    assert m.shape == (1, 1, 64, 64) and float(1 - m.mean()) == pytest.approx(1 / 8)
    squares = (1 - m)[0, 0].reshape(8, 8, 8, 8).permute(0, 2, 1, 3).reshape(64, 64)
    assert set(squares.sum(1).tolist()) <= {0.0, 64.0}  # whole squares


@pytest.mark.parametrize("rule", ["heldout", "consistency", "heldout-guarded", "guarded-fallback"])
def test_picks_a_late_step_where_training_helps(tiny_compact, blurred, rule, caplog):
    lr, k = blurred
    with caplog.at_level("WARNING", logger="ttasr"):
        a = ttasr.AdaSSR(tiny_compact, stopping=rule, kernel_estimator="given", kernel=k, lr=3e-3, max_steps=60,
                         eval_every=20, **FAST).fit(lr)
    r = a.results[0]
    scores = [h["score"] for h in r.history if "score" in h]
    assert len(scores) == 4 and r.best_step >= 40, scores
    assert "kept the unadapted weights" not in caplog.text
    assert scores[-1] < scores[0]


@pytest.mark.parametrize("rule", ["heldout", "heldout-guarded", "guarded-fallback"])
def test_picks_the_start_where_training_only_hurts(tiny_compact, blurred, rule, caplog):
    lr, k = blurred
    with caplog.at_level("WARNING", logger="ttasr"):
        a = ttasr.AdaSSR(tiny_compact, stopping=rule, kernel_estimator="given", kernel=k, lr=0.5, max_steps=20,
                         eval_every=10, **FAST).fit(lr)
    r = a.results[0]
    assert r.best_step == 0 and r.final_weights is not None
    assert f"the '{rule}' rule kept the unadapted weights for image(s) 0" in caplog.text  # users are told
    start = tiny_compact.model.state_dict()
    assert all(torch.equal(v, start[k]) for k, v in a.adapted_model().module.state_dict().items())


def test_heldout_with_blend_adapts_where_training_helps_and_keeps_the_start_where_it_only_hurts(
        tiny_compact, blurred):
    lr, k = blurred
    start = tiny_compact.model.state_dict()
    # AdaSSR's default selection with a given kernel (held-out pairs guarded by back-projection, 1 % margin,
    # EMA 0.99, blend 'auto': half of weights the guard accepts in multi-image mode), a higher lr for a tiny model
    helps = dict(kernel=k, lr=3e-3, max_steps=60, eval_every=20, **FAST)
    blended = ttasr.AdaSSR(tiny_compact, **helps).fit(lr)
    assert (blended.stopping.name, blended.config.blend, blended.blend_fraction()) == ("guarded-fallback", "auto", 0.5)
    assert (blended.results[0].blend, blended.results[0].blend_space) == (0.5, "outputs")
    full = ttasr.AdaSSR(tiny_compact, **helps, blend=1.0).fit(lr)
    assert blended.results[0].best_step == full.results[0].best_step >= 40
    # half of the adapted network's output, half of the pretrained one's
    pretrained = ttasr.load_model(tiny_compact)
    torch.testing.assert_close(blended.adapted_model()(lr), 0.5 * pretrained(lr) + 0.5 * full.adapted_model()(lr),
                               rtol=1e-5, atol=1e-6)
    weights = ttasr.AdaSSR(tiny_compact, **helps, blend_space="weights").fit(lr)
    adapted, part = full.adapted_model().module.state_dict(), weights.adapted_model().module.state_dict()
    for name, v in part.items():
        torch.testing.assert_close(v, start[name] + 0.5 * (adapted[name] - start[name]), rtol=1e-5, atol=1e-7)
    hurts = ttasr.AdaSSR(tiny_compact, **dict(helps, lr=0.5, max_steps=20, eval_every=10)).fit(lr)
    assert hurts.results[0].best_step == 0
    assert all(torch.equal(v, start[name]) for name, v in hurts.adapted_model().module.state_dict().items())


def test_the_blend_check_returns_the_largest_blend_no_worse_than_the_start_on_the_held_out_pairs(
        tiny_compact, blurred, monkeypatch):
    lr, k = blurred
    helps = dict(kernel=k, lr=3e-3, max_steps=60, eval_every=20, **FAST)
    a = ttasr.AdaSSR(tiny_compact, **helps).fit(lr)
    r = a.results[0]
    assert r.blend_checked == r.blend == 0.5  # the accepted weights' half beats the start on the held-out pairs
    group = ttasr.adapters.ImageGroup([None], [0], [lr])
    start = {n: v.clone() for n, v in tiny_compact.model.state_dict().items()}
    wrecked = {n: v + 0.5 * torch.randn_like(v) if v.is_floating_point() else v for n, v in start.items()}
    assert a.checked_blend(dataclasses.replace(r, weights=wrecked), group) == 0.0  # no blend passes: the start
    # the held-out error of a blend, scripted: ×0.5 worse than the start, ×0.2 no worse
    errors = iter([1.0, 1.2, 0.9])  # the start, ×0.5, ×0.2
    monkeypatch.setattr(stopping.HeldOutPairs, "score", lambda self, adapter, network, group: next(errors))
    assert a.checked_blend(r, group) == 0.2
    assert a.blend_fraction(dataclasses.replace(r, blend_checked=0.2)) == 0.2  # 'auto' takes the checked blend
    assert ttasr.AdaSSR(tiny_compact, kernel=k, blend_check=False).checked_blend(r, group) is None
    assert ttasr.AdaSSR(tiny_compact, kernel=k, blend=0.5).checked_blend(r, group) is None  # a blend of yours
    assert a.checked_blend(dataclasses.replace(r, best_step=0), group) is None  # nothing selected


def test_heldout_targets_are_never_trained_on(tiny_compact, blurred):
    lr, k = blurred
    a = ttasr.AdaSSR(tiny_compact, stopping="heldout", kernel_estimator="given", kernel=k, max_steps=1, **FAST)
    a.fit(lr)
    mask = a.holdout_masks[0]
    assert a.sampler.weights[0] is not None and torch.equal(a.sampler.weights[0], mask)
    batch = a.sample_batch(torch.Generator().manual_seed(0))
    assert float(batch.weights.min()) == 0.0  # held-out squares reach the loss with weight 0
    [(inp, target, held)] = a.validation_pairs(a_group := ttasr.adapters.ImageGroup([None], [0], [lr]))
    assert torch.equal(held, 1 - mask[..., : target.shape[-2], : target.shape[-1]]) and a_group.indices == [0]


@pytest.mark.parametrize("rule", ["heldout", "consistency", "heldout-guarded", "guarded-fallback"])
def test_rules_are_deterministic_under_a_seed(tiny_compact, blurred, rule):
    lr, _ = blurred
    runs = [ttasr.AdaSSR(tiny_compact, stopping=rule, lr=1e-3, max_steps=6, eval_every=3, seed=5, **FAST).fit(lr)
            for _ in range(2)]
    h0, h1 = ([h.get("score") for h in r.results[0].history] for r in runs)
    assert h0 == h1 and runs[0].results[0].best_step == runs[1].results[0].best_step


def test_min_gain_and_patience():
    rule = HeldOutPairs(min_gain=0.1, patience=2)
    scores = [1.0]
    best = 1.0
    picks = []
    for s in (0.95, 0.85, 0.84, 0.86):
        scores.append(s)
        if rule.improves(s, best, scores):
            best = s
            picks.append(len(scores) - 1)
        if rule.should_stop(scores):
            break
    assert picks == [2] and len(scores) == 5  # 0.95 gains < 10 % of 1.0; stop 2 evals after step 2
    assert BackProjection().improves(0.5, 0.6, [0.6, 0.5])


def test_guard_vetoes_weights_that_explain_the_lr_worse_than_the_start(monkeypatch):
    """Scripted scores: the held-out error falls at every evaluation, but the weights of the
    second evaluation explain the real LR worse than the start, so they cannot win."""
    errors = iter([1.0, 1.0, 0.9, 1.2, 0.95])  # back-projection: begin (the start), then evaluations 0-3
    heldout = iter([1.0, 0.9, 0.5, 0.8])
    monkeypatch.setattr(stopping, "back_projection_error", lambda *args: next(errors))
    monkeypatch.setattr(HeldOutPairs, "score", lambda *args: next(heldout))
    monkeypatch.setattr(HeldOutPairs, "prepare", lambda *args: None)
    rule = GuardedHeldOut(min_gain=0.01)
    rule.prepare(None, None)
    with pytest.raises(RuntimeError, match="before begin"):
        rule.score(None, None, None)
    rule.begin(None, None, None)
    scores, picks = [rule.score(None, None, None)], []
    best = scores[0]
    for k in range(1, 4):
        scores.append(rule.score(None, None, None))
        if rule.improves(scores[-1], best, scores):
            best, picks = scores[-1], picks + [k]
    assert picks == [1, 3] and best == 0.8  # 0.5 (evaluation 2) had back-projection 1.2 > 1.0


def _scripted_picks(monkeypatch, errors, heldout, fresh_each=False):
    """The evaluations a :class:`GuardedFallback` selects on scripted back-projection errors
    (``begin``'s, then one per evaluation, the start's first) and held-out errors, as the loop
    calls it; ``fresh_each``: a new rule judges every evaluation, as after a resume."""
    errors, heldout = iter(errors), iter(heldout)
    monkeypatch.setattr(stopping, "back_projection_error", lambda *args: next(errors))
    monkeypatch.setattr(HeldOutPairs, "score", lambda *args: next(heldout))
    monkeypatch.setattr(HeldOutPairs, "prepare", lambda *args: None)
    rule = GuardedFallback(min_gain=0.01)
    rule.prepare(None, None)
    rule.begin(None, None, None)
    scores = [rule.score(None, None, None)]
    best, picks = scores[0], [0]
    for k in itertools.count(1):
        try:
            scores.append(rule.score(None, None, None))
        except StopIteration:
            break
        judge = GuardedFallback(min_gain=0.01) if fresh_each else rule
        if judge.improves(scores[-1], best, scores):
            best, picks = scores[-1], picks + [k]
    return picks, best


def test_guarded_fallback_takes_the_heldout_pick_only_while_the_guard_accepts_nothing(monkeypatch):
    # every evaluation explains the LR worse than the start (1.0): the held-out rule picks, flagged as rejected
    picks, best = _scripted_picks(monkeypatch, [1.0, 1.0, 1.1, 1.2, 1.3], [1.0, 0.9, 0.8, 0.85])
    assert picks == [0, 1, 2] and not GuardedFallback.accepted(best)
    assert GuardedFallback.held_out_error(best) == pytest.approx(0.8)
    # the guard accepts evaluation 3: it wins over the fallback picks before it, and rejected weights after it
    # cannot win even with a lower held-out error
    picks, best = _scripted_picks(monkeypatch, [1.0, 1.0, 1.1, 1.2, 0.9, 1.3], [1.0, 0.9, 0.8, 0.85, 0.5])
    assert picks == [0, 1, 2, 3] and GuardedFallback.accepted(best) and best == pytest.approx(0.85)
    # accepted weights must beat the start by the margin, not the fallback pick
    picks, _ = _scripted_picks(monkeypatch, [1.0, 1.0, 1.1, 0.9], [1.0, 0.5, 0.995])
    assert picks == [0, 1]
    # the verdict lives in the scores: a rule that has seen nothing before (a resumed run) judges alike
    for errors, held in [([1.0, 1.0, 1.1, 1.2, 1.3], [1.0, 0.9, 0.8, 0.85]),
                         ([1.0, 1.0, 1.1, 1.2, 0.9, 1.3], [1.0, 0.9, 0.8, 0.85, 0.5])]:
        assert _scripted_picks(monkeypatch, errors, held, fresh_each=True) == _scripted_picks(monkeypatch, errors,
                                                                                              held)


@pytest.mark.parametrize("rule", ["heldout-guarded", "guarded-fallback"])
def test_guarded_rule_resumes_with_the_start_as_its_limit(tiny_compact, blurred, tmp_path, rule):
    """A run continued from its saved state selects as the whole run does: the limit is the
    start's back-projection error, measured again from the starting weights on resume."""
    lr, k = blurred
    common = dict(stopping=rule, kernel=k, lr=3e-3, eval_every=10, seed=3, blend=1.0,
                  checkpoint_dir=str(tmp_path), checkpoint_every=10, keep_state=True, **FAST)
    whole = ttasr.AdaSSR(tiny_compact, **dict(common, checkpoint_dir=None, keep_state=False), max_steps=40).fit(lr)
    ttasr.AdaSSR(tiny_compact, **common, max_steps=20).fit(lr)
    resumed = ttasr.AdaSSR(tiny_compact, **common, max_steps=40)
    resumed.fit(lr, resume=True)
    assert resumed.stopping.limit == whole.stopping.limit
    assert resumed.results[0].best_step == whole.results[0].best_step
    assert [h.get("score") for h in resumed.results[0].history] == [h.get("score") for h in whole.results[0].history]


def test_heldout_error_in_l2_is_the_mean_square_of_what_l1_averages(tiny_compact, blurred):
    lr, k = blurred
    a = ttasr.AdaSSR(tiny_compact, stopping="heldout", kernel=k, max_steps=2, eval_every=2, lr=1e-2, **FAST).fit(lr)
    group = ttasr.adapters.ImageGroup([None], [0], [lr])
    net = a.adapted_model().module
    l1, l2 = HeldOutPairs().score(a, net, group), HeldOutPairs(norm="l2").score(a, net, group)
    assert l1 ** 2 <= l2 <= l1  # Jensen; errors of images in [0, 1] are below 1
    [(inp, target, held)] = a.validation_pairs(group)
    with torch.no_grad():
        out = net(inp)
    w = held.expand_as(target)
    assert l2 == pytest.approx(float(((out - target) ** 2 * w).sum() / w.sum()), rel=1e-5)
