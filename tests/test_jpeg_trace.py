"""JPEG settings read from the pixels of an image saved losslessly after compression."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from ttasr.cli import main
from ttasr.degradations import degrade_with_kernel, imresize
from ttasr.degradations.kernels import alignment_shift, gaussian_kernel, kernel_size_for
from ttasr.errors import InputError
from ttasr.pairs import JpegSettings, calibrate_kernel, detect_jpeg
from ttasr.pairs.jpeg_trace import libjpeg_quality, libjpeg_tables, quantisation_step


def _photo(name: str = "astronaut", size: int = 256) -> torch.Tensor:
    from skimage import data

    img = getattr(data, name)()[:size, :size]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


def _jpeg(img: torch.Tensor, **options) -> torch.Tensor:
    """``img`` compressed by PIL with ``options`` and decoded, as a lossless copy would hold it."""
    arr = (img[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format="JPEG", **options)
    return torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1)[None].float() / 255


def _lr(name: str = "astronaut") -> torch.Tensor:
    return (imresize(_photo(name), 0.5).clamp(0, 1) * 255).round() / 255  # 128 px: 256 blocks


def test_a_step_is_the_largest_whose_multiples_the_coefficients_sit_on():
    g = torch.Generator().manual_seed(0)
    n = torch.randint(-6, 7, (400,), generator=g).double()
    noise = 0.3 * torch.randn(400, generator=g, dtype=torch.float64)
    assert quantisation_step(12 * n + noise) == 12  # not its divisors 6, 4, 3, 2, nor 13 or 24
    assert quantisation_step(40 * torch.randn(400, generator=g, dtype=torch.float64)) == 0  # never quantised
    assert quantisation_step(noise) == 0  # all zero: unreadable


@pytest.mark.parametrize("quality", [30, 60, 90])
@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_the_quality_of_a_decoded_jpeg_is_read_from_its_pixels(name, quality):
    trace = detect_jpeg(_jpeg(_lr(name), quality=quality))
    assert trace is not None and trace.quality == quality and trace.offset == (0, 0)
    assert trace.settings == JpegSettings(quality=quality)
    table = libjpeg_tables(quality)[0]
    read = [k for k, step in enumerate(trace.steps) if step]
    assert all(table[k] % trace.steps[k] == 0 for k in read)  # a thin frequency may read a divisor
    assert sum(table[k] == trace.steps[k] for k in read) >= 0.9 * len(read)


def test_a_crop_of_a_decoded_jpeg_gives_the_grid_offset():
    trace = detect_jpeg(_jpeg(_lr(), quality=75)[..., 3:, 5:])
    assert trace is not None and trace.offset == (5, 3) and trace.quality == 75


def test_uncompressed_noisy_and_resized_images_read_as_uncompressed():
    lr = _lr()
    assert detect_jpeg(lr) is None
    noisy = ((lr + 0.01 * torch.randn(lr.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
             * 255).round() / 255
    assert detect_jpeg(noisy) is None
    resized = (imresize(_jpeg(_lr(), quality=50), 0.75).clamp(0, 1) * 255).round() / 255
    assert detect_jpeg(resized) is None


def test_a_camera_table_that_is_not_libjpeg_is_read_step_by_step():
    luma = [min(255, 3 + (k // 8 + k % 8) * 2) for k in range(64)]
    trace = detect_jpeg(_jpeg(_lr(), qtables=[luma, luma]))
    assert trace is not None and trace.quality is None
    read = [k for k, step in enumerate(trace.steps) if step]
    assert len(read) >= 16 and all(trace.steps[k] == luma[k] for k in read)
    assert trace.settings.qtables is not None and all(trace.settings.qtables[0][k] == luma[k] for k in read)


def test_libjpeg_quality_accepts_divisors_where_few_coefficients_were_non_zero():
    steps = list(libjpeg_tables(50)[0])
    steps[5] //= 2 if steps[5] % 2 == 0 else steps[5]
    assert libjpeg_quality(steps) == 50
    assert libjpeg_quality([0] * 64) is None
    assert libjpeg_quality([7] * 64) is None  # no libjpeg table has all steps 7


def test_detect_jpeg_rejects_what_it_cannot_read():
    with pytest.raises(InputError, match="tiny: 16x16 is too small"):
        detect_jpeg(torch.rand(1, 3, 16, 16), name="tiny")
    with pytest.raises(InputError, match="1x1xHxW or 1x3xHxW"):
        detect_jpeg(torch.rand(1, 4, 64, 64))


def _gaussian(sigma: float, scale: int = 4) -> torch.Tensor:
    shift = alignment_shift(scale)
    return gaussian_kernel(kernel_size_for(sigma, shift), sigma, shift=shift)


def test_calibration_reads_the_jpeg_of_a_losslessly_saved_lr_and_recovers_the_kernel(caplog):
    hr = _photo()
    lr = _jpeg(degrade_with_kernel(hr, _gaussian(1.0), 4).clamp(0, 1), quality=50)
    with caplog.at_level(logging.INFO, logger="ttasr"):
        auto = calibrate_kernel([(hr, lr)], jpeg="auto", crops=2).params
    assert "libjpeg quality 50" in caplog.text
    assert auto == calibrate_kernel([(hr, lr)], jpeg=50, crops=2).params  # as if the quality were known
    assert auto["jpeg"] == 1 and abs(auto["sigma_x"] - 1.0) < 0.15 and abs(auto["sigma_y"] - 1.0) < 0.15
    assert calibrate_kernel([(hr, lr)], crops=2).params["sigma_x"] > 1.3  # the plain fit reads JPEG as blur
    # cropped off JPEG's grid: the pair is cropped back onto it
    big = _photo(size=384)
    big_lr = _jpeg(degrade_with_kernel(big, _gaussian(1.0), 4).clamp(0, 1), quality=50)
    shifted = calibrate_kernel([(big[..., 12:, 20:], big_lr[..., 3:, 5:])], jpeg="auto", crops=2).params
    assert shifted["jpeg"] == 1 and abs(shifted["sigma_x"] - 1.0) < 0.15
    # an uncompressed LR: auto finds nothing and the fit is the plain one
    clean = degrade_with_kernel(hr, _gaussian(1.4), 4)
    assert calibrate_kernel([(hr, clean)], jpeg="auto").params["jpeg"] == 0
    with pytest.raises(InputError, match="'jpg' is not a setting"):
        calibrate_kernel([(hr, lr)], jpeg="jpg")


def test_cli_kernel_models_the_jpeg_of_a_png_saved_from_a_jpeg(tmp_path, capsys):
    hr = _photo()
    lr = _jpeg(degrade_with_kernel(hr, _gaussian(1.0), 4).clamp(0, 1), quality=50)
    for tensor, path in ((hr, tmp_path / "hr.png"), (lr, tmp_path / "lr.png")):
        Image.fromarray((tensor[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    args = ["kernel", "--hr", str(tmp_path / "hr.png"), "--lr", str(tmp_path / "lr.png"), "--crops", "2",
            "-o", str(tmp_path / "k.npy")]
    assert main(args) == 0
    assert "1 modelled as JPEG" in capsys.readouterr().out
    assert main([*args, "--jpeg", "file"]) == 0
    assert "0 modelled as JPEG" in capsys.readouterr().out


def test_compress_gives_the_jpeg_an_image_was_read_to_carry():
    src = _lr("coffee")
    trace = detect_jpeg(_jpeg(src, quality=60))
    assert trace is not None
    torch.testing.assert_close(trace.compress(src), _jpeg(src, quality=60), rtol=0, atol=0)
    assert not torch.equal(trace.compress(src), src)


def test_the_heldout_error_through_jpeg_does_not_count_the_blocks_as_detail():
    """A prediction without JPEG's blocks scores 0 through JPEG against a compressed target, but not
    plainly; where no JPEG shows, both errors are the same."""
    from types import SimpleNamespace

    from ttasr.adapters.stopping import HeldOutPairs

    src = _lr("coffee")

    class Fixed(torch.nn.Module):  # predicts the uncompressed image whatever its input
        def forward(self, x):
            return src

    def errors(target, through_jpeg):
        rule = HeldOutPairs(through_jpeg=through_jpeg)
        group = SimpleNamespace(tensors=[target], name=lambda i: f"image {i}")
        adapter = SimpleNamespace(model=SimpleNamespace(scale=2), device=torch.device("cpu"))
        rule.prepare(adapter, group)
        adapter.validation_pairs = lambda g: [(src, target, 1 - adapter.holdout_masks[0])]
        return rule.score(adapter, Fixed(), group), rule

    compressed = _jpeg(src, quality=40)
    plain, _ = errors(compressed, False)
    through, rule = errors(compressed, True)
    assert plain > 1e-3 and through == 0.0
    assert rule.describe()["holdout_through_jpeg"] == "0"
    assert errors(src, True)[0] == errors(src, False)[0] == 0.0
    shifted = (src + 0.05).clamp(0, 1)
    assert errors(shifted, True)[0] == errors(shifted, False)[0] > 0
