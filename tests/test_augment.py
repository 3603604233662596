"""AdaSSR pair sampling and augmentations: shapes, determinism, and what each switch does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ttasr.degradations.kernels import degrade_with_kernel, gaussian_kernels, unsharp_mask
from ttasr.pairs.augment import (
    AugmentConfig,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    dihedral,
    sample_batch,
    sample_pair,
)
from ttasr.pairs.estimation import BicubicKernel, GivenKernel, make_lr_pair
from ttasr.errors import InputError

SCALE = 2
P = 16
T = P * SCALE
OFF = AugmentConfig.none()


@pytest.fixture
def source() -> torch.Tensor:
    from skimage import data

    img = data.chelsea()[60:180, 120:260]  # 120 x 140
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture
def weights(source) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(1, 1, *source.shape[-2:]) * 3


@pytest.fixture
def kernel_estimate(source):
    k = gaussian_kernels(9, 1.2, 0.6, 0.5, shift=-0.5)[0].float()
    return GivenKernel(k).estimate(source, SCALE)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _target_box(sample, source):
    """Where the target sits in the source (no affine): the window's top-left plus the margin."""
    top, left, win = sample.params["crop"]
    m = (win - T) // 2
    return top + m, left + m


def test_shapes_and_ranges(source, weights, kernel_estimate):
    inp, tgt, w = sample_batch(source, weights, kernel_estimate, SCALE, 5, P, AugmentConfig(), _gen())
    assert inp.shape == (5, 3, P, P) and tgt.shape == (5, 3, T, T) and w.shape == (5, 1, T, T)
    assert inp.min() >= 0 and inp.max() <= 1 and tgt.min() >= 0 and tgt.max() <= 1
    assert w.min() >= 0 and w.max() <= 3


def test_deterministic_for_a_seeded_generator(source, weights, kernel_estimate):
    a = sample_batch(source, weights, kernel_estimate, SCALE, 4, P, AugmentConfig(), _gen(7))
    b = sample_batch(source, weights, kernel_estimate, SCALE, 4, P, AugmentConfig(), _gen(7))
    c = sample_batch(source, weights, kernel_estimate, SCALE, 4, P, AugmentConfig(), _gen(8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])


