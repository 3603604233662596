"""LWay (`ttasr.LWay`): the Haar high-frequency weight map, s = 1 and no FAR, the command line."""

from __future__ import annotations

import numpy as np
import pytest
import spandrel
import torch
from PIL import Image

import ttasr
from ttasr.cli import main
from ttasr.methods.hraware import LRReconstructionNetwork
from ttasr.methods.lway import haar_detail_magnitude, haar_dwt, high_frequency_weight_map
from hraware_tiny import TINY_NET, one_thread  # noqa: F401 - one_thread is an autouse fixture

FAST = dict(batch_size=2, patch_size=16, progress=False, device="cpu")



@pytest.fixture
def rec_file(tmp_path):
    """A tiny x2 reconstructor (LWay needs neither E_c nor a pretraining record)."""
    torch.manual_seed(0)
    return LRReconstructionNetwork(scale=2, **TINY_NET).save(tmp_path / "tiny-rec.safetensors")


def _image() -> np.ndarray:
    """3 x 6 x 8: a flat left half, a vertical edge, a checker block and noise."""
    rng = np.random.default_rng(0)
    img = np.full((3, 6, 8), 0.2)
    img[:, :, 4:] = 0.8
    img[:, 2:4, 6:8] = [[0.0, 1.0], [1.0, 0.0]]
    img[1, 4:, :] += rng.uniform(0, 0.1, (2, 8))
    return img


def _direct_map(img: np.ndarray) -> np.ndarray:
    """The map computed block by block, straight from the Haar definitions."""
    c, h, w = img.shape
    mag = np.zeros((h // 2, w // 2))
    for i in range(h // 2):
        for j in range(w // 2):
            total = 0.0
            for ch in range(c):
                a, b = img[ch, 2 * i, 2 * j], img[ch, 2 * i, 2 * j + 1]
                cc, d = img[ch, 2 * i + 1, 2 * j], img[ch, 2 * i + 1, 2 * j + 1]
                lh, hl, hh = (a + b - cc - d) / 2, (a - b + cc - d) / 2, (a - b - cc + d) / 2
                total += lh**2 + hl**2 + hh**2
            mag[i, j] = np.sqrt(total)
    mag /= mag.max()
    return np.kron(mag, np.ones((2, 2)))  # each 2x2 block keeps its coefficient


def test_weight_map_equals_a_direct_haar_computation():
    img = _image()
    y = torch.from_numpy(img)[None].float()
    got = high_frequency_weight_map(y)
    assert got.shape == (1, 1, 6, 8) and got.min() >= 0 and got.max() == 1
    np.testing.assert_allclose(got[0, 0].numpy(), _direct_map(img), atol=1e-6)
    assert got[0, 0, :2, :2].abs().max() == 0  # flat: no weight
    ll, lh, hl, hh = haar_dwt(y)
    np.testing.assert_allclose((ll.square() + lh.square() + hl.square() + hh.square()).sum().item(),
                               y.square().sum().item(), rtol=1e-5)  # orthonormal: energy is kept
    assert haar_detail_magnitude(y).shape == (1, 1, 3, 4)


def test_weight_map_sizes_modes_and_flat_images():
    y = torch.rand(2, 3, 5, 7)
    for mode in ("nearest", "bilinear"):
        w = high_frequency_weight_map(y, mode)  # type: ignore[arg-type]
        assert w.shape == (2, 1, 5, 7) and 0 <= w.min() and w.max() <= 1
        if mode == "nearest":  # normalised per image (bilinear smooths the peak away)
            assert torch.allclose(w.amax(dim=(1, 2, 3)), torch.ones(2))
    assert high_frequency_weight_map(torch.full((1, 3, 4, 4), 0.5)).abs().max() == 0
    with pytest.raises(ttasr.InputError, match="even"):
        haar_dwt(torch.rand(1, 3, 5, 4))


def test_lway_uses_s_equal_to_one_no_far_and_the_weight_map(tiny_compact, rec_file, photo, monkeypatch):
    controls = []
    original = LRReconstructionNetwork.reconstruct_with_features

    def spy(self, x, y, control):
        controls.append(control)
        return original(self, x, y, control)

    monkeypatch.setattr(LRReconstructionNetwork, "reconstruct_with_features", spy)
    a = ttasr.LWay(tiny_compact, reconstructor=rec_file, max_steps=2, lr=1e-3, **FAST)
    before = {k: v.clone() for k, v in a.reconstructor.state_dict().items()}
    a.fit(photo)
    assert controls == [1.0, 1.0]
    assert list(a.frozen_networks()) == ["reconstructor"] and a.regularizer(photo, photo) is None
    torch.testing.assert_close(a._weights[0], high_frequency_weight_map(photo), rtol=0, atol=0)
    batch = a.sample_batch(torch.Generator().manual_seed(0))
    assert batch.weights is not None and batch.weights.shape == (2, 1, 16, 16)
    assert all(torch.equal(v, a.reconstructor.state_dict()[k]) for k, v in before.items())
    assert not all(torch.equal(v, tiny_compact.model.state_dict()[k])
                   for k, v in a.adapted_model().module.state_dict().items())
    floored = ttasr.LWay(tiny_compact, reconstructor=rec_file, weight_floor=0.25)
    assert floored.loss_weights(photo).min() >= 0.25
    assert ttasr.LWay(tiny_compact, reconstructor=rec_file, weight_map=False).loss_weights(photo) is None


def test_learning_rate_table(tiny_compact, rec_file):
    a = ttasr.LWay(tiny_compact, reconstructor=rec_file)
    assert a.learning_rate == 5e-5 and a.config.max_steps == 500
    a.model.architecture = "ESRGAN"
    assert a.learning_rate == 5e-6
    a.model.architecture = "HAT"
    assert a.learning_rate == 1e-5
    assert isinstance(ttasr.create_adapter("lway", tiny_compact), ttasr.LWay) and "lway" in ttasr.list_adapters()


def test_cli_adapts_with_lway_end_to_end(tiny_file, rec_file, photo, tmp_path):
    png = tmp_path / "in" / "photo.png"
    png.parent.mkdir()
    Image.fromarray((photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(png)
    out, ckpt = tmp_path / "out", tmp_path / "adapted.safetensors"
    rc = main(["-q", "adapt", str(png.parent), "-m", str(tiny_file), "--method", "lway", "--reconstructor",
               str(rec_file), "-o", str(out), "--max-steps", "3", "--batch-size", "2", "--patch-size", "16",
               "--lr", "0.001", "--progress", "false", "--device", "cpu", "--save-model", str(ckpt)])
    assert rc == 0
    [written] = out.glob("*.png")
    assert written.name == "photo_lway.png" and Image.open(written).size == (192, 192)
    desc = spandrel.ModelLoader().load_from_file(ckpt)
    meta = ttasr.load_model(ckpt).metadata
    assert desc.scale == 2 and meta["ttasr_method"] == "lway" and meta["weight_map"] == "haar-detail/nearest"
    assert meta["reconstructor"] == str(rec_file) and meta["lr"] == "0.001"
    # the written image is the adapted model's output
    expected = ttasr.enhance(str(ckpt), png).astype(int)
    got = np.asarray(Image.open(written)).astype(int)
    assert np.abs(got - expected).max() <= 1
    assert np.abs(got - ttasr.enhance(str(tiny_file), png).astype(int)).max() > 0
