"""The chart path of kernel measurement: a printed polygon as an (HR, LR) pair whose HR is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ttasr.cli import main
from ttasr.degradations import bicubic_kernel, degrade_with_kernel
from ttasr.degradations.kernels import alignment_shift, gaussian_kernels, kernel_size_for
from ttasr.errors import InputError
from ttasr.io import load_images
from ttasr.pairs import (
    JpegSettings,
    calibrate_chart,
    chart_image,
    fit_chart,
    load_kernel,
    render_chart,
)
from ttasr.pairs.chart import ChartFit, _coverage, _polygon_edges

SCALE = 4


def _gaussian(sx: float, sy: float, theta: float) -> torch.Tensor:
    shift = alignment_shift(SCALE)
    size = kernel_size_for(max(sx, sy), shift)
    return gaussian_kernels(size, torch.tensor([sx]), torch.tensor([sy]), torch.tensor([theta]), shift)[0].float()


def _photo(hr: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The chart through a camera: blur, subsample, 8-bit."""
    return (degrade_with_kernel(hr, kernel, SCALE).clamp(0, 1) * 255).round() / 255


def _width(p: dict, theta: float) -> float:
    """The found Gaussian's width (HR px) along direction ``theta``."""
    a = theta - p["theta"]
    return math.sqrt((p["sigma_x"] * math.cos(a)) ** 2 + (p["sigma_y"] * math.sin(a)) ** 2)


@pytest.fixture(scope="module")
def chart() -> torch.Tensor:
    return chart_image(512)


def test_the_chart_is_a_dark_hexagon_turned_five_degrees_on_a_light_ground(chart):
    assert chart.shape == (1, 3, 512, 512)
    levels = torch.unique(chart[0, 0])
    assert float(levels.min()) == pytest.approx(0.25) and float(levels.max()) == pytest.approx(0.75)
    covered = float(((0.75 - chart[0, 0]) / 0.5).sum())  # the hexagon's area, from the pixels' coverage
    apothem = 0.5 * 512 / 2
    assert covered == pytest.approx(6 * apothem**2 * math.tan(math.pi / 6), rel=1e-3)
    for bad in ({"angle_deg": 0.0}, {"fill": 0.95}, {"sides": 2}, {"dark": 0.6}):
        with pytest.raises(InputError):
            chart_image(64, **bad)


def test_the_fit_places_the_edges_to_a_hundredth_of_a_pixel(chart):
    fit = fit_chart(_photo(chart, _gaussian(1.2, 1.2, 0.0)))
    # the hexagon's centre at HR (255.5, 255.5) is LR ((255.5 - 1.5) / 4) = 63.5; 256 HR px across
    assert fit.width_across == pytest.approx(64.0, abs=0.02)
    for k, (x, y) in enumerate(fit.corners()):
        # corner k lies between the normals at 5 + 60k and 5 + 60(k + 1) degrees, one circumradius out
        a = math.radians(5 + 60 * k + 30)
        radius = 32 / math.cos(math.pi / 6)
        assert math.hypot(x - (63.5 + radius * math.cos(a)), y - (63.5 + radius * math.sin(a))) < 0.02
    assert fit.slant_deg == pytest.approx(5.0, abs=0.05)
    # the error-function width across an edge is the blur's plus an HR pixel's box, in LR px
    expected = math.sqrt((1.2 / SCALE) ** 2 + 1 / (12 * SCALE**2))
    assert all(w == pytest.approx(expected, abs=0.01) for w in fit.widths)
    assert fit.inside[0] == pytest.approx(0.25, abs=0.005) and fit.outside[0] == pytest.approx(0.75, abs=0.005)


def test_the_drawn_hr_is_registered_with_the_photo(chart):
    kernel = _gaussian(1.4, 1.1, 0.3)
    lr = _photo(chart, kernel)
    fit = fit_chart(lr)
    top, left, bottom, right = fit.box
    again = degrade_with_kernel(render_chart(fit, SCALE), kernel, SCALE)
    diff = (again - lr[..., top:bottom, left:right])[..., 8:-8, 8:-8]  # away from the window's padding
    assert float(diff.square().mean().sqrt()) * 255 < 0.5
    shifted = degrade_with_kernel(render_chart(fit, SCALE).roll(1, -1), kernel, SCALE)  # a quarter LR px off
    assert float((shifted - lr[..., top:bottom, left:right])[..., 8:-8, 8:-8].square().mean().sqrt()) * 255 > 1.5


def test_the_chart_recovers_an_anisotropic_turned_gaussian_and_recognises_bicubic(chart):
    found = calibrate_chart([_photo(chart, _gaussian(1.6, 1.0, 0.5))], SCALE, jpeg=None).params
    assert found["family"] == "gaussian" and found["estimator"] == "chart"
    for theta in np.linspace(0, math.pi, 12, endpoint=False):  # its width along every direction
        true = math.sqrt((1.6 * math.cos(theta - 0.5)) ** 2 + (1.0 * math.sin(theta - 0.5)) ** 2)
        assert _width(found, theta) == pytest.approx(true, abs=0.04)
    bicubic = _photo(chart, bicubic_kernel(SCALE, alignment_shift(SCALE)))
    assert calibrate_chart([bicubic], SCALE, jpeg=None).params["family"] == "bicubic"


