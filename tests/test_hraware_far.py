"""FAR (ttasr.methods.hraware.far) and the established encoders E_c
(ttasr.methods.hraware.encoders): Gram descriptors against direct computations, the
regularizer's value and gradients, and each encoder's behaviour or error messages."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from ttasr.errors import CheckpointError, InputError, MissingDependencyError
from ttasr.methods.hraware.encoders import (
    OpenCLIPEncoder,
    SRTrunkEncoder,
    TimmEncoder,
    create_established_encoder,
)
from ttasr.methods.hraware.far import (
    GramDescriptors,
    feature_alignment_regularizer,
    gram_descriptors,
    gram_matrix,
)
from ttasr.methods.hraware.networks import AlignmentLayers, ImageEncoder
from ttasr.models.features import capture_trunk_features


# --------------------------------------------------------------------------- Gram descriptors
def test_gram_matrix_matches_einsum():
    f = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    g = gram_matrix(f)
    assert g.shape == (3, 4, 4)
    torch.testing.assert_close(g, torch.einsum("bchw,bdhw->bcd", f, f) / 30)
    torch.testing.assert_close(g, g.transpose(1, 2))


def test_gram_descriptors_match_a_loop():
    f = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    avg, mx = gram_descriptors(f)
    for b in range(2):
        flat = f[b].reshape(3, 16)
        for i in range(3):
            row = [float((flat[i] * flat[j]).sum()) / 16 for j in range(3)]
            assert avg[b, i].item() == pytest.approx(sum(row) / 3)
            assert mx[b, i].item() == pytest.approx(max(row))


def test_gram_of_half_precision_is_float32():
    f = torch.full((1, 2, 64, 64), 200.0, dtype=torch.float16)  # 200^2 * 4096 overflows float16
    g = gram_matrix(f)
    assert g.dtype == torch.float32 and torch.isfinite(g).all()
    assert g[0, 0, 0].item() == pytest.approx(40000.0)


def test_gram_shape_error():
    with pytest.raises(InputError, match="B x C x H x W"):
        gram_matrix(torch.randn(3, 4, 5))


# --------------------------------------------------------------------------- FAR
def _identity(n: int) -> nn.Linear:
    lin = nn.Linear(n, n)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(n))
        lin.bias.zero_()
    return lin


def test_far_value_follows_eq_11():
    i = GramDescriptors(torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[3.0, 4.0], [1.0, 1.0]]))
    c = GramDescriptors(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    phi = psi = _identity(2)
    per = feature_alignment_regularizer(i, c, phi, psi, reduction="none")
    torch.testing.assert_close(per, torch.tensor([0.0 + 5.0, 5.0 + 0.0]))
    assert feature_alignment_regularizer(i, c, phi, psi).item() == pytest.approx(5.0)
    sq = feature_alignment_regularizer(i, c, phi, psi, norm="squared", reduction="none")
    torch.testing.assert_close(sq, torch.tensor([12.5, 12.5]))
    with pytest.raises(InputError, match="Did you mean squared"):
        feature_alignment_regularizer(i, c, phi, psi, norm="square")  # type: ignore[arg-type]


def test_far_is_zero_when_aligned_and_positive_otherwise():
    torch.manual_seed(0)
    align = AlignmentLayers(4, 6)
    desc_i = gram_descriptors(torch.randn(2, 4, 5, 5))
    target = align(desc_i)
    desc_c = GramDescriptors(target.avg.detach(), target.max.detach())
    assert feature_alignment_regularizer(desc_i, desc_c, align.phi, align.psi).item() == 0.0
    shifted = GramDescriptors(desc_c.avg + 0.1, desc_c.max)
    assert feature_alignment_regularizer(desc_i, shifted, align.phi, align.psi).item() > 0
    with pytest.raises(InputError, match="φ/ψ must map to E_c's channels"):
        feature_alignment_regularizer(desc_i, gram_descriptors(torch.randn(2, 5, 3, 3)), align.phi, align.psi)


def test_far_gradients_reach_phi_psi_and_e_i_not_a_frozen_e_c(tiny_compact):
    torch.manual_seed(0)
    e_i, align = ImageEncoder(channels=5, blocks=1), AlignmentLayers(5, 8)
    e_c = SRTrunkEncoder(tiny_compact)  # 8 channels
    x = torch.rand(2, 3, 16, 16, requires_grad=True)  # an SR output in finetuning
    loss = feature_alignment_regularizer(gram_descriptors(e_i(x)), e_c.descriptors(x), align.phi, align.psi)
    assert loss.item() > 0
    loss.backward()
    for module in (align.phi, align.psi, e_i):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert all(not p.requires_grad and p.grad is None for p in e_c.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0


# --------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("fixture", ["tiny_compact", "tiny_span"])
def test_sr_trunk_encoder(fixture, request):
    model = request.getfixturevalue(fixture)
    enc = SRTrunkEncoder(model)
    x = torch.rand(2, 3, 12, 16)
    f = enc(x)
    assert f.shape == (2, 8, 12, 16) and enc.channels == 8
    ref, name = capture_trunk_features(model, x)
    torch.testing.assert_close(f, ref)
    assert enc.layer_name == name and enc.spec.startswith("sr-trunk:")
    assert sum(p.numel() for p in enc.parameters() if p.requires_grad) == 0
    enc.train()
    assert not any(m.training for m in enc.modules())
    d = enc.descriptors(x)
    assert d.avg.shape == d.max.shape == (2, 8)


def test_sr_trunk_encoder_is_a_frozen_copy(tiny_compact):
    enc = SRTrunkEncoder(tiny_compact)
    x = torch.rand(1, 3, 8, 8)
    before = enc(x).clone()
    with torch.no_grad():
        for p in tiny_compact.model.parameters():
            p.add_(1.0)
    torch.testing.assert_close(enc(x), before)
    assert all(p.requires_grad for p in tiny_compact.model.parameters())  # the original is untouched


def test_sr_trunk_encoder_named_layer(tiny_compact):
    enc = SRTrunkEncoder(tiny_compact, layer="body.1")
    assert enc(torch.rand(1, 3, 8, 8)).shape == (1, 8, 8, 8)
    assert enc.spec.endswith(":body.1")


def test_timm_encoder_on_a_random_tiny_model():
    torch.manual_seed(0)
    enc = TimmEncoder("resnet10t", pretrained=False, feature_index=1)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    f = enc(x)
    assert f.shape == (2, enc.channels, 8, 8) and enc.channels == 64  # layer1 of resnet10t, stride 4
    assert enc.spec == "timm:resnet10t:1"
    f.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in enc.parameters())


def test_timm_encoder_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"pretrained_file='.*missing\.safetensors' is not a file"):
        TimmEncoder("resnet10t", pretrained_file=tmp_path / "missing.safetensors")
    with pytest.raises(InputError, match="timm has no model 'resnet10tt'"):
        TimmEncoder("resnet10tt", pretrained=False)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="cannot build timm model 'resnet10t'.*pretrained_file"):
        TimmEncoder("resnet10t", pretrained_file=bad)


def test_clip_encoder_errors(tmp_path):
    with pytest.raises(CheckpointError, match=r"weights='.*RN50\.pt' is not a file"):
        OpenCLIPEncoder(weights=tmp_path / "RN50.pt")
    with pytest.raises(InputError, match="Did you mean layer2"):
        OpenCLIPEncoder(layer="layer22")


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is not None, reason="open_clip is installed")
def test_clip_encoder_without_open_clip_says_how_to_install():
    with pytest.raises(MissingDependencyError, match=r"pip install 'ttasr\[clip\]'"):
        OpenCLIPEncoder()


def test_create_established_encoder(tiny_compact):
    assert isinstance(create_established_encoder("sr-trunk", sr_model=tiny_compact), SRTrunkEncoder)
    with pytest.raises(InputError, match="needs sr_model="):
        create_established_encoder("sr-trunk")
    with pytest.raises(InputError, match="needs name="):
        create_established_encoder("timm")
    with pytest.raises(InputError, match="Did you mean clip-rn50"):
        create_established_encoder("clip-rn5")


class _FakeVisual(nn.Module):
    """The layout of open_clip's ModifiedResNet, tiny (widths 4..32)."""

    def __init__(self, stem_method: bool) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 2, 3, stride=2, padding=1), nn.BatchNorm2d(2)
        self.conv2, self.bn2 = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)
        self.conv3, self.bn3 = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.avgpool = nn.AvgPool2d(2)
        for i, (cin, cout, stride) in enumerate([(4, 8, 1), (8, 16, 2), (16, 32, 2), (32, 64, 2)], start=1):
            setattr(self, f"layer{i}", nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU()))
        self.attnpool = nn.Linear(64, 8)
        if stem_method:  # recent open_clip: a method; older releases ran the stem inline
            self.stem = lambda x: self.avgpool(torch.relu(self.bn3(self.conv3(torch.relu(self.bn2(self.conv2(
                torch.relu(self.bn1(self.conv1(x))))))))))


