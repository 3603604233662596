"""The shared engine: config validation, run ids and resume, safe state files, interrupts."""

from __future__ import annotations

import logging
import os
import pickle
import signal

import pytest
import torch

import ttasr
from ttasr import AdaSSRConfig, AdapterConfig, InternalLearning, InternalLearningConfig
from ttasr.adapters import Callback, ImageGroup, checkpointing
from ttasr.adapters.stopping import NIQEPlateau
from ttasr.errors import CheckpointError, InputError
from ttasr.pairs import AugmentConfig

FAST = dict(batch_size=2, patch_size=16, progress=False, lr=1e-3)
CONFIGS = [AdapterConfig, InternalLearningConfig, AdaSSRConfig]


# ------------------------------------------------------------------ configs
@pytest.mark.parametrize("cls", CONFIGS)
@pytest.mark.parametrize("field, value, message", [
    ("max_steps", -1, ">= 0"),
    ("max_steps", 2.5, "must be int"),
    ("max_steps", "10", "must be int"),
    ("lr", float("nan"), "finite"),
    ("lr", "1e-4", "must be float"),
    ("lr", None, "must be float"),
    ("batch_size", 0, ">= 1"),
    ("batch_size", True, "must be int"),
    ("ema_decay", 1.0, "< 1"),
    ("proximal_weight", -1e-4, ">= 0"),
    ("checkpoint_every", -5, ">= 0"),
    ("progress", "no", "must be bool"),
    ("mode", "singel", "Did you mean 'single'|Did you mean single"),
    ("stopping", "niqe", "Did you mean niqe-plateau"),
    ("grad_clip", 0.0, "> 0"),
])
def test_every_config_rejects_bad_values_by_name(cls, field, value, message):
    with pytest.raises(InputError, match=message) as info:
        cls(**{field: value})
    assert f"{cls.__name__}.{field}" in str(info.value)


@pytest.mark.parametrize("cls, field, value, message", [
    (InternalLearningConfig, "flips", "no", "must be bool"),
    (InternalLearningConfig, "kernel", [[1, 2], [3]], "kernel must be"),
    (InternalLearningConfig, "kernel", [[1, 2], [3, 4]], "odd size"),
    (AdaSSRConfig, "attention", "featurs", "Did you mean features"),
    (AdaSSRConfig, "kernel_estimator", "bicubc", "Did you mean bicubic"),
    (AdaSSRConfig, "attention_mix", 1.5, "<= 1"),
    (AdaSSRConfig, "attention_model", 3, "str or None"),
    (AdaSSRConfig, "augment_config", "strong", "AugmentConfig"),
    (AugmentConfig, "usm_p", 2.0, "<= 1"),
    (AugmentConfig, "affine_scale", (0.5,), "list"),
    (AugmentConfig, "gaussian_sigma", (0.1, float("inf")), "finite"),
    (AugmentConfig, "dihedral", 1, "must be bool"),
])
def test_method_fields_are_validated(cls, field, value, message):
    with pytest.raises(InputError, match=message):
        cls(**{field: value})


def test_validation_runs_on_replace_and_on_adapters(tiny_compact):
    with pytest.raises(InputError, match="max_steps"):
        AdaSSRConfig().replace(max_steps=-1)
    with pytest.raises(InputError, match="max_steps"):
        ttasr.AdaSSR(tiny_compact, AdaSSRConfig(), max_steps=-1)
    with pytest.raises(InputError, match="Did you mean max_steps"):
        InternalLearningConfig().replace(max_step=3)


def test_configs_are_plain_data_that_round_trip_through_json():
    import json

    c = AdaSSRConfig(kernel=((0.0, 1.0, 0.0),) * 3, augment_config=AugmentConfig(usm_p=0.0), lr=1)
    assert c.lr == 1.0 and isinstance(c.lr, float)
    back = AdaSSRConfig.from_dict(json.loads(c.to_json()))
    assert back == c and back.augment_config.usm_p == 0.0
    assert "progress" not in json.loads(c.to_json(result_only=True))
    k = AdaSSRConfig(kernel=torch.eye(3) / 3).kernel
    assert torch.allclose(torch.tensor(k), torch.eye(3) / 3)


