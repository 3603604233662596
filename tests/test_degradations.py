"""Noise, JPEG and the camera-like presets: statistics, determinism, shapes and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ttasr.degradations import (
    PRESETS,
    CameraPreset,
    add_gaussian_noise,
    add_poisson_noise,
    blur,
    degrade,
    degrade_with_kernel,
    imresize,
    jpeg,
    quantize_8bit,
    subsample,
)
from ttasr.errors import InputError


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def photo256() -> torch.Tensor:
    from skimage import data

    img = data.astronaut()[100:356, 120:376]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("sigma", [2 / 255, 10 / 255])
def test_gaussian_noise_has_the_requested_std(sigma):
    img = torch.full((2, 3, 128, 128), 0.5)
    noise = add_gaussian_noise(img, sigma, generator=_gen(0)) - img
    assert noise.std().item() == pytest.approx(sigma, rel=0.02)
    assert abs(noise.mean().item()) < 0.01 * sigma + 1e-4
    # colour noise: channels independent
    c = torch.corrcoef(noise[0].reshape(3, -1))
    assert c[0, 1].abs() < 0.05


def test_gaussian_noise_gray_per_image_sigma_and_seed():
    img = torch.full((2, 3, 64, 64), 0.5)
    out = add_gaussian_noise(img, [1 / 255, 8 / 255], gray=True, generator=_gen(1))
    n = out - img
    torch.testing.assert_close(n[:, 0], n[:, 1])  # same noise on every channel
    assert n[0].std() == pytest.approx(1 / 255, rel=0.05) and n[1].std() == pytest.approx(8 / 255, rel=0.05)
    torch.testing.assert_close(out, add_gaussian_noise(img, [1 / 255, 8 / 255], gray=True, generator=_gen(1)))
    assert not torch.equal(out, add_gaussian_noise(img, [1 / 255, 8 / 255], gray=True, generator=_gen(2)))
    # clip keeps [0, 1]; clip=False does not
    assert add_gaussian_noise(torch.ones(1, 1, 8, 8), 0.5, generator=_gen(0)).max() <= 1
    assert add_gaussian_noise(torch.ones(1, 1, 8, 8), 0.5, generator=_gen(0), clip=False).max() > 1
    with pytest.raises(InputError, match="one value per image"):
        add_gaussian_noise(img, [0.1, 0.2, 0.3])


@pytest.mark.parametrize("level", [0.2, 0.6])
def test_poisson_noise_std_follows_shot_noise_law(level):
    img = torch.full((1, 3, 128, 128), level)
    scale, levels = 2.0, 256.0
    noise = add_poisson_noise(img, scale, generator=_gen(0), levels=levels, clip=False) - img
    v = round(level * 255) / 255
    assert noise.std().item() == pytest.approx(scale * math.sqrt(v / levels), rel=0.03)
    assert abs(noise.mean().item()) < 0.002


def test_poisson_noise_default_levels_follow_real_esrgan(photo256):
    # an 8-bit photo has > 128 distinct values, so Real-ESRGAN's rule gives 256 levels
    a = add_poisson_noise(photo256, 1.0, generator=_gen(3), clip=False)
    b = add_poisson_noise(photo256, 1.0, generator=_gen(3), levels=256, clip=False)
    torch.testing.assert_close(a, b)
    g = add_poisson_noise(photo256, 1.0, gray=True, generator=_gen(3), clip=False) - photo256
    torch.testing.assert_close(g[:, 0], g[:, 1])  # luminance noise, shared by the channels
    assert g.std().item() > 0.02


def test_jpeg_round_trip_quality_and_batch(photo256):
    x = torch.cat([photo256, photo256.flip(-1)])
    err = []
    for q in (30, 95):
        y = jpeg(x, q)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert torch.equal(y, quantize_8bit(y))  # decoded 8-bit values
        err.append((y - x).abs().mean().item())
    assert 0 < err[1] < err[0] < 0.05
    per = jpeg(x, [30, 95])
    torch.testing.assert_close(per[0], jpeg(x[:1], 30)[0])
    torch.testing.assert_close(per[1], jpeg(x[1:], 95)[0])
    gray = jpeg(x[:, :1], 90)
    assert gray.shape == (2, 1, 256, 256)
    with pytest.raises(InputError, match=r"\[1, 100\]"):
        jpeg(x, 0)


# --------------------------------------------------------------------------- camera presets


def test_every_preset_gives_lr_of_hr_over_scale_and_a_true_kernel(photo256):
    for name in PRESETS:
        for scale in (2, 4):
            d = degrade(photo256, scale, name, seed=0)
            assert d.lr.shape == (1, 3, 256 // scale, 256 // scale), name
            if PRESETS[name].bicubic:
                assert d.kernel is None
                bicubic = quantize_8bit(imresize(photo256, 1 / scale))
                if PRESETS[name].jpeg_quality is None:
                    assert torch.equal(d.lr, bicubic)
                else:  # the same, then compressed
                    assert torch.equal(d.lr, jpeg(bicubic, int(d.params["jpeg_quality"])))
                continue
            assert d.kernel.sum().item() == pytest.approx(1.0, abs=1e-6)
            assert d.kernel.shape[0] % 2 == 1 and d.kernel.shape[0] >= 3
            assert d.lr.min() >= 0 and d.lr.max() <= 1
            assert torch.equal(d.lr, quantize_8bit(d.lr)), f"{name} LR is not 8-bit"
            assert d.preset is PRESETS[name] and d.scale == scale


def test_presets_are_deterministic_per_seed_and_differ_across_seeds(photo256):
    for name in PRESETS:
        a, b, c = (degrade(photo256, 2, name, seed=s) for s in (7, 7, 8))
        assert torch.equal(a.lr, b.lr), name
        if PRESETS[name].bicubic:  # no kernel to draw; with JPEG, its quality
            assert a.kernel is None
            assert torch.equal(a.lr, c.lr) == (a.params["jpeg_quality"] == c.params["jpeg_quality"])
            continue
        assert torch.equal(a.kernel, b.kernel), name
        assert not torch.equal(a.lr, c.lr), name
        assert a.params == b.params


def test_luminance_noise_presets_add_the_same_noise_to_every_channel():
    """On a grey HR image, ``luma-noise`` keeps R = G = B (noise on the luminance only) where
    ``sensor-noise`` does not; ``phone`` and ``noisy-jpeg`` are compressed at their qualities."""
    grey = torch.full((1, 3, 64, 64), 0.5)
    luma, colour = (degrade(grey, 2, name, seed=1).lr for name in ("luma-noise", "sensor-noise"))
    assert torch.equal(luma[:, 0], luma[:, 1]) and torch.equal(luma[:, 1], luma[:, 2])
    assert luma.std() > 1 / 255  # 2-4 levels of read noise and shot noise
    assert not torch.equal(colour[:, 0], colour[:, 1])
    for name, (lo, hi) in (("phone", (75, 90)), ("noisy-jpeg", (70, 85))):
        assert PRESETS[name].gaussian_noise == (2.0, 4.0)
        assert lo <= degrade(grey, 2, name, seed=1).params["jpeg_quality"] <= hi
    assert PRESETS["phone"].gray_noise and not PRESETS["noisy-jpeg"].gray_noise


def test_optical_blur_is_exactly_blur_then_subsample(photo256):
    d = degrade(photo256, 4, "optical-blur", seed=3)
    p = d.params
    assert 1.2 <= p["sigma_x"] <= 1.6 and 0.75 * p["sigma_x"] <= p["sigma_y"] <= p["sigma_x"]
    # no noise, no JPEG: the LR is the 8-bit oracle pair made with the returned kernel
    torch.testing.assert_close(d.lr, quantize_8bit(degrade_with_kernel(photo256, d.kernel, 4)), atol=0, rtol=0)
    torch.testing.assert_close(d.lr, quantize_8bit(subsample(blur(photo256, d.kernel), 4)), atol=0, rtol=0)


def test_camera_preset_matches_its_recipe(photo256):
    d = degrade(photo256, 2, "camera", seed=0)
    assert d.params["sigma_x"] == d.params["sigma_y"] == pytest.approx(1.2)
    assert d.params["gaussian_noise"] == 2.0 and d.params["jpeg_quality"] == 95
    clean = degrade_with_kernel(photo256, d.kernel, 2)
    resid = d.lr - clean
    # 2 levels of noise + 8-bit rounding + light JPEG: a few levels in total, not more
    assert 1.5 / 255 < resid.std().item() < 4 / 255
    noise_only = degrade(photo256, 2, CameraPreset("n", "", blur_sigma=(1.2, 1.2), gaussian_noise=(2.0, 2.0)), 0)
    assert (noise_only.lr - clean).std().item() == pytest.approx(math.sqrt((2 / 255) ** 2 + 1 / (12 * 255**2)), rel=0.1)


def test_sensor_noise_lr_is_noisier_than_jpeg_lr(photo256):
    flat = torch.full((1, 3, 128, 128), 0.5)
    noisy = degrade(flat, 2, "sensor-noise", seed=1)
    assert noisy.lr.std().item() > 1 / 255
    assert degrade(flat, 2, "jpeg", seed=1).lr.std().item() < 0.5 / 255


def test_unknown_preset_and_bad_inputs_are_reported(photo256):
    with pytest.raises(InputError, match="Did you mean camera"):
        degrade(photo256, 2, "camra", seed=0)
    with pytest.raises(InputError, match="positive integer"):
        degrade(photo256, 0, "camera", seed=0)
    with pytest.raises(InputError, match="BCHW"):
        degrade(photo256[0], 2, "camera", seed=0)
    with pytest.raises(InputError, match="blur_aspect"):
        CameraPreset("bad", "", blur_aspect=(0.5, 1.5))
    with pytest.raises(InputError, match="jpeg_quality"):
        CameraPreset("bad", "", jpeg_quality=(90, 101))


# --------------------------------------------------------------------------- Real-ESRGAN second order


def test_realesrgan_kernel_families():
    from ttasr.degradations.kernels import gaussian_kernel
    from ttasr.degradations.realesrgan import (
        generalized_gaussian_kernel,
        plateau_kernel,
        sinc_kernel,
    )

    g = gaussian_kernel(15, 2.0, 1.0, 0.4)
    torch.testing.assert_close(generalized_gaussian_kernel(15, 2.0, 1.0, 0.4, 1.0), g)  # beta = 1
    heavy = plateau_kernel(15, 2.0, 2.0, 0.0, 1.0)
    assert heavy.sum().item() == pytest.approx(1.0, abs=1e-6) and heavy[0, 0] > g[0, 0]  # heavier tails
    k = sinc_kernel(21, math.pi / 3)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)
    resp = torch.fft.fft2(k.double(), s=(128, 128)).abs()
    # low-pass with cutoff pi/3 rad/px: passes DC and pi/6, stops 2 pi/3 (bin index = w * 128 / (2 pi))
    assert resp[0, 0] == pytest.approx(1.0) and resp[0, 11] > 0.8 and resp[0, 43] < 0.15


def test_realesrgan_degradation_shape_determinism_and_usm(photo256):
    from ttasr.degradations.realesrgan import RealESRGANConfig, degrade_realesrgan, usm_sharpen

    x = torch.cat([photo256[..., :128, :128], photo256[..., 128:, 128:]])
    a, b, c = (degrade_realesrgan(x, 4, seed=s) for s in (5, 5, 6))
    assert a.lr.shape == (2, 3, 32, 32) and torch.equal(a.lr, quantize_8bit(a.lr))
    assert torch.equal(a.lr, b.lr) and not torch.equal(a.lr, c.lr)
    assert not torch.equal(a.lr[0], a.lr[1])
    flat = torch.full((1, 3, 64, 64), 0.4)
    torch.testing.assert_close(usm_sharpen(flat), flat)  # nothing to sharpen
    hf = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean().item()
    assert hf(a.hr) > hf(x)  # USM adds contrast at edges
    plain = degrade_realesrgan(x, 4, seed=5, config=RealESRGANConfig(usm=False))
    assert torch.equal(plain.hr, x)
    with pytest.raises(InputError, match="too small"):
        degrade_realesrgan(x[..., :8, :8], 4, seed=0)


def test_chroma_noise_recovers_colour_noise_and_ignores_texture_and_grey_noise(photo256):
    from ttasr.degradations import add_gaussian_noise, estimate_chroma_noise, estimate_noise_level

    g = torch.Generator().manual_seed(0)
    for level in (2.0, 5.0):
        noisy = add_gaussian_noise(photo256, level / 255, generator=g)
        assert estimate_chroma_noise(noisy) == pytest.approx(level, rel=0.2)
    # texture that moves the channels together: the flattest-tile estimate sees "noise", this one does not
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 256), torch.linspace(0, 1, 256), indexing="ij")
    stripes = 0.5 + 0.3 * torch.sign(torch.sin(400 * xx + 300 * yy))
    texture = (stripes * torch.tensor([1.0, 0.8, 0.6]).view(3, 1, 1))[None]
    assert estimate_noise_level(texture) > 10 and estimate_chroma_noise(texture) < 0.5
    clean = estimate_chroma_noise(photo256)  # about 1: the photo's own colour noise
    assert estimate_chroma_noise(add_gaussian_noise(photo256, 5 / 255, gray=True, generator=g)) < clean + 0.3
    assert estimate_chroma_noise(photo256.mean(dim=1, keepdim=True)) == 0.0  # grey: no chroma to tell
    assert estimate_chroma_noise(photo256[..., :3, :3]) == 0.0  # too small for one tile


def test_white_noise_share_sees_grey_noise_and_not_texture(photo256):
    from ttasr.degradations import add_gaussian_noise, estimate_chroma_noise, white_noise_share
    from ttasr.degradations.noise import estimate_noise_level

    g = torch.Generator().manual_seed(0)
    flat = torch.full((1, 3, 128, 128), 0.5)
    grey = add_gaussian_noise(flat, 4 / 255, gray=True, generator=g)
    assert estimate_chroma_noise(grey) < 0.5  # the chroma level cannot see noise shared by the channels
    assert white_noise_share(grey) > 0.9 and white_noise_share(flat) == 0.0
    assert white_noise_share(add_gaussian_noise(flat, 1 / 255, gray=True, generator=g)) == 0.0  # below the floor
    # fine texture, far above the floor, whose energy grows towards coarser scales: not white
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    texture = (0.5 + 0.3 * torch.sin(60 * xx) * torch.sin(45 * yy)).expand(1, 3, 128, 128)
    assert estimate_noise_level(texture) > 2 and white_noise_share(texture) == 0.0
    clean = white_noise_share(photo256)
    assert clean < 0.05 and white_noise_share(add_gaussian_noise(photo256, 8 / 255, gray=True, generator=g)) > 0.15
    assert white_noise_share(grey[..., :15, :15]) == 0.0  # smaller than a tile
    # noise drawn apart in each channel: the mean of the channels averages it below the floor, one at a time it shows
    colour = add_gaussian_noise(flat, 3 / 255, generator=g)
    assert white_noise_share(colour) < 0.1 and white_noise_share(colour, per_channel=True) > 0.9
    assert white_noise_share(grey, per_channel=True) > 0.9 and white_noise_share(texture, per_channel=True) == 0.0
    assert white_noise_share(photo256, per_channel=True) < 0.05
    with pytest.raises(ValueError, match="multiple of 4"):
        white_noise_share(grey, tile=10)


def test_jpeg_heavy_draws_its_quality_range(photo256):
    qualities = {degrade(photo256, 4, "jpeg-heavy", seed=s).params["jpeg_quality"] for s in range(12)}
    assert min(qualities) >= 40 and max(qualities) <= 60 and len(qualities) > 3


def test_noise_level_estimate_recovers_added_noise(photo256):
    from ttasr.degradations import add_gaussian_noise, estimate_noise_level

    clean = estimate_noise_level(photo256)
    assert clean < 2.0
    for level in (2.0, 5.0):
        noisy = add_gaussian_noise(photo256, level / 255, generator=torch.Generator().manual_seed(0))
        assert estimate_noise_level(noisy) == pytest.approx((clean**2 + level**2) ** 0.5, rel=0.15)
