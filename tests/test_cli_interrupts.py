"""Ctrl-C and SIGTERM in the CLI keep what is done: exit 130/143, finished images written,
the adapted weights saved. Signals are sent to this process from inside the work."""

from __future__ import annotations

import importlib
import os
import signal

import numpy as np
import pytest
import spandrel
import torch
from PIL import Image

import ttasr
from ttasr.cli import main
from ttasr.methods.internal.adapter import InternalLearning


@pytest.fixture
def pngs(tmp_path, photo):
    """Four crops of the photo, of different sizes so that outputs can be told apart."""
    folder = tmp_path / "in"
    folder.mkdir()
    img = (photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    paths = []
    for i, side in enumerate((40, 48, 56, 64)):
        path = folder / f"img{i}.png"
        Image.fromarray(np.ascontiguousarray(img[:side, :side])).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def sigterm_ignored():
    """Without the CLI's handler a SIGTERM to this process would end pytest: ignore it
    unless the code under test installs its own."""
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGTERM, previous)


def _adapt(pngs, tiny_file, tmp_path, *extra):
    return main(["-q", "adapt", *map(str, pngs), "-m", str(tiny_file), "--method", "internal",
                 "-o", str(tmp_path / "out"), "--save-model", str(tmp_path / "adapted.safetensors"),
                 "--max-steps", "4", "--batch-size", "2", "--patch-size", "12", "--progress", "false",
                 "--device", "cpu", "--checkpoint-dir", str(tmp_path / "states"), "--set", "lr=0.001", *extra])


def _sr(model_file, image_file):
    return ttasr.enhance(str(model_file), image_file).astype(int)


def _assert_written_by(out_file, model_file, image_file):
    got = np.asarray(Image.open(out_file)).astype(int)
    assert np.abs(got - _sr(model_file, image_file)).max() <= 1


def _send_during_training(monkeypatch, signum, at_batch):
    """Send ``signum`` to this process while the ``at_batch``-th batch is drawn."""
    original = InternalLearning.sample_batch
    drawn = []

    def sample_batch(self, generator):
        drawn.append(1)
        if len(drawn) == at_batch:
            os.kill(os.getpid(), signum)
        return original(self, generator)

    monkeypatch.setattr(InternalLearning, "sample_batch", sample_batch)


def _send_before_image(monkeypatch, signum, image):
    """Interrupt outside the training loop, as image ``image`` is being prepared."""
    original = InternalLearning.prepare

    def prepare(self, group, student):
        if group.indices == [image]:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # what Python's own SIGINT handler raises here
            os.kill(os.getpid(), signum)
        return original(self, group, student)

    monkeypatch.setattr(InternalLearning, "prepare", prepare)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_single_mode_interrupted_in_training_writes_what_was_adapted(
        signum, tiny_file, pngs, tmp_path, monkeypatch, sigterm_ignored):
    _send_during_training(monkeypatch, signum, at_batch=2)  # during image 0 of 2
    assert _adapt(pngs[:2], tiny_file, tmp_path, "--mode", "single") == 128 + signum
    [written] = (tmp_path / "out").iterdir()
    assert written.name == "img0_internal.png"
    # the model was saved under the name a full run gives image 0, with the weights after 2 steps
    [saved] = tmp_path.glob("adapted*.safetensors")
    assert saved.name == "adapted-000.safetensors"
    _assert_written_by(written, saved, pngs[0])
    assert np.abs(_sr(saved, pngs[0]) - _sr(tiny_file, pngs[0])).mean() > 0.5
    assert spandrel.ModelLoader().load_from_file(saved).scale == 2
    # the interrupted run left its state for --resume
    assert len(list((tmp_path / "states").glob("*.state.safetensors"))) == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_single_mode_interrupted_between_images_writes_the_finished_ones(
        signum, tiny_file, pngs, tmp_path, monkeypatch, sigterm_ignored):
    _send_before_image(monkeypatch, signum, image=2)  # images 0 and 1 are done
    assert _adapt(pngs[:3], tiny_file, tmp_path, "--mode", "single") == 128 + signum
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["img0_internal.png", "img1_internal.png"]
    saved = sorted(p.name for p in tmp_path.glob("adapted*.safetensors"))
    assert saved == ["adapted-000.safetensors", "adapted-001.safetensors"]
    for i in range(2):
        _assert_written_by(tmp_path / "out" / written[i], tmp_path / saved[i], pngs[i])


def test_multi_mode_sigterm_keeps_the_best_weights_and_writes_every_image(
        tiny_file, pngs, tmp_path, monkeypatch, sigterm_ignored):
    _send_during_training(monkeypatch, signal.SIGTERM, at_batch=2)
    assert _adapt(pngs[:2], tiny_file, tmp_path) == 143
    saved = tmp_path / "adapted.safetensors"
    for i in range(2):
        _assert_written_by(tmp_path / "out" / f"img{i}_internal.png", saved, pngs[i])
    # two steps ran (the signal lands in the second one, which finishes)
    expected = ttasr.create_adapter("internal", str(tiny_file), max_steps=2, batch_size=2, patch_size=12,
                                    progress=False, lr=0.001, device="cpu").fit(pngs[:2])
    got = spandrel.ModelLoader().load_from_file(saved).model.state_dict()
    for name, tensor in expected.adapted_model().module.state_dict().items():
        assert torch.equal(got[name], tensor), name


def _stop_at_image(monkeypatch, stop):
    """``stop()`` while the third image is super-resolved."""
    # the module, not the function `ttasr.inference.enhance` that shadows its name
    enhance_module = importlib.import_module("ttasr.inference.enhance")
    original = enhance_module._enhance_placed
    seen = []

    def enhance_placed(*args, **kwargs):
        seen.append(1)
        if len(seen) == 3:
            stop()
        return original(*args, **kwargs)

    monkeypatch.setattr(enhance_module, "_enhance_placed", enhance_placed)


def _enhance(pngs, tiny_file, tmp_path):
    return main(["-q", "enhance", *map(str, pngs), "-m", str(tiny_file), "-o", str(tmp_path / "out"),
                 "--tile", "0"])


def test_enhance_ctrl_c_keeps_the_images_done(tiny_file, pngs, tmp_path, monkeypatch):
    def ctrl_c():
        raise KeyboardInterrupt

    _stop_at_image(monkeypatch, ctrl_c)
    assert _enhance(pngs, tiny_file, tmp_path) == 130
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["img0_x2.png", "img1_x2.png"]  # no partial third file either
    for i in range(2):
        _assert_written_by(tmp_path / "out" / written[i], tiny_file, pngs[i])


def test_enhance_sigterm_keeps_the_images_done_and_exits_143(tiny_file, pngs, tmp_path, monkeypatch,
                                                            sigterm_ignored, capsys):
    _stop_at_image(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert _enhance(pngs, tiny_file, tmp_path) == 143
    assert "interrupted (SIGTERM)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0_x2.png", "img1_x2.png"]
    # the CLI's handler is gone again once main returns
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN


def test_sigterm_before_any_work_exits_143(tiny_file, pngs, tmp_path, monkeypatch, sigterm_ignored):
    from ttasr import models

    def load_model(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM should have stopped the command")

    monkeypatch.setattr(models, "load_model", load_model)
    monkeypatch.setattr(ttasr, "load_model", load_model)
    assert _enhance(pngs, tiny_file, tmp_path) == 143
