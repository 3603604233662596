"""Metrics: Y-channel PSNR/SSIM against scikit-image, NIQE against pyiqa's published
calibration score, and clear errors for every metric whose files are absent."""

from __future__ import annotations

import io
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ttasr.errors import InputError
from ttasr.metrics import (
    METRICS,
    NIQE,
    PI,
    MetricUnavailableError,
    evaluate,
    fetch_niqe_params,
    load_niqe_params,
    niqe_params_path,
    perceptual_index,
    psnr_y,
    psnr_y_batch,
    rgb_to_y,
    ssim_y,
    ssim_y_batch,
)

skimage = pytest.importorskip("skimage")
from skimage import color, data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].double() / 255.0


def _jpeg_u8(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.array(Image.open(buf).convert("RGB"))


@pytest.fixture(scope="module")
def photo_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Real photos (uint8 RGB) and distorted copies: JPEG and additive noise."""
    rng = np.random.default_rng(0)
    pairs = []
    for hr in (data.astronaut()[:200, :240], data.chelsea()[:160, :200], data.coffee()[100:260, 200:380]):
        pairs.append((hr, _jpeg_u8(hr, 30)))
        noisy = np.clip(hr.astype(np.float64) + rng.normal(0, 6, hr.shape), 0, 255).round().astype(np.uint8)
        pairs.append((hr, noisy))
    return pairs


# --------------------------------------------------------------------------- fidelity


def test_rgb_to_y_matches_matlab_rgb2ycbcr_via_skimage():
    img = data.coffee()
    ours = rgb_to_y(_to_tensor(img))[0, 0].numpy() * 255.0
    ref = color.rgb2ycbcr(img)[..., 0]  # BT.601 studio range, Y in [16, 235]
    np.testing.assert_allclose(ours, ref, atol=1e-9)
    assert 16.0 - 1e-9 <= ours.min() and ours.max() <= 235.0 + 1e-9


@pytest.mark.parametrize("crop", [0, 4])
def test_psnr_y_and_ssim_y_match_skimage_on_real_photos(photo_pairs, crop):
    for hr, sr in photo_pairs:
        c = slice(crop, -crop) if crop else slice(None)
        y_hr = color.rgb2ycbcr(hr)[c, c, 0]
        y_sr = color.rgb2ycbcr(sr)[c, c, 0]
        ref_psnr = peak_signal_noise_ratio(y_hr, y_sr, data_range=255)
        ref_ssim = structural_similarity(y_hr, y_sr, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=255)
        got_psnr = psnr_y(_to_tensor(sr), _to_tensor(hr), crop)
        got_ssim = ssim_y(_to_tensor(sr), _to_tensor(hr), crop)
        assert got_psnr == pytest.approx(ref_psnr, abs=1e-8)
        assert got_ssim == pytest.approx(ref_ssim, abs=1e-8)
        assert 15 < got_psnr < 45 and 0.3 < got_ssim < 1.0  # distortions are real, not no-ops


def test_batch_versions_average_per_image_scores(photo_pairs):
    (hr1, sr1), (_, sr2) = photo_pairs[0], photo_pairs[1]
    hr = torch.cat([_to_tensor(hr1)] * 2)
    sr = torch.cat([_to_tensor(sr1), _to_tensor(sr2)])
    per = psnr_y_batch(sr, hr, 2)
    assert per.shape == (2,) and per[0] != per[1]
    assert psnr_y(sr, hr, 2) == pytest.approx(float(per.mean()))
    assert ssim_y(sr, hr, 2) == pytest.approx(float(ssim_y_batch(sr, hr, 2).mean()))
    # float32 input gives the same numbers as float64 (computation is float64 inside)
    assert psnr_y(sr.float(), hr.float(), 2) == pytest.approx(float(per.mean()), abs=1e-6)


def test_identical_images_and_quantisation():
    x = _to_tensor(data.astronaut()[:64, :64])
    assert math.isinf(psnr_y(x, x, 2)) and ssim_y(x, x, 2) == pytest.approx(1.0, abs=1e-12)
    tiny = (x + 0.3 / 255).clamp(0, 1)  # rounds back to the same 8-bit image
    assert math.isinf(psnr_y(tiny, x))
    assert 55 < psnr_y(tiny, x, quantize=False) < 65  # 0.3 levels of error ~ 58.6 dB


def test_fidelity_shape_errors_name_the_fix():
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 30, 32)
    with pytest.raises(InputError, match="mod-crop"):
        psnr_y(a, b, 0)
    with pytest.raises(InputError, match="crop_border"):
        ssim_y(a, a, 16)
    with pytest.raises(InputError, match="at least 11x11"):
        ssim_y(torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12), 1)


# --------------------------------------------------------------------------- NIQE

_CALIBRA = Path(__import__("pyiqa").__file__).resolve().parents[1] / "ResultsCalibra" / "dist_dir"
# MATLAB NIQE ("NIQE(org)" in pyiqa's ResultsCalibra.md: rgb2gray + niqe_release.zip) on pyiqa's
# calibration images, with the tolerance pyiqa's port is known to meet on each (it matches
# MATLAB to 1e-4 on I04 but departs by 0.4 on I19, in pyiqa's own table too).
_MATLAB_NIQE = {"I04": (3.6549, 1e-3), "I06": (3.2355, 0.01), "I08": (3.1840, 0.02)}


@pytest.fixture(scope="module")
def niqe_file(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("niqe")
    try:
        return fetch_niqe_params(dest, quiet=True)
    except MetricUnavailableError as exc:  # no PyPI access: the only reason to skip
        pytest.skip(f"cannot fetch NIQE parameters from PyPI's basicsr sdist: {exc}")


def _calibra(name: str) -> torch.Tensor:
    path = _CALIBRA / f"{name}.bmp"
    if not path.is_file():
        pytest.skip(f"pyiqa's calibration image {path} is not installed")
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255


def test_fetched_niqe_params_file_is_keyed_like_matlab_and_idempotent(niqe_file):
    import scipy.io

    mat = scipy.io.loadmat(niqe_file)
    assert mat["mu_prisparam"].shape == (1, 36) and mat["cov_prisparam"].shape == (36, 36)
    _, cov = load_niqe_params(niqe_file)
    np.testing.assert_allclose(cov, cov.T)  # a covariance
    assert np.linalg.eigvalsh(cov).min() > 0
    mtime = niqe_file.stat().st_mtime_ns
    t = time.perf_counter()
    again = fetch_niqe_params(niqe_file.parent, quiet=True)
    assert again == niqe_file and niqe_file.stat().st_mtime_ns == mtime
    assert time.perf_counter() - t < 1.0  # no download the second time


@pytest.mark.parametrize("name", sorted(_MATLAB_NIQE))
def test_niqe_reproduces_matlab_on_pyiqa_calibration_images(niqe_file, name):
    ref, tol = _MATLAB_NIQE[name]
    assert NIQE(niqe_file)(_calibra(name)) == pytest.approx(ref, abs=tol)


def test_niqe_is_lower_for_the_clean_image_than_a_blurred_noisy_copy(niqe_file):
    from ttasr.degradations import blur, gaussian_kernel

    x = _calibra("I04")
    metric = NIQE(niqe_file)
    bad = (blur(x, gaussian_kernel(9, 2.0)) + 0.05 * torch.randn_like(x)).clamp(0, 1)
    scores = metric.per_image(torch.cat([x, bad]))
    assert scores.shape == (2,) and scores[0] < scores[1] - 1.0


def test_niqe_params_resolution_order(niqe_file, tmp_path, monkeypatch):
    from ttasr._fs import cache_dir

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MetricUnavailableError) as err:
        niqe_params_path(allow_download=False)
    msg = str(err.value)
    assert "ttasr metrics fetch niqe" in msg and "niqe_params=" in msg
    assert str(tmp_path / "torch" / "hub" / "pyiqa" / "niqe_modelparameters.mat") in msg
    # pyiqa's cache is used when ttasr's is empty
    pyiqa_cache = tmp_path / "torch" / "hub" / "pyiqa"
    pyiqa_cache.mkdir(parents=True)
    (pyiqa_cache / niqe_file.name).write_bytes(niqe_file.read_bytes())
    assert niqe_params_path(allow_download=False) == pyiqa_cache / niqe_file.name
    # ttasr's cache wins over pyiqa's; an explicit path wins over both
    ours = cache_dir("metrics") / niqe_file.name
    ours.write_bytes(niqe_file.read_bytes())
    assert niqe_params_path(allow_download=False) == ours
    assert niqe_params_path(niqe_file) == niqe_file
    with pytest.raises(MetricUnavailableError, match="is not a file"):
        niqe_params_path(tmp_path / "nope.mat")


def test_niqe_rejects_small_or_out_of_range_images(niqe_file):
    metric = NIQE(niqe_file)
    with pytest.raises(InputError, match="at least 384x384"):
        metric(torch.rand(1, 3, 256, 512))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        metric(torch.rand(1, 3, 400, 400) * 2)


def test_bad_niqe_file_and_bad_sdist_are_refused(tmp_path):
    import scipy.io

    bad = tmp_path / "niqe_modelparameters.mat"
    scipy.io.savemat(bad, {"mu_prisparam": np.zeros((1, 5))})
    with pytest.raises(MetricUnavailableError, match="cov_prisparam"):
        load_niqe_params(bad)
    fake = tmp_path / "basicsr-1.4.2.tar.gz"
    fake.write_bytes(b"not the sdist")
    with pytest.raises(MetricUnavailableError, match="sha256"):
        fetch_niqe_params(tmp_path / "out", sdist=fake)
    assert not (tmp_path / "out" / "niqe_modelparameters.mat").exists()


# --------------------------------------------------------------------------- LPIPS / BRISQUE / NRQM / PI


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("TTASR_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


@pytest.mark.parametrize(
    "build, filename, argument",
    [
        (lambda: __import__("ttasr.metrics", fromlist=["LPIPS"]).LPIPS(), "alexnet-owt-7be5be79.pth", "lpips_backbone="),
        (lambda: __import__("ttasr.metrics", fromlist=["BRISQUE"]).BRISQUE(), "brisque_svm_weights.pth", "brisque_params="),
        (lambda: __import__("ttasr.metrics", fromlist=["NRQM"]).NRQM(), "NRQM_model.mat", "nrqm_params="),
        (lambda: PI(niqe_metric=lambda x: torch.zeros(1)), "NRQM_model.mat", "nrqm_params="),
    ],
)
def test_missing_weight_files_give_clear_errors(offline, tmp_path, build, filename, argument):
    with pytest.raises(MetricUnavailableError) as err:
        build()
    msg = str(err.value)
    assert filename in msg and argument in msg and "downloads disabled" in msg
    assert str(tmp_path / "torch" / "hub") in msg  # names the upstream cache folder
    assert os.environ["TTASR_HOME"] in msg  # and ttasr's


def test_lpips_loads_a_local_alexnet_backbone(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from ttasr.metrics import LPIPS

    torch.manual_seed(0)
    features = {k: v for k, v in torchvision.models.alexnet(weights=None).state_dict().items()
                if k.startswith("features.")}
    path = tmp_path / "alexnet.pth"
    torch.save(features, path)
    metric = LPIPS(path, allow_download=False)
    net = metric._net(torch.device("cpu")).net
    torch.testing.assert_close(net.slice3.state_dict()["6.weight"], features["features.6.weight"])
    x = _to_tensor(data.astronaut()[:64, :64]).float()
    noise = torch.randn_like(x)
    d = [metric((x + s * noise).clamp(0, 1), x) for s in (0.0, 0.05, 0.2)]
    assert d[0] == pytest.approx(0.0, abs=1e-7) and 0 < d[1] < d[2]
    torch.save({"features.0.weight": torch.zeros(3)}, path)
    with pytest.raises(MetricUnavailableError, match="not torchvision's AlexNet"):
        LPIPS(path)


def test_perceptual_index_formula_with_injected_scores():
    assert perceptual_index(8.0, 4.0) == pytest.approx(3.0)
    seen = []

    def nrqm(x):
        seen.append(x.shape)
        return torch.tensor([7.5, 9.0])

    metric = PI(nrqm_metric=nrqm, niqe_metric=lambda x: torch.tensor([5.0, 3.0]))
    x = torch.rand(2, 3, 8, 8)
    per = metric.per_image(x)
    torch.testing.assert_close(per, torch.tensor([3.75, 2.0], dtype=torch.float64))
    assert metric(x) == pytest.approx(2.875) and seen == [x.shape, x.shape]
    assert PI.higher_is_better is False


# --------------------------------------------------------------------------- evaluate / table


def test_metrics_table_directions():
    assert METRICS["psnr_y"].higher_is_better and METRICS["nrqm"].higher_is_better
    assert not any(METRICS[n].higher_is_better for n in ("lpips", "niqe", "brisque", "pi"))
    assert {n for n, m in METRICS.items() if m.needs_reference} == {"psnr_y", "ssim_y", "lpips"}


def test_evaluate_matches_the_functions_and_never_skips_silently(photo_pairs, offline):
    hr, sr = (_to_tensor(a).float() for a in photo_pairs[0])
    res = evaluate(sr, hr, ("psnr_y", "ssim_y"), crop_border=4)
    assert res == {"psnr_y": pytest.approx(psnr_y(sr, hr, 4)), "ssim_y": pytest.approx(ssim_y(sr, hr, 4))}
    with pytest.raises(InputError, match="Did you mean psnr_y"):
        evaluate(sr, hr, ("psnr-",))
    with pytest.raises(InputError, match="pass hr="):
        evaluate(sr, None, ("ssim_y",))
    with pytest.raises(MetricUnavailableError, match="alexnet"):
        evaluate(sr, hr, ("psnr_y", "lpips"))
    res = evaluate(sr, hr, ("psnr_y", "lpips", "brisque"), crop_border=4, skip_unavailable=True)
    assert set(res) == {"psnr_y"} and set(res.skipped) == {"lpips", "brisque"}
    assert "alexnet-owt-7be5be79.pth" in res.skipped["lpips"]


def test_evaluate_niqe_uses_given_params(niqe_file):
    x = _calibra("I04")
    res = evaluate(x, None, ("niqe",), paths={"niqe_params": niqe_file})
    assert res["niqe"] == pytest.approx(_MATLAB_NIQE["I04"][0], abs=1e-3)
    with pytest.raises(InputError, match="unknown key"):
        evaluate(x, None, ("niqe",), paths={"niqe": niqe_file})
