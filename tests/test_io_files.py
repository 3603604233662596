"""Reading files safely: the pixel limit before decoding, EXIF orientation, and bad files in a batch.

Each test here pins a defect of the former single-module loader: 16-bit PNG bombs decoded
without a size check (and Pillow's own bomb error surfaced raw), phone photos came out
rotated, and one bad file in a folder stopped the batch at the first error.
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from ttasr.errors import InputError
from ttasr.io import load_images, read_image, save_image

cv2 = pytest.importorskip("cv2")

RNG = np.random.default_rng(7)
ORIENTATION = 0x0112


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes,
              extra: tuple[bytes, ...] = ()) -> bytes:
    """A PNG whose IHDR says ``width x height`` and whose IDAT holds ``rows`` (filter bytes included)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + b"".join(extra)
            + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))


@pytest.fixture
def no_decoding(monkeypatch):
    """Make any pixel decoding fail the test, so a refusal is shown to come from the header alone."""
    from PIL import ImageFile

    def refuse(*args, **kwargs):
        raise AssertionError("the decoder ran")

    monkeypatch.setattr(cv2, "imdecode", refuse)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# ---------------------------------------------------------------------------- (6) pixel limit
def test_16bit_png_bomb_is_refused_from_its_header(tmp_path, no_decoding) -> None:
    # 14000x14000 16-bit RGB: 1.2 GB of pixels (4.7 GB as float32) behind a file of a few KB
    rows = (b"\x00" + bytes(14000 * 6)) * 4
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(14000, 14000, 16, 2, rows))
    assert path.stat().st_size < 10_000
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        load_images(path)
    assert time.perf_counter() - start < 1.0
    message = str(info.value)
    for part in ("bomb.png", "14000x14000", "196,000,000", "134,217,728", "max_pixels=196000000",
                 "max_pixels=None"):
        assert part in message


def test_header_over_pillows_own_limit_is_an_input_error(tmp_path, no_decoding) -> None:
    # a BMP header declaring 20000x20000 (400 MP): Pillow raises DecompressionBombError at open
    header = struct.pack("<IiiHHIIiiII", 40, 20000, 20000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    path = tmp_path / "huge.bmp"
    path.write_bytes(b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + header + bytes(64))
    with pytest.raises(InputError, match=r"huge\.bmp' declares 20000x20000 pixels.*max_pixels=400000000"):
        load_images(path)


def test_lower_pillow_limit_does_not_override_max_pixels(tmp_path, monkeypatch) -> None:
    path = save_image(RNG.integers(0, 256, size=(50, 60, 3), dtype=np.uint8), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse > 2000 pixels
    assert load_images(path)[0].size == (50, 60)
    assert Image.MAX_IMAGE_PIXELS == 1000


@pytest.mark.parametrize("suffix,dtype,channels", [
    (".png", np.uint16, 3),   # OpenCV path
    (".png", np.uint16, 4),   # OpenCV path
    (".tif", np.uint16, 3),   # OpenCV path, size from the TIFF header
    (".png", np.uint8, 3),
    (".png", np.uint16, 0),   # 16-bit gray: Pillow
    (".jpg", np.uint8, 3),
    (".bmp", np.uint8, 3),
    (".webp", np.uint8, 3),
    (".ppm", np.uint8, 3),
    (".tif", np.uint8, 1),
])
def test_pixel_limit_applies_to_every_decoder(tmp_path, suffix, dtype, channels) -> None:
    shape = (30, 40) if channels in (0, 1) else (30, 40, channels)
    a = RNG.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=np.int64).astype(dtype)
    path = save_image(a, tmp_path / f"x{suffix}")
    with pytest.raises(InputError, match=r"x\.\w+' declares 40x30 pixels.*1,200.*limit of 1,000.*max_pixels=1200"):
        load_images(path, max_pixels=1000)
    with pytest.raises(InputError, match="limit of 1,199"):
        read_image(path, max_pixels=1199)
    assert read_image(path, max_pixels=1200).shape[:2] == (30, 40)
    assert load_images(path, max_pixels=None)[0].size == (30, 40)


def test_pillow_bomb_error_becomes_input_error_and_its_limit_is_restored(tmp_path, monkeypatch) -> None:
    path = save_image(RNG.integers(0, 256, size=(50, 60, 3), dtype=np.uint8), tmp_path / "big.jpg")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses > 2000 pixels at open
    with pytest.raises(InputError, match=r"big\.jpg' declares 60x50 pixels.*limit of 1,500"):
        load_images(path, max_pixels=1500)
    # a caller who allows more than Pillow does gets the image; Pillow's limit is back afterwards
    assert load_images(path, max_pixels=10_000)[0].size == (50, 60)
    assert load_images(path, max_pixels=None)[0].size == (50, 60)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_default_limit_is_documented_and_refuses_the_14000_square_bomb() -> None:
    import ttasr.io

    assert ttasr.io.MAX_PIXELS == 2**27 < 14000 * 14000
    assert "MAX_PIXELS" in ttasr.io.__all__


# ---------------------------------------------------------------------------- (7) orientation
def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif


def test_jpeg_with_orientation_6_loads_upright(tmp_path) -> None:
    # stored 16 high, 32 wide, white block top-left; orientation 6 = turn 90° clockwise to view
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:8, :8] = 255
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=_exif(6), quality=95)
    out = load_images(path)[0]
    assert out.size == (32, 16)
    got = read_image(path)
    assert got.shape == (32, 16, 3)
    assert got[:8, 8:].mean() > 200 and got[:, :8].mean() < 40 and got[8:].mean() < 40  # top-right
    np.testing.assert_allclose(got.astype(float), np.rot90(stored, -1).astype(float), atol=40)


