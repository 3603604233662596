"""HR-aware finetuning (`ttasr.HRAware`): only the SR model trains, the controller is the
finetuning one, resume is bit-exact, and the established encoder must be the one the
reconstructor was pretrained with. Tiny networks, tiny reconstructors."""

from __future__ import annotations

import numpy as np
import pytest
import spandrel
import torch
from PIL import Image

import ttasr
from ttasr.adapters import Callback
from ttasr.cli import main
from ttasr.errors import CheckpointError, InputError
from ttasr.methods.hraware import LRReconstructionNetwork, pretrain_reconstructor
from ttasr.methods.hraware import adapter as adapter_module
from hraware_tiny import TINY_NET, one_thread  # noqa: F401 - one_thread is an autouse fixture

FAST = dict(batch_size=2, patch_size=16, progress=False, hqi_distance="encoder", device="cpu")



def _pretrain(tmp_path, name: str, **kw) -> object:
    hr = [torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    out = tmp_path / name
    pretrain_reconstructor(hr, 2, output=out, network=TINY_NET, max_steps=2, batch_size=2, hr_patch=16,
                           hqi_distance="encoder", progress=False, device="cpu", **kw)
    return out


@pytest.fixture
def rec_file(tmp_path, tiny_file):
    """A tiny x2 reconstructor pretrained with the tiny Compact's trunk as E_c (by file)."""
    return _pretrain(tmp_path, "rec.safetensors", established_encoder=f"sr-trunk:{tiny_file}")


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_only_the_sr_model_is_trained(tiny_file, rec_file, photo):
    a = ttasr.HRAware(tiny_file, reconstructor=rec_file, max_steps=3, lr=1e-3, **FAST)
    net = a.reconstructor
    before_net = _state(net)
    a.fit(photo)
    enc = a.encoder
    assert enc is not None and enc.spec.startswith("sr-trunk:")
    assert _equal(_state(net), before_net)  # the reconstructor, φ, ψ included, bit-exactly
    assert _equal(_state(enc), _state(ttasr.methods.hraware.SRTrunkEncoder(ttasr.load_model(tiny_file))))
    assert all(not p.requires_grad for p in [*net.parameters(), *enc.parameters()])
    original = ttasr.load_model(tiny_file).module.state_dict()
    adapted = a.adapted_model().module.state_dict()
    assert not _equal(adapted, original)  # the SR weights changed
    assert a.results[0].steps == 3 and a.config.ema_decay == 0.999


def test_returns_a_twentieth_of_the_finetuning_by_default_and_all_of_it_with_the_paper_preset(tiny_file, rec_file,
                                                                                            photo):
    settings = dict(reconstructor=rec_file, max_steps=3, lr=1e-3, ema_decay=None, seed=1, **FAST)
    part = ttasr.HRAware(tiny_file, **settings).fit(photo)
    whole = ttasr.HRAware(tiny_file, preset="paper", **settings).fit(photo)
    assert (part.config.blend, whole.config.blend) == (0.05, 1.0)
    assert part.config.replace(blend=1.0) == whole.config  # the preset differs in the blend only
    start = ttasr.load_model(tiny_file).module.state_dict()
    full, got = whole.adapted_model().module.state_dict(), part.adapted_model().module.state_dict()
    assert not _equal(full, start)
    for k, v in got.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, start[k] + 0.05 * (full[k] - start[k]), rtol=1e-5, atol=1e-7)


def test_controller_is_the_finetuning_one_and_far_is_added(tiny_file, rec_file, photo, monkeypatch):
    calls = []
    original = adapter_module.controller

    def spy(hqi, stage, d, generator=None, **kw):
        s = original(hqi, stage, d, generator, **kw)
        calls.append((stage, hqi, s))
        return s

    monkeypatch.setattr(adapter_module, "controller", spy)
    a = ttasr.HRAware(tiny_file, reconstructor=rec_file, max_steps=2, controller_reference=1.0, **FAST)  # eq. 8 as is
    far_terms = []
    regularizer = a.regularizer
    a.regularizer = lambda sr, f: far_terms.append(regularizer(sr, f)) or far_terms[-1]  # type: ignore[method-assign]
    a.fit(photo)
    assert len(calls) == 2 and all(stage == "finetuning" for stage, _, _ in calls)
    for _, hqi, s in calls:  # s = HQI·(1 + v), |v| <= 0.1, one row per crop
        assert s.shape == (2, 8) and 0 <= hqi.min() and hqi.max() <= 1
        ratio = s / hqi[:, None]
        assert ratio.min() >= 0.9 - 1e-6 and ratio.max() <= 1.1 + 1e-6
    assert all(t is not None and t.item() > 0 for t in far_terms)
    assert a._far_weight == 0.01  # the λ the reconstructor was pretrained with


