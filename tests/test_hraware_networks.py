"""The HR-aware LR reconstruction network (ttasr.methods.hraware.networks): shapes at
several scales, the controller's effect, gradients, and the one-file save/load format."""

from __future__ import annotations

import json

import pytest
import torch

from ttasr.errors import CheckpointError, InputError
from ttasr.methods.hraware.networks import (
    AlignmentLayers,
    DegradationEncoder,
    ImageEncoder,
    LRReconstructionNetwork,
    ReconstructorConfig,
    read_network_metadata,
)

TINY = {"embed_dim": 8, "degradation_channels": 4, "degradation_blocks": 2, "image_channels": 5,
        "image_blocks": 1, "reconstructor_channels": 4, "reconstructor_blocks": 2, "far_dim": 6}


def tiny(**overrides) -> LRReconstructionNetwork:
    torch.manual_seed(0)
    return LRReconstructionNetwork(ReconstructorConfig(**{**TINY, **overrides}))


def test_paper_defaults():
    c = ReconstructorConfig()
    assert (c.embed_dim, c.degradation_blocks, c.image_blocks, c.image_channels, c.reconstructor_blocks) == (
        512, 16, 6, 64, 4)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("fusion", ["concat", "add"])
def test_hr_to_lr_shapes(scale, fusion):
    net = tiny(scale=scale, feature_fusion=fusion)
    h, w = 6, 5
    x, y = torch.rand(2, 3, scale * h, scale * w), torch.rand(2, 3, h, w)
    out = net(x, y, torch.ones(2, 8))
    assert out.shape == (2, 3, h, w)
    assert torch.isfinite(out).all()


def test_encoders_shapes():
    e = DegradationEncoder(embed_dim=7, channels=4, blocks=2)
    assert e(torch.rand(3, 3, 9, 13)).shape == (3, 7)  # any LR size
    f = ImageEncoder(channels=5, blocks=2)
    assert f(torch.rand(2, 3, 12, 10)).shape == (2, 5, 12, 10)  # no downsampling
    a = AlignmentLayers(5, 9)
    out = a.phi(torch.rand(2, 5)), a.psi(torch.rand(2, 5))
    assert out[0].shape == out[1].shape == (2, 9)


def test_control_scales_the_embedding():
    net = tiny(scale=2).eval()
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 8, 8)
    e = net.degradation_encoder(y)
    s = torch.rand(2, 8)
    torch.testing.assert_close(net.controlled_embedding(y, s), s * e)
    torch.testing.assert_close(net.controlled_embedding(y, 1.0), e)
    torch.testing.assert_close(net(x, y, torch.ones(2, 8)), net(x, y, 1.0))
    torch.testing.assert_close(net(x, y, torch.full((2, 1), 0.5)), net(x, y, torch.full((2, 8), 0.5)))
    assert not torch.allclose(net(x, y, torch.zeros(2, 8)), net(x, y, torch.ones(2, 8)))
    with pytest.raises(InputError, match="controller must be"):
        net(x, y, torch.ones(2, 7))
    with pytest.raises(InputError, match="controller must be"):
        net(x, y, torch.ones(8))


def test_lr_skip_adds_the_area_downsampled_image():
    a, b = tiny(scale=2), tiny(scale=2, lr_skip=True)
    b.load_state_dict(a.state_dict())
    x, y = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(b(x, y, 1.0), a(x, y, 1.0) + torch.nn.functional.avg_pool2d(x, 2))


def test_bad_inputs():
    net = tiny(scale=4)
    with pytest.raises(InputError, match="multiple of the scale 4"):
        net(torch.rand(1, 3, 18, 16), torch.rand(1, 3, 4, 4), 1.0)
    with pytest.raises(InputError, match="B x 3 x H x W"):
        net(torch.rand(1, 1, 16, 16), torch.rand(1, 3, 4, 4), 1.0)
    with pytest.raises(InputError, match="batches differ"):
        net(torch.rand(2, 3, 16, 16), torch.rand(1, 3, 4, 4), 1.0)
    with pytest.raises(InputError, match="kernel_size must be odd"):
        ReconstructorConfig(kernel_size=4)
    with pytest.raises(InputError, match="concat"):
        ReconstructorConfig(feature_fusion="concatenate")