@pytest.mark.parametrize("orientation,turn", [(3, 2), (6, -1), (8, 1)])
def test_png_orientation_is_exact(tmp_path, orientation, turn) -> None:
    stored = RNG.integers(0, 256, size=(5, 9, 3), dtype=np.uint8)
    path = tmp_path / "o.png"
    Image.fromarray(stored).save(path, exif=_exif(orientation))
    np.testing.assert_array_equal(read_image(path), np.rot90(stored, turn))


def test_16bit_png_read_by_opencv_is_turned_too(tmp_path) -> None:
    stored = RNG.integers(0, 65536, size=(5, 9, 3), dtype=np.int64).astype(np.uint16)
    ok, buf = cv2.imencode(".png", stored[..., ::-1].copy())
    assert ok
    data = buf.tobytes()
    ihdr_end = 8 + 25  # signature + IHDR chunk
    data = data[:ihdr_end] + png_chunk(b"eXIf", _exif(6).tobytes()) + data[ihdr_end:]
    path = tmp_path / "o16.png"
    path.write_bytes(data)
    got = read_image(path)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, np.rot90(stored, -1))


def test_pil_image_with_orientation_is_turned(tmp_path) -> None:
    stored = RNG.integers(0, 256, size=(5, 9, 3), dtype=np.uint8)
    path = tmp_path / "o.png"
    Image.fromarray(stored).save(path, exif=_exif(8))
    with Image.open(path) as im:
        rec = load_images(im)[0]
    assert rec.size == (9, 5)
    np.testing.assert_array_equal((rec.rgb[0].permute(1, 2, 0).numpy() * 255).round(), np.rot90(stored, 1))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_array_matches_pillow(orientation) -> None:
    from PIL import ImageOps

    from ttasr.io.orientation import orient_array

    stored = RNG.integers(0, 256, size=(3, 5, 3), dtype=np.uint8)
    im = Image.fromarray(stored)
    im.getexif()[ORIENTATION] = orientation
    np.testing.assert_array_equal(orient_array(stored, orientation), np.asarray(ImageOps.exif_transpose(im)))


def test_broken_exif_does_not_make_an_image_unreadable(tmp_path) -> None:
    stored = RNG.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(stored).save(path, exif=b"Exif\x00\x00garbage that is not TIFF")
    np.testing.assert_array_equal(read_image(path), stored)


# ---------------------------------------------------------------------------- (8) bad files
@pytest.fixture
def mixed_folder(tmp_path):
    good = RNG.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    save_image(good, tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png at all" * 4)
    truncated = save_image(RNG.integers(0, 256, size=(64, 64, 3), dtype=np.uint8), tmp_path / "c.jpg")
    truncated.write_bytes(truncated.read_bytes()[:300])
    save_image(good, tmp_path / "d.png")
    return tmp_path


def test_all_bad_files_are_reported_in_one_error(mixed_folder) -> None:
    with pytest.raises(InputError) as info:
        load_images(mixed_folder)
    message = str(info.value)
    assert "2 of 4 images cannot be used" in message
    assert str(mixed_folder / "b.png") in message and str(mixed_folder / "c.jpg") in message
    assert "a.png" not in message and "d.png" not in message
    assert "skip_bad=True" in message


def test_skip_bad_goes_on_and_records_the_skipped(mixed_folder, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="ttasr.io"):
        batch = load_images(mixed_folder, skip_bad=True)
    assert [r.name for r in batch] == ["a.png", "d.png"]
    assert [name for name, _ in batch.skipped] == [str(mixed_folder / "b.png"), str(mixed_folder / "c.jpg")]
    assert all("corrupt" in reason for _, reason in batch.skipped)
    assert "skipping 2 of 4 images" in caplog.text and "b.png" in caplog.text
    assert batch.assemble(["A", "D"]) == ["A", "D"]


def test_skip_bad_with_nothing_good_still_fails(tmp_path) -> None:
    (tmp_path / "x.png").write_bytes(b"junk")
    (tmp_path / "y.bmp").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"none of the 2 images can be used:\n.*x\.png.*\n.*y\.bmp"):
        load_images(tmp_path, skip_bad=True)


def test_bad_items_in_a_list_are_named(tmp_path) -> None:
    items = [np.zeros((4, 4, 3), np.uint8), tmp_path / "missing.png", torch.zeros(8, 8, 3), np.zeros((4, 4), np.uint8)]
    with pytest.raises(InputError) as info:
        load_images(items)
    message = str(info.value)
    assert "2 of 4 images" in message and "missing.png" in message and "tensor #2" in message
    batch = load_images(items, skip_bad=True)
    assert len(batch) == 2 and [r.name for r in batch] == ["numpy array #0", "numpy array #3"]
    assert [name for name, _ in batch.skipped] == [str(tmp_path / "missing.png"), "tensor #2"]


def test_good_batch_has_nothing_skipped(tmp_path) -> None:
    save_image(np.zeros((3, 3), np.uint8), tmp_path / "a.png")
    assert load_images(tmp_path, skip_bad=True).skipped == []


# ---------------------------------------------------------------------------- writing
def test_saved_files_follow_the_umask(tmp_path) -> None:
    old = os.umask(0o027)
    try:
        path = save_image(np.zeros((3, 3), np.uint8), tmp_path / "x.png")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]