def test_resumes_bit_exactly(tiny_file, rec_file, photo, tmp_path):
    cfg = dict(FAST, max_steps=6, lr=1e-3, ema_decay=0.9, checkpoint_every=2, checkpoint_dir=str(tmp_path / "s"))
    full = ttasr.HRAware(tiny_file, reconstructor=rec_file, **cfg).fit(photo)

    class Stop(Callback):
        def on_step(self, adapter, step, loss):
            if step == 3:
                raise KeyboardInterrupt

    cut = ttasr.HRAware(tiny_file, reconstructor=rec_file, **cfg).fit(photo, callbacks=[Stop()])
    assert cut.interrupted
    ran: list[int] = []
    steps = type("Steps", (Callback,), {"on_step": lambda self, a, s, l: ran.append(s)})()
    resumed = ttasr.HRAware(tiny_file, reconstructor=rec_file, **cfg).fit(photo, resume=True, callbacks=[steps])
    assert ran == [3, 4, 5, 6]  # from the step-2 checkpoint
    assert _equal(resumed.adapted_model().module.state_dict(), full.adapted_model().module.state_dict())


def test_another_established_encoder_is_refused(tmp_path, tiny_compact, tiny_span, tiny_file, photo):
    # pretrained with the trunk of a model given as an object: it cannot be loaded again later
    rec = _pretrain(tmp_path, "rec-obj.safetensors", established_encoder="sr-trunk", sr_model=tiny_compact)
    ttasr.HRAware(tiny_compact, reconstructor=rec, max_steps=1, **FAST).fit(photo)  # the same model: its own trunk
    with pytest.raises(CheckpointError, match="FAR needs the established encoder.*far=False"):
        ttasr.HRAware(tiny_span, reconstructor=rec, max_steps=1, **FAST).fit(photo)
    ttasr.HRAware(tiny_span, reconstructor=rec, max_steps=1, far=False, **FAST).fit(photo)  # without FAR: fine
    # the pretraining model's file given: its trunk is E_c, whatever model is adapted
    a = ttasr.HRAware(tiny_span, reconstructor=rec, max_steps=1, encoder_weights=str(tiny_file), **FAST).fit(photo)
    assert a.encoder is not None and "Compact" in a.encoder.spec
    with pytest.raises(CheckpointError, match="is not the encoder"):
        ttasr.HRAware(tiny_compact, reconstructor=rec, max_steps=1, established_encoder="timm:resnet10t",
                      **FAST).fit(photo)


def test_a_reconstructor_without_a_record_needs_far_off(tmp_path, tiny_compact, photo):
    torch.manual_seed(0)
    path = LRReconstructionNetwork(scale=2, **TINY_NET).save(tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="does not record the established encoder"):
        ttasr.HRAware(tiny_compact, reconstructor=path, max_steps=1, **FAST).fit(photo)
    a = ttasr.HRAware(tiny_compact, reconstructor=path, max_steps=1, far=False, **FAST).fit(photo)
    assert a.describe()["far"] == "False" and a.describe()["hqi_distance"] == "encoder"


def test_scale_and_learning_rate(tmp_path, tiny_compact, rec_file):
    torch.manual_seed(0)
    x4 = LRReconstructionNetwork(scale=4, **TINY_NET)
    with pytest.raises(InputError, match="is for x4, the model is x2"):
        ttasr.HRAware(tiny_compact, reconstructor=x4).reconstructor  # noqa: B018
    a = ttasr.HRAware(tiny_compact, reconstructor=rec_file)
    assert a.learning_rate == 5e-5 and a.config.max_steps == 500 and a.config.stopping == "fixed"
    a.model.architecture = "ESRGAN"
    assert a.learning_rate == 1e-5
    a.model.architecture = "SwinIR"
    assert a.learning_rate == 2e-5
    assert ttasr.HRAware(tiny_compact, reconstructor=rec_file, lr=3e-4).learning_rate == 3e-4
    assert isinstance(ttasr.create_adapter("hr-aware", tiny_compact), ttasr.HRAware)


def test_saved_checkpoint_records_the_method(tiny_file, rec_file, photo, tmp_path):
    a = ttasr.HRAware(tiny_file, reconstructor=str(rec_file), max_steps=1, **FAST).fit(photo)
    [path] = a.save(tmp_path / "adapted.safetensors")
    meta = ttasr.load_model(path).metadata
    assert meta["ttasr_method"] == "hraware" and meta["hqi_distance"] == "encoder"
    assert meta["established_encoder"].startswith("sr-trunk:") and meta["reconstructor"] == str(rec_file)
    assert meta["far"] == "True" and meta["controller"] == "True"


def test_cli_adapts_with_hraware(tiny_file, rec_file, photo, tmp_path):
    png = tmp_path / "in.png"
    Image.fromarray((photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(png)
    out, ckpt = tmp_path / "out", tmp_path / "adapted.safetensors"
    rc = main(["-q", "adapt", str(png), "-m", str(tiny_file), "--method", "hraware", "--reconstructor",
               str(rec_file), "-o", str(out), "--max-steps", "2", "--batch-size", "2", "--patch-size", "16",
               "--hqi-distance", "encoder", "--progress", "false", "--device", "cpu", "--save-model", str(ckpt)])
    assert rc == 0
    [written] = out.glob("*.png")
    assert written.name == "in_hraware.png" and Image.open(written).size == (192, 192)
    assert spandrel.ModelLoader().load_from_file(ckpt).scale == 2


def test_heldout_selection_is_refused_with_the_reason(tiny_file, rec_file, photo):
    a = ttasr.HRAware(tiny_file, reconstructor=rec_file, max_steps=2, stopping="heldout", **FAST)
    with pytest.raises(InputError, match="HRAware has no held-out pairs: use another stopping rule"):
        a.fit(photo)