def test_through_jpeg_read_from_the_pixels_the_chart_keeps_the_kernel_a_plain_fit_reads_too_wide():
    chart = chart_image(1024)
    lr = JpegSettings(quality=50).roundtrip(_photo(chart, _gaussian(1.0, 1.0, 0.0)))
    auto = calibrate_chart([lr], SCALE).params  # jpeg="auto": read from the pixels
    plain = calibrate_chart([lr], SCALE, jpeg=None).params
    assert auto["jpeg"] == 1 and plain["jpeg"] == 0
    assert all(abs(_width(auto, t) - 1.0) < 0.12 for t in np.linspace(0, math.pi, 8, endpoint=False))
    assert max(plain["sigma_x"], plain["sigma_y"]) > 1.5


def test_a_chart_seen_off_axis_still_gives_the_kernel():
    """A homography keeps edges straight: each edge's own angle absorbs it (corners move up to 6 %)."""
    size, centre = 512, 255.5
    h = torch.tensor([[1.0, 0.05, 0.0], [0.02, 0.97, 0.0], [8e-5, -5e-5, 1.0]], dtype=torch.float64)
    normals, offsets = _polygon_edges((centre, centre), size / 4, math.radians(5), 6)
    straight = ChartFit(tuple(normals), tuple(offsets), (0.0,), (0.0,), (1.0,) * 6, 0.0, (0, 0, 1, 1))
    seen = []
    for x, y in straight.corners():
        v = h @ torch.tensor([x - centre, y - centre, 1.0], dtype=torch.float64)
        seen.append((float(v[0] / v[2]) + centre, float(v[1] / v[2]) + centre))
    warped_normals, warped_offsets = [], []
    for (x1, y1), (x2, y2) in zip(seen[-1:] + seen[:-1], seen):  # edge e runs from corner e-1 to e
        a = math.atan2(x1 - x2, y2 - y1)
        if math.cos(a) * ((x1 + x2) / 2 - centre) + math.sin(a) * ((y1 + y2) / 2 - centre) < 0:
            a += math.pi  # outward
        warped_normals.append(a)
        warped_offsets.append(math.cos(a) * x1 + math.sin(a) * y1)
    hr = (0.75 - 0.5 * _coverage(size, size, warped_normals, warped_offsets, (1.0, 0.0))).expand(1, 3, size, size)
    found = calibrate_chart([_photo(hr.contiguous(), _gaussian(1.3, 1.0, 0.4))], SCALE, jpeg=None).params
    for theta in np.linspace(0, math.pi, 12, endpoint=False):
        true = math.sqrt((1.3 * math.cos(theta - 0.4)) ** 2 + (1.0 * math.sin(theta - 0.4)) ** 2)
        assert _width(found, theta) == pytest.approx(true, abs=0.03)


def test_a_photo_without_a_whole_chart_is_named_in_the_error(chart):
    flat = torch.full((1, 3, 96, 96), 0.5)
    with pytest.raises(InputError, match="flat.png: no chart found"):
        fit_chart(flat, name="flat.png")
    lr = _photo(chart, _gaussian(1.2, 1.2, 0.0))
    with pytest.raises(InputError, match="cut.png: .*frame"):
        fit_chart(lr[..., 40:, 40:], name="cut.png")
    with pytest.raises(InputError, match="tiny.png: .*too small"):
        fit_chart(lr[..., :20, :20], name="tiny.png")
    table = chart.clone()
    table[..., :96, :] = 0.15  # a dark table beyond the paper
    with pytest.raises(InputError, match="table.png: .*crop the photo"):
        fit_chart(_photo(table, _gaussian(1.2, 1.2, 0.0)), name="table.png")
    clipped = _photo(chart_image(512, dark=0.0, light=1.0), _gaussian(1.2, 1.2, 0.0))
    with pytest.raises(InputError, match="clip.png: .*clipped"):
        fit_chart(clipped, name="clip.png")
    with pytest.raises(InputError, match="could not be fitted|frame"):  # a square is not a hexagon
        fit_chart(_photo(chart_image(512, sides=4), _gaussian(1.2, 1.2, 0.0)), name="square.png")


def test_cli_writes_the_chart_and_measures_a_kernel_from_its_photo(tmp_path, capsys):
    assert main(["chart", "-o", str(tmp_path / "chart.png"), "--size", "512"]) == 0
    chart = load_images(tmp_path / "chart.png").records[0].rgb
    assert chart.shape == (1, 3, 512, 512)
    lr = _photo(chart, _gaussian(1.5, 1.5, 0.0))
    Image.fromarray((lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "photo.png")
    out = tmp_path / "k.npy"
    assert main(["kernel", "--chart", str(tmp_path / "photo.png"), "-o", str(out)]) == 2  # no --scale
    assert main(["kernel", "--chart", str(tmp_path / "photo.png"), "--hr", str(tmp_path / "chart.png"),
                 "--scale", "4", "-o", str(out)]) == 2  # chart and pairs at once
    assert main(["kernel", "--chart", str(tmp_path / "photo.png"), "--scale", "4", "-o", str(out)]) == 0
    assert "over 1 chart photo(s)" in capsys.readouterr().out
    kernel = load_kernel(out)
    # the written kernel's spread: a Gaussian of sigma 1.5 about its centre
    r = torch.arange(kernel.shape[0], dtype=torch.float64)
    m = kernel.double().sum(0)
    centre = float((m * r).sum())
    assert math.sqrt(float((m * (r - centre) ** 2).sum())) == pytest.approx(1.5, abs=0.05)
    assert main(["chart", "-o", str(tmp_path / "c.png"), "--angle", "0"]) == 2