def test_plain_crops_are_aligned_pairs(source, weights, kernel_estimate):
    """All switches off: target and weights are crops of the source, the input is the
    crop of D_k(source) on the same scale grid (away from the image border)."""
    full = degrade_with_kernel(source, kernel_estimate.kernel, SCALE)
    checked = 0
    for seed in range(16):
        s = sample_pair(source, weights, kernel_estimate, SCALE, P, OFF, _gen(seed))
        top, left = _target_box(s, source)
        assert torch.equal(s.target, source[..., top : top + T, left : left + T])
        assert torch.equal(s.weights, weights[..., top : top + T, left : left + T])
        inside = min(top, left) >= 8 and top + T + 8 <= 120 and left + T + 8 <= 140
        if top % SCALE == 0 and left % SCALE == 0 and inside:
            ref = full[..., top // SCALE : top // SCALE + P, left // SCALE : left // SCALE + P]
            assert torch.allclose(s.input, ref, atol=1e-5)
            checked += 1
    assert checked >= 2


def test_flips_only(source, weights, kernel_estimate):
    cfg = dataclasses.replace(OFF, dihedral=True)
    seen = set()
    for seed in range(12):
        s = sample_pair(source, weights, kernel_estimate, SCALE, P, cfg, _gen(seed))
        k = s.params["dihedral"]
        seen.add(k)
        top, left = _target_box(s, source)
        crop = source[..., top : top + T, left : left + T]
        assert torch.equal(s.target, dihedral(crop, k))
        assert torch.equal(s.weights, dihedral(weights[..., top : top + T, left : left + T], k))
    assert len(seen) >= 4


def test_dihedral_group():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    outs = [dihedral(x, k) for k in range(8)]
    assert len({tuple(o.flatten().tolist()) + tuple(o.shape) for o in outs}) == 8
    assert torch.equal(dihedral(x, 4), x.flip(-1))


def test_degradation_happens_after_geometry(source, kernel_estimate):
    """With an anisotropic kernel, input == D_k(target) for every rotation: the pair keeps
    the image's kernel instead of rotating it."""
    cfg = dataclasses.replace(OFF, dihedral=True)
    for seed in range(6):
        s = sample_pair(source, None, kernel_estimate, SCALE, P, cfg, _gen(seed))
        inner = degrade_with_kernel(s.target, kernel_estimate.kernel, SCALE)[..., 3:-3, 3:-3]
        assert torch.allclose(s.input[..., 3:-3, 3:-3], inner, atol=1e-5)


def test_noise_changes_inputs_only(source, weights, kernel_estimate):
    plain = sample_pair(source, weights, kernel_estimate, SCALE, P, OFF, _gen(3))
    for kind in ("gaussian", "poisson"):
        cfg = dataclasses.replace(OFF, gaussian_noise_p=1.0 if kind == "gaussian" else 0.0,
                                  poisson_noise_p=1.0 if kind == "poisson" else 0.0)
        noisy = sample_pair(source, weights, kernel_estimate, SCALE, P, cfg, _gen(3))
        assert noisy.params["noise"].startswith(kind)
        assert torch.equal(noisy.target, plain.target) and torch.equal(noisy.weights, plain.weights)
        diff = (noisy.input - plain.input).abs().mean()
        assert float(diff) > 1e-3


def test_noise_probabilities_are_exclusive_and_match_the_paper(source, kernel_estimate):
    cfg = dataclasses.replace(OFF, gaussian_noise_p=0.24, poisson_noise_p=0.16)
    g = _gen(0)
    small = source[..., :24, :24]
    kinds = [sample_pair(small, None, kernel_estimate, SCALE, 4, cfg, g).params["noise"].split("(")[0] for _ in range(400)]
    frac = {k: kinds.count(k) / len(kinds) for k in ("gaussian", "poisson", "none")}
    assert frac["gaussian"] == pytest.approx(0.24, abs=0.06)
    assert frac["poisson"] == pytest.approx(0.16, abs=0.05)
    assert frac["none"] == pytest.approx(0.60, abs=0.07)


def test_affine_scale_range(kernel_estimate):
    """A sinusoid of known period: after the random scale a the target's period is
    period * a with a in [0.5, 1.0]."""
    period = 10.0
    x = torch.arange(200, dtype=torch.float32)
    wave = 0.5 + 0.4 * torch.sin(2 * torch.pi * x / period)
    src = wave.view(1, 1, 1, 200).expand(1, 3, 200, 200).contiguous()
    cfg = dataclasses.replace(OFF, affine_p=1.0)
    scales = []
    g = _gen(1)
    for _ in range(12):
        s = sample_pair(src, None, kernel_estimate, SCALE, 32, cfg, g)
        a = s.params["affine_scale"]
        scales.append(a)
        assert 0.5 - 1e-6 <= a <= 1.0 + 1e-6
        row = s.target[0, 0].mean(0) - s.target[0, 0].mean()
        spec = torch.fft.rfft(row * torch.hann_window(64, periodic=False)).abs()
        freq = float(spec.argmax()) / 64
        assert 1 / freq == pytest.approx(period * a, rel=0.2)
    assert max(scales) - min(scales) > 0.2


def test_affine_weights_are_resampled_alike(kernel_estimate):
    x = torch.linspace(0, 1, 150)
    src = x.view(1, 1, 1, 150).expand(1, 3, 150, 150).contiguous()
    w = x.view(1, 1, 1, 150).expand(1, 1, 150, 150).contiguous()
    cfg = dataclasses.replace(OFF, affine_p=1.0)
    s = sample_pair(src, w, kernel_estimate, SCALE, 16, cfg, _gen(2))
    assert torch.allclose(s.weights[0, 0], s.target[0, 0], atol=0.01)


def test_photometric_ops_apply_to_both_sides(source, kernel_estimate):
    cfg = dataclasses.replace(OFF, photometric_p=1.0, photometric_magnitude=0.3)
    plain = sample_pair(source, None, kernel_estimate, SCALE, P, OFF, _gen(5))
    s = sample_pair(source, None, kernel_estimate, SCALE, P, cfg, _gen(5))
    assert len(s.params["photometric"]) == 2
    assert not torch.allclose(s.target, plain.target, atol=1e-3)
    # the input is still the degradation of the (changed) target
    inner = degrade_with_kernel(s.target, kernel_estimate.kernel, SCALE)[..., 3:-3, 3:-3]
    assert torch.allclose(s.input[..., 3:-3, 3:-3], inner, atol=1e-5)


def test_photometric_functions():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8) * 0.8 + 0.1
    assert torch.allclose(adjust_contrast(x, 1.0), x)
    assert adjust_contrast(x, 0.5).std() < x.std()
    gray = adjust_saturation(x, 0.0)
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-6)
    assert torch.allclose(adjust_hue(x, 0.0), x, atol=1e-5)
    assert not torch.allclose(adjust_hue(x, 0.5), x, atol=1e-2)


def test_usm_sharpens_targets_only(source, kernel_estimate):
    cfg = dataclasses.replace(OFF, usm_p=1.0)
    plain = sample_pair(source, None, kernel_estimate, SCALE, P, OFF, _gen(4))
    s = sample_pair(source, None, kernel_estimate, SCALE, P, cfg, _gen(4))
    assert s.params["usm"] is True
    assert torch.equal(s.input, plain.input)

    def grad(t):
        return (t[..., 1:] - t[..., :-1]).abs().mean()

    assert grad(s.target) > grad(plain.target) * 1.02
    flat = torch.full((1, 3, 16, 16), 0.4)
    assert torch.allclose(unsharp_mask(flat), flat)


def test_bicubic_pairs(source, weights):
    est = BicubicKernel().estimate(source, SCALE)
    s = sample_pair(source, weights, est, SCALE, P, OFF, _gen(0))
    lr, _ = make_lr_pair(s.target, est, SCALE)
    assert torch.allclose(s.input[..., 2:-2, 2:-2], lr[..., 2:-2, 2:-2], atol=0.02)


def test_errors(source, kernel_estimate):
    with pytest.raises(InputError, match="patch_size"):
        sample_pair(source, None, kernel_estimate, 4, 64, OFF, _gen())
    with pytest.raises(InputError, match="weights"):
        sample_pair(source, torch.ones(1, 1, 5, 5), kernel_estimate, SCALE, P, OFF, _gen())
    with pytest.raises(InputError, match="usm_p must be <= 1"):
        AugmentConfig(usm_p=1.5)
