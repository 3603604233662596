"""What the HR-aware, LWay and pretraining tests share: a tiny reconstructor and one thread."""

from __future__ import annotations

import pytest
import torch

TINY_NET = dict(embed_dim=8, degradation_channels=4, degradation_blocks=1, image_channels=4, image_blocks=1,
                reconstructor_channels=4, reconstructor_blocks=1)
"""A reconstructor of a few hundred weights (ReconstructorConfig fields)."""


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run faster on one thread than on two that other processes share."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
