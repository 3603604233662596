"""PSNR-Y's 8-bit step rounds (as saving a PNG does), it does not truncate.

The expected values come from an independent numpy implementation of the SR papers'
protocol (round to 8 bits, crop, MATLAB ``rgb2ycbcr`` luma, peak 255) on an image pair where
rounding and flooring give PSNRs far apart, so a ``floor`` in place of ``round`` fails.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ttasr.metrics import PSNRY, evaluate, psnr_y, psnr_y_batch


def _psnr_y_numpy(sr: np.ndarray, hr: np.ndarray, crop: int, to_8bit) -> np.ndarray:
    """Per-image PSNR-Y of (B, 3, H, W) float arrays in [0, 1]; ``to_8bit`` maps [0, 255] to levels."""
    def luma(x: np.ndarray) -> np.ndarray:
        levels = to_8bit(np.clip(x.astype(np.float64), 0.0, 1.0) * 255.0)
        if crop:
            levels = levels[..., crop:-crop, crop:-crop]
        r, g, b = levels[:, 0], levels[:, 1], levels[:, 2]
        return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0

    mse = ((luma(sr) - luma(hr)) ** 2).reshape(len(sr), -1).mean(axis=1)
    return 10.0 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """An 8-bit HR batch and a float32 "model output" near it: noise plus a +0.4-level bias,
    so most pixels lie 0.5-1 level above an 8-bit value (round goes up, floor goes down)."""
    rng = np.random.default_rng(7)
    hr_u8 = rng.integers(0, 256, size=(2, 3, 40, 48))
    noise = rng.normal(0.4, 0.8, size=hr_u8.shape)
    hr = torch.from_numpy(hr_u8 / 255.0).float()
    sr = torch.from_numpy(np.clip((hr_u8 + noise) / 255.0, 0.0, 1.0)).float()
    return sr, hr


def test_the_pair_tells_round_from_floor(pair):
    """The case is discriminative: flooring moves PSNR-Y by far more than the tolerance."""
    sr, hr = (t.numpy() for t in pair)
    rounded = _psnr_y_numpy(sr, hr, 4, np.round)
    floored = _psnr_y_numpy(sr, hr, 4, np.floor)
    assert np.all(np.abs(rounded - floored) > 0.5)
    # no value sits on a .5 tie, where round-half-even vs half-up could disagree
    frac = (np.clip(sr.astype(np.float64), 0, 1) * 255.0) % 1.0
    assert np.abs(frac - 0.5).min() > 1e-6


@pytest.mark.parametrize("crop", [0, 4])
def test_psnr_y_rounds_to_8_bits_like_numpy(pair, crop):
    sr, hr = pair
    expected = _psnr_y_numpy(sr.numpy(), hr.numpy(), crop, np.round)
    np.testing.assert_allclose(psnr_y_batch(sr, hr, crop).numpy(), expected, rtol=0, atol=1e-6)
    assert psnr_y(sr, hr, crop) == pytest.approx(float(expected.mean()), abs=1e-6)
    assert PSNRY(crop)(sr, hr) == pytest.approx(float(expected.mean()), abs=1e-6)
    assert evaluate(sr, hr, ("psnr_y",), crop)["psnr_y"] == pytest.approx(float(expected.mean()), abs=1e-6)


def test_unquantised_psnr_y_differs_from_the_8_bit_one(pair):
    """``quantize=False`` measures the raw output: the luma of the float values, not of levels."""
    sr, hr = pair
    raw = _psnr_y_numpy(sr.numpy(), hr.numpy(), 0, lambda x: x)
    np.testing.assert_allclose(psnr_y_batch(sr, hr, quantize=False).numpy(), raw, rtol=0, atol=1e-6)
    assert abs(float(raw.mean()) - psnr_y(sr, hr)) > 0.1