@pytest.mark.parametrize("stem_method", [True, False])
def test_clip_encoder_steps_through_the_resnet_stages(monkeypatch, stem_method):
    import sys
    import types

    created = {}

    def create_model(name, pretrained=None, device=None):
        created.update(name=name, pretrained=pretrained)
        torch.manual_seed(0)
        return types.SimpleNamespace(visual=_FakeVisual(stem_method))

    monkeypatch.setitem(sys.modules, "open_clip", types.SimpleNamespace(create_model=create_model))
    enc = OpenCLIPEncoder(layer="layer2")
    assert created == {"name": "RN50", "pretrained": "openai"}
    assert enc.spec == "clip-rn50:layer2"
    assert not hasattr(enc.visual, "layer3") and not hasattr(enc.visual, "attnpool")  # never run
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    f = enc(x)
    assert f.shape == (2, 16, 4, 4) and enc.channels == 16  # stride 8, as RN50's layer2
    torch.manual_seed(0)
    ref_net = _FakeVisual(False).eval()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).reshape(1, 3, 1, 1)
    h = (x - mean) / std
    for i in (1, 2, 3):
        h = torch.relu(getattr(ref_net, f"bn{i}")(getattr(ref_net, f"conv{i}")(h)))
    ref = ref_net.layer2(ref_net.layer1(ref_net.avgpool(h)))
    torch.testing.assert_close(f, ref)
    f.sum().backward()
    assert x.grad is not None and all(p.grad is None for p in enc.parameters())
    with pytest.raises(CheckpointError, match="downloads are disabled"):
        OpenCLIPEncoder(allow_download=False)
