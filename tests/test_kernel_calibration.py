"""Kernel calibration on registered (HR, LR) pairs: the bicubic kernel, recovery, errors, the CLI."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch
from PIL import Image

from ttasr import AdaSSRConfig
from ttasr.cli import main
from ttasr.degradations import (
    add_gaussian_noise,
    bicubic_kernel,
    degrade_with_kernel,
    imresize,
    response_distance,
)
from ttasr.degradations.kernels import alignment_shift, gaussian_kernel, kernel_size_for
from ttasr.errors import InputError
from ttasr.pairs import JpegSettings, calibrate_kernel, jpeg_settings_of, load_kernel, save_kernel


def _photo(size: int = 256) -> torch.Tensor:
    from skimage import data

    img = data.astronaut()[:size, 100:100 + size]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


def _gaussian(sx: float, sy: float, theta: float, scale: int = 4) -> torch.Tensor:
    shift = alignment_shift(scale)
    return gaussian_kernel(kernel_size_for(sx, shift), sx, sy, theta, shift=shift)


def _save(tensor: torch.Tensor, path) -> None:
    Image.fromarray((tensor[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(path)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_kernel_reproduces_matlab_bicubic_downscaling_away_from_the_borders(scale):
    x = torch.rand(1, 3, 24 * scale, 24 * scale, generator=torch.Generator().manual_seed(scale))
    k = bicubic_kernel(scale)
    assert k.shape[0] % 2 == 1 and abs(float(k.sum()) - 1) < 1e-9
    by_kernel = degrade_with_kernel(x, k.float(), scale)
    by_resize = imresize(x, 1 / scale)
    assert (by_kernel - by_resize)[..., 3:-3, 3:-3].abs().max() < 1e-5
    assert (degrade_with_kernel(x, bicubic_kernel(scale, 0.0).float(), scale) - by_resize)[..., 3:-3, 3:-3].abs().max() > 1e-2


def test_calibration_recovers_an_anisotropic_gaussian_and_picks_bicubic_for_bicubic_pairs():
    hr = _photo()
    lr = degrade_with_kernel(hr, _gaussian(1.7, 1.1, 0.6), 4)
    found = calibrate_kernel([(hr, lr)])
    p = found.params
    assert p["family"] == "gaussian" and p["scale"] == 4
    assert abs(p["sigma_x"] - 1.7) < 0.05 and abs(p["sigma_y"] - 1.1) < 0.05 and abs(p["theta"] - 0.6) < 0.05
    assert p["rmse_gaussian"] < 0.1 * p["rmse_bicubic"]

    clean = calibrate_kernel([(hr, imresize(hr, 0.25))], 4)
    assert clean.params["family"] == "bicubic"
    assert torch.allclose(clean.kernel, bicubic_kernel(4).float())


def test_calibration_pools_pairs_and_noise_does_not_move_the_estimate():
    hr = _photo(384)
    halves = [hr[..., :, :192], hr[..., :, 192:]]
    gen = torch.Generator().manual_seed(0)
    pairs = [(h, add_gaussian_noise(degrade_with_kernel(h, _gaussian(1.3, 1.3, 0.0), 4), 3 / 255, generator=gen))
             for h in halves]
    p = calibrate_kernel(pairs, names=["left", "right"]).params
    assert p["pairs"] == 2 and p["family"] == "gaussian"
    assert abs(p["sigma_x"] - 1.3) < 0.1 and abs(p["sigma_y"] - 1.3) < 0.1


def test_through_jpeg_the_fit_recovers_the_kernel_that_a_plain_fit_reads_too_wide():
    hr = _photo()
    settings = JpegSettings(quality=50)
    lr = settings.roundtrip(degrade_with_kernel(hr, _gaussian(1.0, 1.0, 0.0), 4).clamp(0, 1))
    plain = calibrate_kernel([(hr, lr)]).params
    through = calibrate_kernel([(hr, lr)], jpeg=50, crops=2).params
    assert through["jpeg"] == 1 and through["family"] == "gaussian"
    assert abs(through["sigma_x"] - 1.0) < 0.1 and abs(through["sigma_y"] - 1.0) < 0.1
    assert plain["sigma_x"] > 1.3  # compression reads as blur without the model of it
    with pytest.raises(InputError, match="one per pair"):
        calibrate_kernel([(hr, lr)], jpeg=[50, 50])


def test_jpeg_settings_come_from_the_file_and_reproduce_its_compression(tmp_path):
    img = _photo(64)
    Image.fromarray((img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
        tmp_path / "a.jpg", quality=70)
    _save(img, tmp_path / "a.png")
    found = jpeg_settings_of(tmp_path / "a.jpg")
    assert found is not None and found.qtables is not None and found.subsampling == 2
    assert jpeg_settings_of(tmp_path / "a.png") is None
    decoded = torch.from_numpy(np.array(Image.open(tmp_path / "a.jpg"))).permute(2, 0, 1)[None].float() / 255
    assert torch.equal(found.roundtrip(img), decoded)
    with pytest.raises(InputError, match="either a quality"):
        JpegSettings()
    with pytest.raises(InputError, match="quality must be"):
        JpegSettings(quality=0)


def test_an_hr_a_little_larger_than_scale_times_the_lr_is_cropped():
    hr = _photo()
    lr = degrade_with_kernel(hr, _gaussian(1.5, 1.5, 0.0), 4)
    padded = torch.nn.functional.pad(hr, (0, 3, 0, 2), mode="replicate")
    assert abs(calibrate_kernel([(padded, lr)]).params["sigma_x"] - 1.5) < 0.05


def test_bad_pairs_are_named_in_the_error():
    hr = _photo()
    lr = imresize(hr, 0.25)
    with pytest.raises(InputError, match="no.*pair|at least one"):
        calibrate_kernel([])
    with pytest.raises(InputError, match="cats: HR 200x200 is not an integer multiple of LR 64x64"):
        calibrate_kernel([(hr[..., :200, :200], lr)], names=["cats"])
    with pytest.raises(InputError, match="same size"):
        calibrate_kernel([(hr, hr)])
    with pytest.raises(InputError, match="scale 4, not the 2"):
        calibrate_kernel([(hr, lr)], 2)
    with pytest.raises(InputError, match="different scales"):
        calibrate_kernel([(hr, lr), (hr, imresize(hr, 0.5))])
    with pytest.raises(InputError, match="channels"):
        calibrate_kernel([(hr, lr[:, :1])])
    with pytest.raises(InputError, match="too small|at least"):
        calibrate_kernel([(hr[..., :32, :32], lr[..., :8, :8])])


def test_save_kernel_writes_npy_that_loads_back_and_refuses_other_suffixes(tmp_path):
    k = _gaussian(1.2, 0.9, 0.3)
    path = save_kernel(tmp_path / "k.npy", k)
    assert torch.equal(load_kernel(path), k.float())
    with pytest.raises(InputError, match=r"\.npy"):
        save_kernel(tmp_path / "k.txt", k)
    with pytest.raises(InputError, match="sum to 1"):
        save_kernel(tmp_path / "bad.npy", 2 * k)


def test_cli_kernel_writes_a_file_that_adapt_accepts(tmp_path, capsys, caplog):
    hr = _photo()
    lr = degrade_with_kernel(hr, _gaussian(1.6, 1.6, 0.0), 4)
    _save(hr, tmp_path / "a_hr.png")
    _save(lr, tmp_path / "a_lr.png")
    out = tmp_path / "kernels" / "camera.npy"
    assert main(["kernel", "--hr", str(tmp_path / "a_hr.png"), "--lr", str(tmp_path / "a_lr.png"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"Gaussian sigma 1\.(59|60)\d", printed) and "--kernel " + str(out) in printed
    assert "--trained-on" not in printed
    kernel = load_kernel(out)
    assert kernel.shape[0] % 2 == 1 and abs(float(kernel.sum()) - 1) < 1e-5
    assert AdaSSRConfig(kernel_estimator="given", kernel=str(out)).kernel == str(out)

    _save(lr, tmp_path / "a_lr.jpg")  # a JPEG LR: fitted through its own compression
    with caplog.at_level(logging.INFO, logger="ttasr"):
        assert main(["kernel", "--hr", str(tmp_path / "a_hr.png"), "--lr", str(tmp_path / "a_lr.jpg"),
                     "--crops", "2", "-o", str(out)]) == 0
    assert "are JPEG" in caplog.text and re.search(r"Gaussian sigma 1\.(59|60)\d", capsys.readouterr().out)
    # a bicubic-downscaled LR: the kernel of the model's training, which AdaSSR does not adapt to
    _save(imresize(hr, 1 / 4), tmp_path / "b_lr.png")
    bic = tmp_path / "bicubic.npy"
    assert main(["kernel", "--hr", str(tmp_path / "a_hr.png"), "--lr", str(tmp_path / "b_lr.png"), "-o", str(bic)]) == 0
    printed = capsys.readouterr().out
    assert "MATLAB bicubic" in printed and "--trained-on unknown" in printed
    assert response_distance(load_kernel(bic), bicubic_kernel(4), 4) <= AdaSSRConfig().gap_tolerance
    assert response_distance(load_kernel(out), bicubic_kernel(4), 4) > AdaSSRConfig().gap_tolerance
    # usage errors: unequal counts, wrong suffix
    assert main(["kernel", "--hr", str(tmp_path / "a_hr.png"), str(tmp_path / "a_hr.png"), "--lr",
                 str(tmp_path / "a_lr.png"), "-o", str(out)]) == 2
    assert main(["kernel", "--hr", str(tmp_path / "a_hr.png"), "--lr", str(tmp_path / "a_lr.png"),
                 "-o", str(tmp_path / "k.txt")]) == 2
