"""`benchmarks/degradation_detectors.py`: its noise and JPEG detectors on images of known
degradation (the figures on the proxy presets are in benchmarks/RESULTS.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ttasr.degradations.noise import jpeg

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def detectors():
    spec = importlib.util.spec_from_file_location("degradation_detectors", ROOT / "benchmarks" /
                                                  "degradation_detectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    from skimage import data

    img = data.astronaut()[:256, 128:384]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


def test_jpeg_dc_step_reads_the_quality_from_the_luma_table(detectors, astronaut):
    assert detectors.jpeg_dc_step(astronaut) is None
    # libjpeg's luma DC entry is 16 at quality 50 and 50/q times that below it: 50 -> 16, 25 -> 32
    for quality, step in ((50, 16), (25, 32)):
        assert detectors.jpeg_dc_step(jpeg(astronaut, quality)) == step
    cropped = jpeg(astronaut, 50)[..., 3:, 5:]  # the grid is searched at every offset
    assert detectors.jpeg_dc_step(cropped) == 16


def test_pca_noise_level_recovers_added_noise_and_ignores_texture(detectors):
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    texture = (0.5 + 0.3 * torch.sin(40 * xx) * torch.cos(25 * yy)).expand(1, 3, 128, 128)
    for sigma in (2.0, 5.0, 10.0):
        noisy = texture + torch.randn(texture.shape, generator=g) * sigma / 255.0
        assert detectors.pca_noise_level(noisy) == pytest.approx(sigma, rel=0.15)
    assert detectors.pca_noise_level(texture) < 0.5