# ------------------------------------------------------------------ run ids and resume
def _run_id(adapter, image):
    adapter._base_hash = adapter.model.weights_hash()
    return adapter._run_id(ImageGroup([None], [0], [image]), "")


def test_run_id_ignores_budget_logging_and_paths_but_not_the_recipe(tiny_compact, photo, tmp_path):
    base = _run_id(InternalLearning(tiny_compact, **FAST), photo)
    for change in (dict(max_steps=7), dict(progress=True), dict(checkpoint_every=3),
                   dict(checkpoint_dir=str(tmp_path)), dict(keep_state=True), dict(device="cpu")):
        assert _run_id(InternalLearning(tiny_compact, **{**FAST, **change}), photo) == base, change
    for change in (dict(lr=2e-3), dict(seed=1), dict(flips=False)):
        assert _run_id(InternalLearning(tiny_compact, **{**FAST, **change}), photo) != base, change
    assert _run_id(InternalLearning(tiny_compact, **FAST), photo.flip(-1)) != base


class _Steps(Callback):
    def __init__(self, stop_at: int | None = None) -> None:
        self.ran: list[int] = []
        self.stop_at = stop_at

    def on_step(self, adapter, step, loss):
        self.ran.append(step)
        if step == self.stop_at:
            raise KeyboardInterrupt


def _state(adapter):
    return {k: v.clone() for k, v in adapter.adapted_model().module.state_dict().items()}


def test_a_longer_budget_resumes_only_the_remaining_steps(tiny_compact, photo, tmp_path):
    cfg = dict(FAST, ema_decay=0.9, checkpoint_every=3, checkpoint_dir=str(tmp_path), keep_state=True)
    full = InternalLearning(tiny_compact, **cfg, max_steps=10).fit(photo)
    InternalLearning(tiny_compact, **cfg, max_steps=6).fit(photo)
    steps = _Steps()
    longer = InternalLearning(tiny_compact, **dict(cfg, progress=True), max_steps=10)
    longer.fit(photo, resume=True, callbacks=[steps])
    assert steps.ran == [7, 8, 9, 10]
    # a fresh optimizer or EMA would give other weights: both came from the file
    assert all(torch.equal(v, _state(full)[k]) for k, v in _state(longer).items())


def test_kept_steps_are_the_weights_a_shorter_budget_ends_with_and_survive_a_resume(tiny_compact, photo, tmp_path):
    cfg = dict(FAST, ema_decay=0.9, checkpoint_dir=str(tmp_path), checkpoint_every=4)
    group = ImageGroup([None], [0], [photo])
    short = InternalLearning(tiny_compact, **cfg, max_steps=3).fit(photo).results[0]
    whole = InternalLearning(tiny_compact, **cfg, max_steps=6)
    full = whole.run_loop(group, keep_steps=(3,))
    assert set(full.kept_weights) == {3}
    assert all(torch.equal(full.kept_weights[3][k], v) for k, v in short.weights.items())
    stopped = InternalLearning(tiny_compact, **cfg, max_steps=6)
    # interrupted at step 5: the state saved at step 4 holds the kept weights
    assert stopped.run_loop(group, [_Steps(stop_at=5)], keep_steps=(3,)).interrupted
    resumed = InternalLearning(tiny_compact, **cfg, max_steps=6)
    steps = _Steps()
    again = resumed.run_loop(group, [steps], resume=True, keep_steps=(3,))
    assert steps.ran == [5, 6] and set(again.kept_weights) == {3}
    assert all(torch.equal(again.kept_weights[3][k], v) for k, v in short.weights.items())


