"""The speed options of a training step and concurrent adaptation in worker processes.

What they must not change is checked here on the CPU: host reads of the loss every N steps
record the same losses and weights as every step; channels_last gives the same weights up
to rounding; bf16 autocast trains close to float32; workers give each image the result of
the one-at-a-time run.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch

from ttasr import InternalLearning
from ttasr.adapters.speed import training_speed
from ttasr.adapters.stopping import FixedBudget
from ttasr.errors import InputError


def _fit(model, images, **kw):
    cfg = dict(max_steps=6, batch_size=2, patch_size=16, progress=False, seed=3)
    return InternalLearning(model, **{**cfg, **kw}).fit(images)


def _close(a, b, tol):
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a) <= tol


def test_reading_the_loss_every_n_steps_records_every_step_and_changes_nothing(tiny_compact, photo):
    every_step = _fit(tiny_compact, photo, log_every=1).results[0]
    batched = _fit(tiny_compact, photo, log_every=4).results[0]
    assert [h["step"] for h in batched.history] == list(range(1, 7))
    assert [h["loss"] for h in batched.history] == [h["loss"] for h in every_step.history]
    assert all(torch.equal(batched.weights[k], every_step.weights[k]) for k in every_step.weights)


def test_a_non_finite_loss_is_still_caught_when_reads_are_batched(tiny_compact, photo):
    ad = InternalLearning(tiny_compact, max_steps=8, lr=1e30, patch_size=16, batch_size=2, progress=False,
                          log_every=4)
    with pytest.raises(FloatingPointError, match="lower lr"):
        ad.fit(photo)


def test_channels_last_trains_the_same_weights(tiny_compact, photo):
    plain = _fit(tiny_compact, photo).results[0].weights
    cl = _fit(tiny_compact, photo, channels_last=True).results[0].weights
    assert _close(plain, cl, 1e-5)


def test_bf16_autocast_trains_close_to_float32_and_keeps_float32_weights(tiny_compact, photo):
    plain = _fit(tiny_compact, photo, lr=1e-3).results[0].weights
    bf16 = _fit(tiny_compact, photo, lr=1e-3, amp="bf16").results[0].weights
    assert all(v.dtype == torch.float32 for v in bf16.values())
    assert not _close(plain, bf16, 0.0)  # autocast ran: rounding differs
    assert _close(plain, bf16, 5e-3)


def test_speed_settings_resolve_per_device():
    from ttasr.adapters.config import AdapterConfig

    cpu = training_speed(AdapterConfig(), torch.device("cpu"))
    assert (cpu.amp, cpu.channels_last, cpu.compile) == (None, False, False)
    forced = training_speed(AdapterConfig(amp="bf16", channels_last=True, compile=True), torch.device("cpu"))
    assert (forced.amp, forced.channels_last, forced.compile) == (torch.bfloat16, True, True)


def test_compile_wraps_only_the_forward_and_keeps_the_state_dict(tiny_compact, photo, monkeypatch):
    calls = []

    def fake_compile(module):
        calls.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    ad = _fit(tiny_compact, photo, compile=True)
    assert len(calls) == 1
    assert ad.results[0].weights.keys() == tiny_compact.model.state_dict().keys()


def test_workers_give_each_image_the_one_at_a_time_result(tiny_compact, photo):
    images = [photo, photo.flip(-1), photo.transpose(-1, -2).contiguous()]
    one = _fit(tiny_compact, images, mode="single")
    many = _fit(tiny_compact, images, mode="single", workers_per_gpu=2)
    assert [r.image_indices for r in many.results] == [[0], [1], [2]]
    for a, b in zip(one.results, many.results):
        assert _close(a.weights, b.weights, 1e-6)
        assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], abs=1e-6)
    assert len(many.enhance()) == 3


def test_workers_need_single_image_mode_and_no_callbacks(tiny_compact, photo):
    with pytest.raises(InputError, match="single"):
        _fit(tiny_compact, [photo, photo], workers_per_gpu=2)
    from ttasr import Callback

    ad = InternalLearning(tiny_compact, max_steps=2, patch_size=16, batch_size=2, progress=False, mode="single",
                          workers_per_gpu=2)
    with pytest.raises(InputError, match="callbacks"):
        ad.fit([photo, photo], callbacks=[Callback()])


class FailOnSecondImage(FixedBudget):
    """A rule that refuses image 1 (module level, so worker processes can unpickle it)."""

    def prepare(self, adapter, group):
        if group.indices[0] == 1:
            raise InputError("image 1 is bad")


def test_an_error_in_a_worker_is_raised_and_the_images_before_it_are_kept(tiny_compact, photo):
    ad = InternalLearning(tiny_compact, max_steps=3, patch_size=16, batch_size=2, progress=False, mode="single",
                          workers_per_gpu=2, stopping=FailOnSecondImage())
    with pytest.raises(InputError, match="image 1 is bad"):
        ad.fit([photo, photo, photo])
    assert [r.image_indices for r in ad.results] == [[0]]


@pytest.mark.skipif(os.name != "posix", reason="signals")
def test_sigterm_reaches_the_workers_which_keep_their_best_weights(tiny_compact, photo):
    images = [photo] * 4
    ad = InternalLearning(tiny_compact, max_steps=100000, patch_size=16, batch_size=2, progress=False,
                          mode="single", workers_per_gpu=2)
    timer = threading.Timer(20.0, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    t0 = time.monotonic()
    try:
        ad.fit(images)
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 120
    assert ad.interrupted
    assert ad.results, "20 s is enough for a worker to start training"
    assert all(r.interrupted and 0 < r.steps < 100000 for r in ad.results)
