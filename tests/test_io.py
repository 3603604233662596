"""Images in and out: every input type comes back in its own type, dtype, mode and layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import ttasr
from ttasr.errors import InputError
from ttasr.inference import enhance
from ttasr.io import check_size, load_images, read_image, save_image, to_output, upscale_alpha

cv2 = pytest.importorskip("cv2")


def nearest_model(scale: int = 2) -> ttasr.SRModel:
    """Exact nearest-neighbour upscaling as a network: a 1x1 conv copies each channel
    ``scale**2`` times, PixelShuffle spreads the copies. Outputs equal inputs repeated."""
    conv = nn.Conv2d(3, 3 * scale * scale, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for c in range(3):
            conv.weight[c * scale * scale:(c + 1) * scale * scale, c] = 1.0
    return ttasr.load_model(nn.Sequential(conv, nn.PixelShuffle(scale)), scale=scale)


def repeat2(a: np.ndarray) -> np.ndarray:
    return a.repeat(2, axis=0).repeat(2, axis=1)


@pytest.fixture(scope="module")
def model() -> ttasr.SRModel:
    return nearest_model(2)


RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------- numpy
@pytest.mark.parametrize("shape,dtype", [
    ((9, 11, 3), np.uint8), ((9, 11), np.uint8), ((9, 11, 1), np.uint8),
    ((9, 11, 3), np.uint16), ((9, 11), np.uint16),
])
def test_numpy_integer_round_trip_is_exact(model, shape, dtype) -> None:
    hi = np.iinfo(dtype).max
    a = RNG.integers(0, hi + 1, size=shape, dtype=np.int64).astype(dtype)
    out = enhance(model, a, tile=None)
    assert isinstance(out, np.ndarray) and out.dtype == dtype
    assert out.shape == (shape[0] * 2, shape[1] * 2, *shape[2:])
    np.testing.assert_array_equal(out, repeat2(a))


def test_big_endian_uint16_is_read_by_value(model) -> None:
    a = RNG.integers(0, 65536, size=(4, 5), dtype=np.int64).astype(">u2")
    out = enhance(model, a, tile=None)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, repeat2(a.astype(np.uint16)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_float_keeps_dtype(model, dtype) -> None:
    a = RNG.random((7, 5, 3)).astype(dtype)
    out = enhance(model, a, tile=None)
    assert out.dtype == dtype and out.shape == (14, 10, 3)
    np.testing.assert_allclose(out, repeat2(a), atol=1e-6)


def test_rgba_keeps_alpha_upscaled_bicubically(model) -> None:
    a = RNG.integers(0, 256, size=(8, 10, 4), dtype=np.uint8)
    out = enhance(model, a, tile=None)
    assert out.shape == (16, 20, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., :3], repeat2(a[..., :3]))
    alpha = torch.from_numpy(a[..., 3].astype(np.float32) / 255)[None, None]
    ref = np.round(upscale_alpha(alpha, (16, 20))[0, 0].numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 3], ref)
    # bicubic, not nearest: the alpha channel is not just repeated
    assert not np.array_equal(out[..., 3], repeat2(a[..., 3]))


def test_gray_is_replicated_for_the_model_and_averaged_back() -> None:
    rec = load_images(np.full((4, 6), 128, np.uint8))[0]
    assert rec.gray and rec.rgb.shape == (1, 3, 4, 6)
    assert torch.equal(rec.rgb[:, 0], rec.rgb[:, 2])
    sr = torch.zeros(1, 3, 8, 12)
    sr[:, 0], sr[:, 1], sr[:, 2] = 0.3, 0.6, 0.9
    out = to_output(rec, sr)
    assert out.shape == (8, 12) and out.dtype == np.uint8
    assert (out == round(0.6 * 255)).all()


# ---------------------------------------------------------------------------- PIL
@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_pil_8bit_modes_are_kept(model, mode) -> None:
    channels = len(mode)
    a = RNG.integers(0, 256, size=(6, 9, channels), dtype=np.uint8)
    im = Image.fromarray(a[..., 0] if channels == 1 else a)
    assert im.mode == mode
    out = enhance(model, im, tile=None)
    assert isinstance(out, Image.Image) and out.mode == mode and out.size == (18, 12)
    got = np.asarray(out)
    colour = got if channels == 1 else got[..., : (1 if mode == "LA" else 3)]
    want = a[..., 0] if channels == 1 else a[..., : (1 if mode == "LA" else 3)]
    np.testing.assert_array_equal(colour, repeat2(want))


def test_pil_16bit_gray_mode_is_kept(model) -> None:
    a = RNG.integers(0, 65536, size=(5, 7), dtype=np.int64).astype(np.uint16)
    out = enhance(model, Image.fromarray(a), tile=None)
    assert out.mode == "I;16" and out.size == (14, 10)
    np.testing.assert_array_equal(np.asarray(out), repeat2(a))


def test_pil_palette_and_bilevel_become_rgb_and_l(model) -> None:
    p = Image.fromarray(RNG.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)).convert("P")
    assert enhance(model, p, tile=None).mode == "RGB"
    b = Image.fromarray(RNG.integers(0, 2, size=(4, 4), dtype=np.uint8) * 255).convert("1")
    out = enhance(model, b, tile=None)
    assert out.mode == "L" and set(np.unique(np.asarray(out))) <= {0, 255}


# ---------------------------------------------------------------------------- torch
@pytest.mark.parametrize("shape", [(5, 6), (3, 5, 6), (1, 5, 6), (1, 3, 5, 6), (2, 3, 5, 6), (2, 4, 5, 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_torch_keeps_dims_and_dtype(model, shape, dtype) -> None:
    t = torch.rand(shape).to(dtype)
    out = enhance(model, t, tile=None)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype
    assert out.shape == (*shape[:-2], 10, 12)
    colour = out if len(shape) < 3 or shape[-3] in (1, 3) else out[..., :3, :, :]
    want = t if len(shape) < 3 or shape[-3] in (1, 3) else t[..., :3, :, :]
    torch.testing.assert_close(colour.float(), want.float().repeat_interleave(2, -2).repeat_interleave(2, -1),
                               atol=1e-3, rtol=0)


def test_torch_uint8_round_trip_is_exact(model) -> None:
    t = torch.randint(0, 256, (3, 4, 5), dtype=torch.uint8)
    out = enhance(model, t, tile=None)
    assert out.dtype == torch.uint8
    assert torch.equal(out, t.repeat_interleave(2, -2).repeat_interleave(2, -1))


def test_list_input_gives_list_of_each_type(model) -> None:
    items = [np.zeros((4, 4, 3), np.uint8), torch.rand(3, 4, 4), Image.new("L", (4, 4))]
    out = enhance(model, items, tile=None)
    assert isinstance(out, list) and len(out) == 3
    assert isinstance(out[0], np.ndarray) and isinstance(out[1], torch.Tensor) and isinstance(out[2], Image.Image)


# ---------------------------------------------------------------------------- files
def test_directory_and_glob_give_sorted_numpy_in_file_dtype(tmp_path, model) -> None:
    a8 = RNG.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    a16 = RNG.integers(0, 65536, size=(4, 5, 3), dtype=np.int64).astype(np.uint16)
    g16 = RNG.integers(0, 65536, size=(4, 5), dtype=np.int64).astype(np.uint16)
    save_image(a8, tmp_path / "b.png")
    save_image(a16, tmp_path / "a.png")
    save_image(g16, tmp_path / "c.tif")
    (tmp_path / "notes.txt").write_text("not an image")
    batch = load_images(tmp_path)
    assert [r.name for r in batch] == ["a.png", "b.png", "c.tif"]
    out = enhance(model, tmp_path, tile=None)
    assert [o.dtype for o in out] == [np.uint16, np.uint8, np.uint16]
    np.testing.assert_array_equal(out[0], repeat2(a16))
    np.testing.assert_array_equal(out[1], repeat2(a8))
    np.testing.assert_array_equal(out[2], repeat2(g16))
    globbed = enhance(model, str(tmp_path / "*.png"), tile=None)
    assert isinstance(globbed, list) and len(globbed) == 2
    single = enhance(model, tmp_path / "b.png", tile=None)
    assert isinstance(single, np.ndarray) and single.shape == (8, 10, 3)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [0, 3, 4])
def test_16bit_save_load_round_trip_is_bit_exact(tmp_path, suffix, channels) -> None:
    shape = (13, 17) if channels == 0 else (13, 17, channels)
    a = RNG.integers(0, 65536, size=shape, dtype=np.int64).astype(np.uint16)
    path = save_image(a, tmp_path / f"x{suffix}")
    b = read_image(path)
    assert b.dtype == np.uint16 and b.shape == a.shape
    np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == [f"x{suffix}"]  # no temp file left


def test_16bit_colour_is_stored_in_rgb_order(tmp_path) -> None:
    a = np.zeros((2, 3, 3), np.uint16)
    a[..., 0] = 60000  # red
    save_image(a, tmp_path / "red.png")
    raw = cv2.imread(str(tmp_path / "red.png"), cv2.IMREAD_UNCHANGED)  # OpenCV is BGR
    assert raw.dtype == np.uint16 and (raw[..., 2] == 60000).all() and (raw[..., 0] == 0).all()
    assert (read_image(tmp_path / "red.png")[..., 0] == 60000).all()


def test_float_and_tensor_save_with_requested_depth(tmp_path) -> None:
    t = torch.rand(3, 4, 5)
    save_image(t, tmp_path / "t.png", bit_depth=16)
    back = read_image(tmp_path / "t.png")
    assert back.dtype == np.uint16
    np.testing.assert_allclose(back / 65535, t.permute(1, 2, 0).numpy(), atol=1 / 65535)
    save_image(t, tmp_path / "t8.jpg")
    assert read_image(tmp_path / "t8.jpg").dtype == np.uint8


def test_save_replaces_existing_file_atomically(tmp_path) -> None:
    path = tmp_path / "x.png"
    save_image(np.zeros((3, 3), np.uint8), path)
    save_image(np.full((3, 3), 7, np.uint8), path)
    assert (read_image(path) == 7).all() and len(list(tmp_path.iterdir())) == 1


# ---------------------------------------------------------------------------- errors
def test_corrupt_file_names_the_file(tmp_path) -> None:
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x00garbage bytes, not a PNG" * 10)
    with pytest.raises(InputError, match=r"x\.png.*(corrupt|truncated)"):
        load_images(bad)


def test_truncated_png_is_an_input_error(tmp_path) -> None:
    path = save_image(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8), tmp_path / "t.png")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="t.png"):
        read_image(path)


@pytest.mark.parametrize("make,pattern", [
    (lambda d: d / "missing.png", "does not exist"),
    (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "suffix '.txt'"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no image files"),
    (lambda d: str(d / "*.webp"), "matches no image files"),
])
def test_path_errors(tmp_path, make, pattern) -> None:
    with pytest.raises(InputError, match=pattern):
        load_images(make(tmp_path))


def test_wrong_channel_counts() -> None:
    with pytest.raises(InputError, match="5 channels"):
        load_images(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(InputError, match=r"transpose\(1, 2, 0\)"):
        load_images(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(InputError, match=r"permute\(2, 0, 1\)"):
        load_images(torch.zeros(8, 8, 3))
    with pytest.raises(InputError, match="HxW or HxWxC"):
        load_images(np.zeros((1, 2, 4, 4), np.uint8))


def test_nan_inf_and_range_errors() -> None:
    a = np.full((4, 4, 3), 0.5, np.float32)
    a[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        load_images(a)
    t = torch.full((3, 4, 4), 0.5)
    t[0, 0, 0] = float("inf")
    with pytest.raises(InputError, match="NaN or Inf"):
        load_images(t)
    with pytest.raises(InputError, match="divide by 255"):
        load_images(np.full((4, 4, 3), 200.0, np.float32))
    with pytest.raises(InputError, match=r"\(x \+ 1\) / 2"):
        load_images(torch.full((3, 4, 4), -0.8))
    with pytest.raises(InputError, match="dtype int32"):
        load_images(np.zeros((4, 4), np.int32))
    # rounding noise just outside [0, 1] is clamped, not refused
    assert float(load_images(np.full((2, 2), 1.00001, np.float32))[0].rgb.max()) == 1.0


def test_check_size_names_image_and_minimum() -> None:
    rec = load_images(np.zeros((20, 30), np.uint8))[0]
    check_size(rec, 20, "x")
    with pytest.raises(InputError, match=r"numpy array #0 is 20x30.*48 px that AdaSSR patch 48 needs.*smaller scale"):
        check_size(rec, 48, "AdaSSR patch 48")


def test_unwritable_combinations(tmp_path) -> None:
    with pytest.raises(InputError, match="16-bit"):
        save_image(np.zeros((4, 4, 3), np.uint16), tmp_path / "x.jpg")
    with pytest.raises(InputError, match="no alpha"):
        save_image(np.zeros((4, 4, 4), np.uint8), tmp_path / "x.jpg")
    assert not list(tmp_path.iterdir())