def test_resume_without_a_matching_state_says_so(tiny_compact, photo, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        InternalLearning(tiny_compact, **FAST, max_steps=2, checkpoint_dir=str(tmp_path)).fit(photo, resume=True)
    assert "no saved state matches" in caplog.text


def test_state_is_removed_after_success_unless_kept(tiny_compact, photo, tmp_path):
    cfg = dict(FAST, max_steps=4, checkpoint_every=2, checkpoint_dir=str(tmp_path))
    InternalLearning(tiny_compact, **cfg).fit(photo)
    assert not list(tmp_path.iterdir())
    InternalLearning(tiny_compact, **cfg, keep_state=True).fit(photo)
    assert [p.name.endswith(checkpointing.STATE_SUFFIX) for p in tmp_path.iterdir()] == [True]


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_state_file_is_refused_and_never_executed(tiny_compact, photo, tmp_path):
    marker = tmp_path / "pwned"
    adapter = InternalLearning(tiny_compact, **FAST, max_steps=2, checkpoint_dir=str(tmp_path))
    path = checkpointing.state_path(str(tmp_path), adapter.name, _run_id(adapter, photo))
    path.write_bytes(pickle.dumps({"step": _Planted(str(marker))}))
    torch.save({"step": _Planted(str(marker))}, tmp_path / "also.pt")
    with pytest.raises(CheckpointError, match="not a ttasr training state"):
        adapter.fit(photo, resume=True)
    assert not marker.exists()


# ------------------------------------------------------------------ interrupts
class _Scores(NIQEPlateau):
    def __init__(self, scores):
        super().__init__(min_delta=-1e9, patience=99)
        self.scores = list(scores)

    def prepare(self, adapter, group):
        pass

    def score(self, adapter, network, group):
        return self.scores.pop(0)


def test_ctrl_c_keeps_the_best_scored_weights_not_the_start(tiny_compact, photo):
    cfg = dict(FAST, ema_decay=None, eval_every=2)
    # scores at steps 0, 2, 4, 6: step 4 is best; interrupted at step 7
    cut = InternalLearning(tiny_compact, stopping=_Scores([5.0, 4.0, 1.0, 3.0]), **cfg, max_steps=20)
    cut.fit(photo, callbacks=[_Steps(stop_at=7)])
    r = cut.results[0]
    assert r.interrupted and r.steps == 7 and r.best_step == 4 and r.best_score == 1.0
    at4 = InternalLearning(tiny_compact, **cfg, max_steps=4, stopping="fixed").fit(photo)
    assert all(torch.equal(v, _state(at4)[k]) for k, v in _state(cut).items())
    assert any(not torch.equal(v, tiny_compact.model.state_dict()[k]) for k, v in _state(cut).items())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_finishes_the_step_saves_and_resumes(tiny_compact, photo, tmp_path, signum):
    cfg = dict(FAST, max_steps=8, ema_decay=0.9, checkpoint_dir=str(tmp_path))
    full = InternalLearning(tiny_compact, **cfg).fit(photo)

    class Kill(Callback):
        def on_step(self, adapter, step, loss):
            if step == 3:
                os.kill(os.getpid(), signum)

    cut = InternalLearning(tiny_compact, **cfg).fit(photo, callbacks=[Kill()])
    r = cut.results[0]
    assert r.interrupted and r.signal == signum and r.steps == 3 and cut.interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    steps = _Steps()
    resumed = InternalLearning(tiny_compact, **cfg).fit(photo, resume=True, callbacks=[steps])
    assert steps.ran == [4, 5, 6, 7, 8]
    assert all(torch.equal(v, _state(full)[k]) for k, v in _state(resumed).items())


def test_an_ignored_sigint_stays_ignored(tiny_compact, photo):
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    class Interrupt(Callback):
        def on_step(self, adapter, step, loss):
            if step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    run = InternalLearning(tiny_compact, **dict(FAST, max_steps=4)).fit(photo, callbacks=[Interrupt()])
    assert not run.interrupted and run.results[0].steps == 4
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_single_image_mode_keeps_the_images_done_before_an_interrupt(tiny_compact, photo):
    other = photo.flip(-1)

    class StopSecond(Callback):
        def on_step(self, adapter, step, loss):
            if len(adapter.results) == 1 and step == 2:
                raise KeyboardInterrupt

    a = InternalLearning(tiny_compact, **FAST, max_steps=3, mode="single").fit([photo, other, photo],
                                                                               callbacks=[StopSecond()])
    assert a.interrupted and len(a.results) == 2 and a.fitted_indices == [0, 1]
    assert a.results[1].interrupted and not a.results[0].interrupted
    outs = a.enhance()
    assert isinstance(outs, list) and len(outs) == 2 and outs[0].shape == (1, 3, 192, 192)
