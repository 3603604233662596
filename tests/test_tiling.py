"""Tiled inference: equals untiled inference, respects size requirements and tiling hints,
halves tiles on out-of-memory, runs in supported dtypes only."""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

import ttasr
from ttasr.errors import InputError
from ttasr.inference import (
    blend_window,
    enhance,
    enhance_tensor,
    seam_margin,
    tile_spans,
    tile_starts,
    weight_sum,
)
from ttasr.inference.tiling import normalised_windows, tile_size
from ttasr.models import SizeRequirements


def tiny_net(scale: int, seed: int = 0) -> nn.Module:
    """Three 3x3 convs then PixelShuffle: receptive-field radius 3 LR pixels."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale),
    )


class Recorder(nn.Module):
    """Wraps a network; records input sizes and batch sizes, refuses sizes it does not accept,
    and fakes a CUDA out-of-memory error for inputs above ``oom_pixels`` pixels per image or
    ``oom_batch_pixels`` pixels per batch."""

    def __init__(self, net: nn.Module, multiple_of: int = 1, minimum: int = 0, oom_pixels: int | None = None,
                 oom_batch_pixels: int | None = None):
        super().__init__()
        self.net = net
        self.multiple_of, self.minimum, self.oom_pixels = multiple_of, minimum, oom_pixels
        self.oom_batch_pixels = oom_batch_pixels
        self.shapes: list[tuple[int, int]] = []
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        assert h % self.multiple_of == 0 and w % self.multiple_of == 0, f"{h}x{w} not a multiple of {self.multiple_of}"
        assert min(h, w) >= self.minimum, f"{h}x{w} below minimum {self.minimum}"
        if self.oom_pixels is not None and h * w > self.oom_pixels:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake, {h}x{w})")
        if self.oom_batch_pixels is not None and b * h * w > self.oom_batch_pixels:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake, {b}x{h}x{w})")
        self.shapes.extend([(h, w)] * b)
        self.batches.append(b)
        return self.net(x)


def _with(net: nn.Module, scale: int, tiling: str = "supported", multiple_of: int = 1, minimum: int = 0,
          **flags) -> ttasr.SRModel:
    m = ttasr.load_model(net, scale=scale)
    if isinstance(net, Recorder):
        net.shapes.clear()  # load_model's scale probe is not an enhance call
        net.batches.clear()
    m.size_requirements = SizeRequirements(minimum=minimum, multiple_of=multiple_of)
    m.tiling = tiling
    for k, v in flags.items():
        setattr(m, k, v)
    return m


# ---------------------------------------------------------------------------- layout
LAYOUTS = [(100, 32, 8, 1), (64, 32, 0, 1), (33, 32, 16, 1), (20, 32, 8, 1), (257, 64, 17, 1), (640, 512, 32, 1),
           (1000, 96, 48, 1), (100, 64, 32, 1), (37, 24, 12, 8), (1080, 512, 32, 16), (130, 30, 10, 4)]


@pytest.mark.parametrize("length,tile,overlap,multiple_of", LAYOUTS)
def test_tiles_cover_with_at_least_the_overlap(length, tile, overlap, multiple_of) -> None:
    starts = tile_starts(length, tile, overlap, multiple_of)
    size = tile_size(length, tile, overlap, multiple_of)
    assert size <= min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    overlaps = [a + size - b for a, b in itertools.pairwise(starts)]
    assert all(o >= overlap for o in overlaps) and all(b > a for a, b in itertools.pairwise(starts))
    assert not overlaps or max(overlaps) - min(overlaps) <= 1  # spread evenly
    if len(starts) > 1 and -(-size // multiple_of) * multiple_of <= tile:
        assert size % multiple_of == 0  # no padding needed


@pytest.mark.parametrize("length,tile,overlap,multiple_of", LAYOUTS)
def test_layout_uses_the_fewest_tiles(length, tile, overlap, multiple_of) -> None:
    n = len(tile_starts(length, tile, overlap, multiple_of))
    # n - 1 tiles of the largest size allowed, overlapping by `overlap`, fall short
    assert n == 1 or (n - 1) * tile - (n - 2) * overlap < length
    # and the tiles are no larger than n equal tiles need (up to the size multiple)
    need = -(-(length + (n - 1) * overlap) // n)
    assert tile_size(length, tile, overlap, multiple_of) < need + multiple_of


def test_layout_of_a_vga_image() -> None:
    """480x640 with 512 px tiles: 1x2 tiles of 480x336 (1.05x the pixels), not 480x512 (1.6x)."""
    assert (tile_starts(480, 512, 32), tile_size(480, 512, 32)) == ([0], 480)
    assert (tile_starts(640, 512, 32), tile_size(640, 512, 32)) == ([0, 304], 336)
    rec = Recorder(tiny_net(2))
    enhance_tensor(_with(rec, 2), torch.rand(1, 3, 480, 640), tile=512, overlap=32)
    assert rec.shapes == [(480, 336), (480, 336)]
    assert tile_size(1080, 512, 32, 16) == 384 and tile_starts(1080, 512, 32, 16) == [0, 348, 696]


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_windows_sum_positive_zero_margin_and_smooth(scale) -> None:
    spans = tile_spans(150, 48, 16, scale)
    total = weight_sum(spans, 150, scale)
    assert float(total.min()) > 0.2
    m = seam_margin(16)
    inner = spans[1].weight
    assert float(inner[: m * scale].abs().max()) == 0.0 and float(inner[-m * scale:].abs().max()) == 0.0
    assert float(inner[len(inner) // 2]) == 1.0
    assert float(inner.diff().abs().max()) <= math.pi / 2 / ((16 - 2 * m) * scale) + 1e-6  # no jumps
    border = blend_window(48, scale, 16, ramp_start=False, ramp_end=True)
    assert float(border[0]) == 1.0


@pytest.mark.parametrize("scale", [1, 3])
def test_normalised_windows_sum_to_one(scale) -> None:
    spans = tile_spans(100, 64, 32, scale)  # three tiles, the outer two overlapping too
    total = torch.zeros(100 * scale, dtype=torch.float64)
    for sp, win in zip(spans, normalised_windows(spans, 100, scale), strict=True):
        total[sp.start * scale:(sp.start + sp.size) * scale] += win.double()
        assert win.dtype == torch.float32 and win.device.type == "cpu"
    torch.testing.assert_close(total, torch.ones_like(total), atol=3e-7, rtol=0)


# ---------------------------------------------------------------------------- equality
@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("tile,overlap", [(24, 12), (32, 16), (40, 32)])
def test_tiled_equals_untiled_when_overlap_covers_receptive_field(scale, tile, overlap) -> None:
    # seam margin overlap // 4 >= 3 = receptive-field radius
    model = ttasr.load_model(tiny_net(scale), scale=scale)
    x = torch.rand(1, 3, 61, 83)
    ref = enhance_tensor(model, x, tile=None, clamp=False)
    out = enhance_tensor(model, x, tile=tile, overlap=overlap, clamp=False)
    assert out.shape == (1, 3, 61 * scale, 83 * scale)
    assert float((out - ref).abs().max()) < 1e-5


def test_tiling_without_overlap_shows_seams() -> None:
    """The equality test above is sensitive: with no overlap the seams differ."""
    model = ttasr.load_model(tiny_net(2), scale=2)
    x = torch.rand(1, 3, 64, 64)
    ref = enhance_tensor(model, x, tile=None, clamp=False)
    out = enhance_tensor(model, x, tile=32, overlap=0, clamp=False)
    assert float((out - ref).abs().max()) > 1e-3


def test_spandrel_span_tiled_equals_untiled() -> None:
    pytest.importorskip("spandrel")
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2)
    model = ttasr.load_model(net.state_dict())
    assert model.architecture == "SPAN" and model.scale == 2
    x = torch.rand(1, 3, 100, 150)
    ref = enhance_tensor(model, x, tile=None, clamp=False)
    # SPAN's receptive-field radius is 11 LR pixels: a seam margin of 48 // 4 = 12 makes it exact
    # (up to float rounding: oneDNN sums convolutions of other widths in another order, 1.3e-5
    # here on outputs reaching 42)
    exact = enhance_tensor(model, x, tile=96, overlap=48, clamp=False)
    assert float((exact - ref).abs().max()) < 3e-5
    # a margin of 16 // 4 = 4 < 11 leaves small seams: 8e-4 at most here, on outputs of std 7.6
    close = enhance_tensor(model, x, tile=48, overlap=16, clamp=False)
    assert 2e-4 < float((close - ref).abs().max()) < 2e-3


# ---------------------------------------------------------------------------- requirements
def test_size_requirements_are_respected_and_cropped() -> None:
    rec = Recorder(tiny_net(2), multiple_of=8, minimum=16)
    model = _with(rec, 2, multiple_of=8, minimum=16)
    x = torch.rand(1, 3, 37, 45)
    out = enhance_tensor(model, x, tile=30, overlap=12, clamp=False)  # tile rounds down to 24
    assert out.shape == (1, 3, 74, 90)
    assert rec.shapes and all(h % 8 == 0 and w % 8 == 0 and min(h, w) >= 16 for h, w in rec.shapes)
    assert max(h for h, _ in rec.shapes) == 24  # tiles, never the whole image
    with torch.no_grad():
        ref = tiny_net(2)(x)
    # away from the bottom/right border (where padding differs) it matches the bare network
    assert float((out - ref)[..., :60, :70].abs().max()) < 1e-5

    small = torch.rand(1, 3, 5, 11)
    assert enhance_tensor(model, small, tile=None).shape == (1, 3, 10, 22)  # padded to 16x16


def test_model_sees_only_tiles() -> None:
    rec = Recorder(tiny_net(2))
    model = _with(rec, 2)
    enhance_tensor(model, torch.rand(1, 3, 100, 130), tile=32, overlap=8)
    assert set(rec.shapes) == {(tile_size(100, 32, 8), tile_size(130, 32, 8))} == {(31, 29)}
    assert len(rec.shapes) == len(tile_starts(100, 32, 8)) * len(tile_starts(130, 32, 8)) == 4 * 6


def test_internal_tiling_never_tiles_and_discouraged_only_when_needed(caplog) -> None:
    rec = Recorder(tiny_net(2))
    enhance_tensor(_with(rec, 2, tiling="internal"), torch.rand(1, 3, 50, 60), tile=16)
    assert rec.shapes == [(50, 60)]
    rec = Recorder(tiny_net(2))
    enhance_tensor(_with(rec, 2, tiling="discouraged"), torch.rand(1, 3, 50, 60), tile=16)
    assert rec.shapes == [(50, 60)]
    rec = Recorder(tiny_net(2), oom_pixels=40 * 40)
    with caplog.at_level(logging.WARNING):
        enhance_tensor(_with(rec, 2, tiling="discouraged"), torch.rand(1, 3, 50, 60), tile=24, overlap=8)
    assert rec.shapes and set(rec.shapes) == {(tile_size(50, 24, 8), tile_size(60, 24, 8))} == {(22, 21)}
    assert "discouraged" in caplog.text


# ---------------------------------------------------------------------------- out of memory
def test_out_of_memory_halves_the_tile(caplog) -> None:
    net = tiny_net(2)
    rec = Recorder(net, oom_pixels=32 * 32)
    model = _with(rec, 2)
    x = torch.rand(1, 3, 80, 100)
    with caplog.at_level(logging.WARNING, logger="ttasr.inference.enhance"):
        out = enhance_tensor(model, x, tile=128, overlap=16, clamp=False)
    assert "retrying with 50 px" in caplog.text and "retrying with 25 px" in caplog.text
    assert set(rec.shapes) == {(tile_size(80, 25, 12), tile_size(100, 25, 12))} == {(24, 25)}
    with torch.no_grad():
        assert float((out - net(x)).abs().max()) < 1e-5


def test_out_of_memory_halves_the_tile_batch_first(caplog) -> None:
    net = tiny_net(2)
    x = torch.rand(1, 3, 80, 100)  # 4 x 5 tiles of 29 x 30 with tile 32, overlap 12
    rec = Recorder(net, oom_batch_pixels=2 * 29 * 30)
    with caplog.at_level(logging.WARNING, logger="ttasr.inference.enhance"):
        out = enhance_tensor(_with(rec, 2), x, tile=32, overlap=12, tile_batch=8, clamp=False)
    assert "out of memory with 8 tiles per batch; retrying with 4" in caplog.text
    assert "out of memory with 4 tiles per batch; retrying with 2" in caplog.text
    assert "px" not in caplog.text  # the tile was kept
    assert rec.batches == [2] * 10 and set(rec.shapes) == {(29, 30)}
    with torch.no_grad():
        assert float((out - net(x)).abs().max()) < 1e-5

    # one tile per batch still too large: then the tile halves, one tile per batch
    rec = Recorder(net, oom_batch_pixels=800)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ttasr.inference.enhance"):
        out = enhance_tensor(_with(rec, 2), x, tile=32, overlap=12, tile_batch=8, clamp=False)
    assert "with 2 tiles per batch; retrying with 1" in caplog.text and "retrying with 16 px" in caplog.text
    assert set(rec.batches) == {1} and max(h * w for h, w in rec.shapes) <= 16 * 16
    ref = enhance_tensor(_with(net, 2), x, tile=16, overlap=12, clamp=False)
    assert float((out - ref).abs().max()) < 1e-6


def test_out_of_memory_gives_up_with_a_hint() -> None:
    model = _with(Recorder(tiny_net(2), oom_pixels=4), 2)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="even with .* px tiles.*device='cpu'"):
        enhance_tensor(model, torch.rand(1, 3, 40, 40), tile=32)
    internal = _with(Recorder(tiny_net(2), oom_pixels=100), 2, tiling="internal")
    with pytest.raises(torch.cuda.OutOfMemoryError, match="tiles internally"):
        enhance_tensor(internal, torch.rand(1, 3, 40, 40), tile=16)


# ---------------------------------------------------------------------------- dtype, device
def test_unsupported_half_falls_back_to_float32(caplog) -> None:
    model = ttasr.load_model(tiny_net(2), scale=2)
    x = torch.rand(1, 3, 20, 20)
    with caplog.at_level(logging.WARNING):
        out = enhance_tensor(model, x, dtype=torch.float16, clamp=False)
    assert "does not support torch.float16" in caplog.text
    assert float((out - enhance_tensor(model, x, clamp=False)).abs().max()) == 0.0


def test_supported_bfloat16_runs_on_a_copy() -> None:
    model = _with(tiny_net(2), 2, supports_bfloat16=True)
    before = model.weights_hash()
    x = torch.rand(1, 3, 24, 24)
    out = enhance_tensor(model, x, dtype="bf16", tile=16, overlap=8, clamp=False)
    ref = enhance_tensor(model, x, clamp=False)
    diff = float((out - ref).abs().max())
    assert out.dtype == torch.float32 and 0 < diff < 0.05  # ran in bf16, close to fp32
    assert model.dtype == torch.float32 and model.weights_hash() == before


def test_bad_dtype_and_channel_errors() -> None:
    model = ttasr.load_model(tiny_net(2), scale=2)
    with pytest.raises(InputError, match="dtype 'int8'"):
        enhance_tensor(model, torch.rand(1, 3, 8, 8), dtype="int8")
    with pytest.raises(InputError, match="2 channels"):
        enhance_tensor(model, torch.rand(1, 2, 8, 8))
    with pytest.raises(InputError, match="overlap >= 0"):
        enhance_tensor(model, torch.rand(1, 3, 8, 8), tile=4, overlap=-1)
    with pytest.raises(InputError, match="float BxCxHxW"):
        enhance_tensor(model, torch.rand(3, 8, 8))


def test_luma_model_on_rgb_super_resolves_y() -> None:
    conv = nn.Conv2d(1, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    model = ttasr.load_model(nn.Sequential(conv, nn.PixelShuffle(2)), scale=2)  # nearest, 1 channel
    assert model.in_channels == 1
    x = torch.rand(1, 3, 6, 8) * 0.5 + 0.25
    out = enhance_tensor(model, x, tile=None)
    assert out.shape == (1, 3, 12, 16)
    y_in = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    y_out = 0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]
    torch.testing.assert_close(y_out, y_in.repeat_interleave(2, -2).repeat_interleave(2, -1), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------- output
def test_output_is_clamped_and_in_input_type() -> None:
    conv = nn.Conv2d(3, 12, 1)
    with torch.no_grad():
        conv.weight.fill_(3.0)
        conv.bias.fill_(-1.0)
    model = ttasr.load_model(nn.Sequential(conv, nn.PixelShuffle(2)), scale=2)
    x = torch.rand(1, 3, 8, 8)
    raw = enhance_tensor(model, x, clamp=False)
    assert float(raw.min()) < 0 and float(raw.max()) > 1
    out = enhance(model, x, tile=4, overlap=2)
    assert out.shape == (1, 3, 16, 16) and float(out.min()) == 0.0 and float(out.max()) == 1.0
    arr = enhance(model, (x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), tile=None)
    assert arr.dtype == np.uint8 and arr.shape == (16, 16, 3)


def test_enhance_accepts_a_plain_module_and_shows_progress(capsys) -> None:
    out = enhance(tiny_net(2), torch.rand(3, 40, 40), tile=16, overlap=8, progress=True)
    assert out.shape == (3, 80, 80)
    assert "tiles" in capsys.readouterr().err
    enhance(tiny_net(2), torch.rand(3, 40, 40), tile=None, progress=None)
    assert "tiles" not in capsys.readouterr().err