def test_reconstruction_loss_trains_every_reconstruction_part():
    net = tiny(scale=2)
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 4, 4)
    out, f = net.reconstruct_with_features(x, y, torch.rand(2, 8))
    assert f.shape == (2, 5, 8, 8)
    (out - y).abs().mean().backward()
    for part in (net.degradation_encoder, net.image_encoder, net.reconstructor):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads), type(part).__name__
        assert sum(float(g.abs().sum()) for g in grads) > 0


# --------------------------------------------------------------------------- files
def test_save_load_round_trip_is_bit_exact(tmp_path):
    net = tiny(scale=2, feature_fusion="add")
    net.metadata = {"training_steps": 123}
    path = net.save(tmp_path / "lrnet.safetensors", metadata={"hqi_distance": "encoder"})
    assert path.is_file() and not list(tmp_path.glob(".*.part"))
    back = LRReconstructionNetwork.load(path)
    assert back.config == net.config
    assert back.metadata == {"training_steps": 123, "hqi_distance": "encoder"}
    a, b = net.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    x, y, s = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 4, 4), torch.rand(1, 8)
    assert torch.equal(net(x, y, s), back(x, y, s))
    config, meta = read_network_metadata(path)
    assert config == net.config and meta["training_steps"] == 123
    # loading with the same config is fine
    LRReconstructionNetwork.load(path, config=net.config)


def test_mismatched_config_is_refused(tmp_path):
    path = tiny(scale=2).save(tmp_path / "lrnet.safetensors")
    other = ReconstructorConfig(**{**TINY, "scale": 4})
    with pytest.raises(CheckpointError, match=r"lrnet\.safetensors.*scale=2 in the file, 4 expected"):
        LRReconstructionNetwork.load(path, config=other)


def test_tensors_that_do_not_fit_the_config_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    good = tiny(scale=2)
    path = good.save(tmp_path / "a.safetensors")
    tensors = load_file(str(path))
    header = {"format": "ttasr-hraware-lr-reconstruction-1",
              "config": ReconstructorConfig(**{**TINY, "scale": 2, "reconstructor_blocks": 3}).to_json(),
              "metadata": "{}"}
    save_file(tensors, str(tmp_path / "b.safetensors"), metadata=header)
    with pytest.raises(CheckpointError, match=r"b\.safetensors do not match its config.*missing reconstructor\.blocks\.2"):
        LRReconstructionNetwork.load(tmp_path / "b.safetensors")
    header["config"] = ReconstructorConfig(**{**TINY, "scale": 2, "far_dim": 7}).to_json()
    save_file(tensors, str(tmp_path / "c.safetensors"), metadata=header)
    with pytest.raises(CheckpointError, match=r"c\.safetensors.*wrong shape alignment\.phi"):
        LRReconstructionNetwork.load(tmp_path / "c.safetensors")


def test_other_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(CheckpointError, match="does not exist"):
        LRReconstructionNetwork.load(tmp_path / "none.safetensors")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors is not an HR-aware"):
        LRReconstructionNetwork.load(tmp_path / "model.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors is not a safetensors file"):
        LRReconstructionNetwork.load(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "bad.safetensors"),
              metadata={"format": "ttasr-hraware-lr-reconstruction-1", "config": json.dumps({"scale": -1})})
    with pytest.raises(CheckpointError, match=r"bad\.safetensors has an unreadable"):
        LRReconstructionNetwork.load(tmp_path / "bad.safetensors")


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(InputError, match="JSON"):
        tiny().save(tmp_path / "x.safetensors", metadata={"t": torch.zeros(1)})
    assert not (tmp_path / "x.safetensors").exists()
