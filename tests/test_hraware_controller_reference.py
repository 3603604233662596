"""The finetuning controller's reference scale (``HRAwareConfig.controller_reference``):
``s = clamp(r − D, 0, r)·(1 + v)`` with ``D = 1 − HQI``, so that with a distance whose
pretraining values are small (the encoder distance) the finetuning ``s`` stays inside the
range the reconstructor was pretrained on. ``r = 1`` is the paper's ``HQI·(1 + v)``."""

from __future__ import annotations

import pytest
import torch

import ttasr
from ttasr.errors import InputError
from ttasr.methods.hraware import LRReconstructionNetwork, pretrain_reconstructor
from ttasr.methods.hraware import adapter as adapter_module
from ttasr.methods.hraware.adapter import ENCODER_REFERENCE
from ttasr.methods.hraware.hqi import controller
from hraware_tiny import TINY_NET, one_thread  # noqa: F401 - one_thread is an autouse fixture

FAST = {"batch_size": 2, "patch_size": 16, "progress": False, "hqi_distance": "encoder", "device": "cpu"}


def test_reference_one_is_the_papers_controller():
    hqi = torch.tensor([0.0, 0.3, 0.97, 1.0])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(controller(hqi, "finetuning", 5, g1, reference=1.0),
                               controller(hqi, "finetuning", 5, g2))


def test_reference_maps_the_distance_into_the_pretraining_range():
    hqi = torch.tensor([1.0, 0.98, 0.95, 0.9, 0.5])  # D = 0, 0.02, 0.05, 0.1, 0.5
    s = controller(hqi, "finetuning", 3, noise=0.0, reference=0.1)
    torch.testing.assert_close(s[:, 0], torch.tensor([0.1, 0.08, 0.05, 0.0, 0.0]))
    assert s.max() <= 0.1 + 1e-7  # never beyond r (before the noise)
    # closer to Up(y) (higher HQI) still means a stronger degradation, as in the paper
    assert torch.all(s[:-1, 0] >= s[1:, 0])


def test_reference_does_not_touch_the_pretraining_form():
    hqi = torch.tensor([0.9, 0.2])
    torch.testing.assert_close(controller(hqi, "pretraining", 2, noise=0.0, reference=0.1),
                               controller(hqi, "pretraining", 2, noise=0.0))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_reference_must_lie_in_the_unit_interval(bad):
    with pytest.raises(InputError, match="reference"):
        controller(torch.tensor([0.5]), "finetuning", 2, reference=bad)


def _pretrain(tmp_path, tiny_file, name: str) -> LRReconstructionNetwork:
    hr = [torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    out = tmp_path / name
    r = pretrain_reconstructor(hr, 2, output=out, network=TINY_NET, max_steps=2, batch_size=2, hr_patch=16,
                               hqi_distance="encoder", progress=False, device="cpu",
                               established_encoder=f"sr-trunk:{tiny_file}")
    return r.network


def test_pretraining_records_the_mean_control(tmp_path, tiny_file):
    net = _pretrain(tmp_path, tiny_file, "rec.safetensors")
    c = net.metadata["final_control"]
    assert 0 <= c <= 1
    assert LRReconstructionNetwork.load(tmp_path / "rec.safetensors").metadata["final_control"] == c


def _controls(a, photo, monkeypatch):
    seen = []
    original = adapter_module.controller

    def spy(hqi, stage, d, generator=None, **kw):
        s = original(hqi, stage, d, generator, **kw)
        seen.append((hqi, kw.get("reference"), s))
        return s

    monkeypatch.setattr(adapter_module, "controller", spy)
    a.fit(photo)
    return seen


def test_auto_reference_is_the_recorded_pretraining_control(tmp_path, tiny_file, photo, monkeypatch):
    net = _pretrain(tmp_path, tiny_file, "rec.safetensors")
    net.metadata["final_control"] = 0.2
    a = ttasr.HRAware(tiny_file, reconstructor=net, max_steps=2, controller_reference="auto", **FAST)
    seen = _controls(a, photo, monkeypatch)
    assert len(seen) == 2 and all(ref == 0.2 for _, ref, _ in seen)
    for hqi, _, s in seen:  # s = clamp(0.2 − (1 − HQI), 0, 0.2)·(1 + v), |v| <= 0.1
        assert s.max() <= 0.2 * 1.1 + 1e-6 and s.min() >= 0
    assert a.describe()["controller_reference"] == "0.2"


def test_auto_reference_without_a_record_and_a_given_one(tmp_path, tiny_file, photo, monkeypatch):
    net = _pretrain(tmp_path, tiny_file, "rec.safetensors")
    del net.metadata["final_control"]
    a = ttasr.HRAware(tiny_file, reconstructor=net, max_steps=1, controller_reference="auto", **FAST)
    assert all(ref == ENCODER_REFERENCE for _, ref, _ in _controls(a, photo, monkeypatch))
    b = ttasr.HRAware(tiny_file, reconstructor=net, max_steps=1, controller_reference=1.0, **FAST)  # the paper's
    assert all(ref == 1.0 for _, ref, _ in _controls(b, photo, monkeypatch))
    default = ttasr.HRAware(tiny_file, reconstructor=net, max_steps=1, **FAST)  # 'auto'
    assert all(ref == ENCODER_REFERENCE for _, ref, _ in _controls(default, photo, monkeypatch))
    assert a.run_id_parts(None) != b.run_id_parts(None)  # the reference is part of the run id
