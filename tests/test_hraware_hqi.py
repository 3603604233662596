"""The High-Resolution Quality Indicator and the controller (ttasr.methods.hraware.hqi):
eqs. 7-8 on constructed inputs with stand-in distances, the noise range and seeding,
and how the HQI distance is chosen when LPIPS is or is not available."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from ttasr.errors import InputError
from ttasr.methods.hraware.encoders import SRTrunkEncoder
from ttasr.methods.hraware.hqi import (
    EncoderDistance,
    LPIPSDistance,
    controller,
    high_resolution_quality_indicator,
    resolve_hqi_distance,
    upsample_lr,
)
from ttasr.metrics.files import MetricUnavailableError


# --------------------------------------------------------------------------- eq. 7
def test_hqi_is_one_minus_the_distance_to_the_upsampled_lr_clamped():
    lr, sr = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 8, 8)
    seen = {}

    def distance(a, b):
        seen["a"], seen["b"] = a, b
        return torch.tensor([-0.5, 0.3, 1.7])

    hqi = high_resolution_quality_indicator(sr, lr, distance)
    torch.testing.assert_close(hqi, torch.tensor([1.0, 0.7, 0.0]))
    expected_up = F.interpolate(lr, size=(8, 8), mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(seen["a"], expected_up)  # D(Up(y), x̂)
    assert seen["b"] is sr


def test_hqi_with_a_pixel_distance():
    lr = torch.rand(2, 3, 5, 5)
    up = upsample_lr(lr, (10, 10))
    sr = up.clone()
    sr[1] = (sr[1] + 0.2).clamp(0, 1)

    def l1(a, b):
        return (a - b).abs().mean(dim=(1, 2, 3))

    hqi = high_resolution_quality_indicator(sr, lr, l1)
    assert hqi[0].item() == pytest.approx(1.0)  # the SR output is the upsampled LR: fully degraded
    assert hqi[1].item() == pytest.approx(1 - l1(up[1:], sr[1:]).item())


def test_hqi_checks_its_inputs():
    with pytest.raises(InputError, match="same size"):
        high_resolution_quality_indicator(torch.rand(2, 3, 8, 8), torch.rand(1, 3, 4, 4), lambda a, b: a.mean())
    with pytest.raises(InputError, match="one value per sample"):
        high_resolution_quality_indicator(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 4, 4),
                                          lambda a, b: torch.zeros(3))


# --------------------------------------------------------------------------- eq. 8
def test_controller_formulas_share_the_same_noise():
    hqi = torch.tensor([0.2, 0.9])
    pre = controller(hqi, "pretraining", 16, torch.Generator().manual_seed(3))
    fin = controller(hqi, "finetuning", 16, torch.Generator().manual_seed(3))
    assert pre.shape == fin.shape == (2, 16)
    v_pre = pre / (1 - hqi)[:, None] - 1
    v_fin = fin / hqi[:, None] - 1
    torch.testing.assert_close(v_pre, v_fin)
    assert v_pre.abs().max() <= 0.1 + 1e-6
    # without noise: exactly (1 - HQI) and HQI in every entry
    torch.testing.assert_close(controller(hqi, "pretraining", 4, noise=0.0), (1 - hqi)[:, None].expand(2, 4))
    torch.testing.assert_close(controller(hqi, "finetuning", 4, noise=0.0), hqi[:, None].expand(2, 4))


@pytest.mark.parametrize("noise", [0.1, 0.3])
def test_controller_noise_range(noise):
    s = controller(torch.ones(64), "finetuning", 512, torch.Generator().manual_seed(0), noise=noise)
    v = s - 1
    assert v.min() >= -noise and v.max() <= noise
    assert v.min() < -0.95 * noise and v.max() > 0.95 * noise  # it spans the range
    assert abs(v.mean().item()) < 0.1 * noise  # centred
    assert v.std(dim=1).min() > 0  # independent entries per sample ...
    assert not torch.equal(v[0], v[1])  # ... and per sample


def test_controller_is_deterministic_under_a_seeded_generator():
    hqi = torch.rand(4)
    a = controller(hqi, "finetuning", 8, torch.Generator().manual_seed(7))
    b = controller(hqi, "finetuning", 8, torch.Generator().manual_seed(7))
    c = controller(hqi, "finetuning", 8, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_controller_detaches_hqi_by_default():
    hqi = torch.rand(2, requires_grad=True)
    assert not controller(hqi, "finetuning", 4).requires_grad
    controller(hqi, "finetuning", 4, detach=False).sum().backward()
    assert hqi.grad is not None


def test_controller_errors():
    with pytest.raises(InputError, match="Did you mean finetuning"):
        controller(torch.rand(2), "finetune", 4)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"\(B,\) HQI"):
        controller(torch.rand(2, 1), "finetuning", 4)
    with pytest.raises(InputError, match="noise >= 0"):
        controller(torch.rand(2), "finetuning", 4, noise=-0.1)


# --------------------------------------------------------------------------- distances
@pytest.mark.parametrize("mode", ["spatial", "pooled"])
def test_encoder_distance(tiny_compact, mode):
    dist = EncoderDistance(SRTrunkEncoder(tiny_compact), mode)
    a = torch.rand(2, 3, 16, 16)
    b = torch.stack([a[0], torch.rand(3, 16, 16)])
    d = dist(a, b)
    assert d.shape == (2,)
    assert d[0].item() == pytest.approx(0.0, abs=1e-5)
    assert 0 < d[1].item() <= 1
    assert dist.description.startswith("encoder:sr-trunk:")


def test_resolve_encoder_distance(tiny_compact):
    enc = SRTrunkEncoder(tiny_compact)
    got = resolve_hqi_distance("encoder", encoder=enc)
    assert got.name == "encoder" and isinstance(got.distance, EncoderDistance)
    with pytest.raises(InputError, match="needs encoder="):
        resolve_hqi_distance("encoder")
    with pytest.raises(InputError, match="Did you mean lpips"):
        resolve_hqi_distance("lpip")  # type: ignore[arg-type]


def test_auto_falls_back_to_the_encoder_without_lpips_weights(tiny_compact, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty hub cache
    enc = SRTrunkEncoder(tiny_compact)
    with caplog.at_level(logging.WARNING, logger="ttasr.methods.hraware.hqi"):
        got = resolve_hqi_distance("auto", encoder=enc, allow_download=False)
    assert got.name == "encoder"
    assert "LPIPS is not available" in caplog.text and "alexnet-owt-7be5be79.pth" in caplog.text
    with pytest.raises(MetricUnavailableError, match="alexnet-owt-7be5be79.pth"):
        resolve_hqi_distance("lpips", allow_download=False)
    with pytest.raises(InputError, match="no established encoder to fall back on"):
        resolve_hqi_distance("auto", allow_download=False)


def test_auto_uses_lpips_when_its_backbone_is_given(tmp_path):
    pytest.importorskip("lpips")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    # a random AlexNet trunk in torchvision's layout: enough to build LPIPS offline
    features = torchvision.models.alexnet(weights=None).features
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    got = resolve_hqi_distance("auto", lpips_backbone=path)
    assert got.name == "lpips" and isinstance(got.distance, LPIPSDistance)
    lr = torch.rand(2, 3, 32, 32)
    sr = upsample_lr(lr, (64, 64))
    sr[1] = torch.rand(3, 64, 64)
    hqi = high_resolution_quality_indicator(sr, lr, got.distance)
    assert hqi[0].item() == pytest.approx(1.0, abs=1e-5) and hqi[1].item() < 1.0
