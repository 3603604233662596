"""Property tests for the image loader: whatever comes in, the result is a right-shaped record or an InputError.

The loader is the boundary where untrusted data (user arrays, files from anywhere) meets
the library, so its contract is total: for random shapes, dtypes, PIL modes, file formats,
corrupted files and plain random bytes, ``load_images`` either returns records of the right
size and type or raises :class:`~ttasr.errors.InputError`. Any other exception (ValueError,
OSError, struct.error, a NumPy reduction on an empty array...) is a bug.
"""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from ttasr.errors import InputError
from ttasr.io import IMAGE_SUFFIXES, ImageRecord, load_images, read_image, save_image, to_output

pytest.importorskip("cv2")

QUICK = settings(max_examples=50, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
"""Quick enough for every run; no example database, so no .hypothesis folder in the checkout."""
SMALL_LIMIT = 64 * 64 * 4
"""max_pixels for random files: a random header may declare any size, and must not be decoded."""

SIDE = st.integers(1, 64)
SEED = st.integers(0, 2**32 - 1)


def check_record(rec: ImageRecord, height: int, width: int) -> None:
    assert rec.rgb.shape == (1, 3, height, width) and rec.rgb.dtype == torch.float32
    assert float(rec.rgb.min()) >= 0 and float(rec.rgb.max()) <= 1
    if rec.alpha is not None:
        assert rec.alpha.shape == (1, 1, height, width)


def in_unit_range(values: np.ndarray) -> bool:
    values = values.astype(np.float32)
    return bool(np.isfinite(values).all()) and values.min() >= -1e-4 and values.max() <= 1 + 1e-4


# ---------------------------------------------------------------------------- numpy
NUMPY_DTYPES = [np.uint8, np.uint16, np.float16, np.float32, np.float64, np.bool_,
                np.int8, np.int16, np.int32, np.int64, np.uint32, np.complex64]


@st.composite
def numpy_images(draw: Any) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(NUMPY_DTYPES)))
    if draw(st.booleans()):  # mostly image-like shapes
        shape: tuple[int, ...] = (draw(SIDE), draw(SIDE))
        channels = draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
        shape = shape if channels is None else (*shape, channels)
    else:  # anything, empty dimensions included
        shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=5)))
    rng = np.random.default_rng(draw(SEED))
    if dtype.kind == "f":
        values = rng.random(shape) * draw(st.sampled_from([1.0, 1.0, 255.0, -1.0]))
        if draw(st.integers(0, 5)) == 0 and values.size:
            values.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        arr = values.astype(dtype)
    elif dtype.kind in "iub":
        info = np.iinfo(dtype) if dtype.kind != "b" else None
        lo, hi = (0, 2) if info is None else (max(info.min, -1000), min(info.max, 70000))
        arr = rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    else:
        arr = rng.random(shape).astype(dtype)
    if draw(st.booleans()) and arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    return arr


def numpy_should_load(a: np.ndarray) -> bool:
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 2, 3, 4)) or 0 in a.shape[:2]:
        return False
    native = a.dtype.newbyteorder("=")
    if native in (np.uint8, np.uint16):
        return True
    return native in (np.float16, np.float32, np.float64) and in_unit_range(a)


@QUICK
@given(numpy_images())
def test_numpy_arrays_load_and_round_trip_or_fail_cleanly(a: np.ndarray) -> None:
    if not numpy_should_load(a):
        with pytest.raises(InputError):
            load_images(a)
        return
    rec = load_images(a)[0]
    check_record(rec, a.shape[0], a.shape[1])
    channels = 1 if a.ndim == 2 else a.shape[2]
    assert rec.gray == (channels in (1, 2)) and (rec.alpha is not None) == (channels in (2, 4))
    out = to_output(rec, rec.rgb)
    assert out.shape == a.shape and out.dtype == a.dtype.newbyteorder("=")
    if a.dtype.kind == "u":
        np.testing.assert_array_equal(out, a)


# ---------------------------------------------------------------------------- torch
TORCH_DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64,
                torch.int32, torch.int64, torch.bool]


@st.composite
def tensors(draw: Any) -> torch.Tensor:
    dtype = draw(st.sampled_from(TORCH_DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=5)))
    gen = torch.Generator().manual_seed(draw(SEED))
    if dtype.is_floating_point:
        t = torch.rand(shape, generator=gen) * draw(st.sampled_from([1.0, 1.0, 255.0, -1.0]))
        if draw(st.integers(0, 5)) == 0 and t.numel():
            t.view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf")]))
        return t.to(dtype)
    hi = 2 if dtype == torch.bool else 256
    return torch.randint(0, hi, shape, generator=gen).to(dtype)


def tensor_should_load(t: torch.Tensor) -> bool:
    if t.ndim not in (2, 3, 4) or 0 in t.shape:
        return False
    if t.ndim >= 3 and t.shape[-3] not in (1, 2, 3, 4):
        return False
    if t.dtype == torch.uint8:
        return True
    return t.is_floating_point() and in_unit_range(t.float().numpy())


@QUICK
@given(tensors())
def test_tensors_load_and_round_trip_or_fail_cleanly(t: torch.Tensor) -> None:
    if not tensor_should_load(t):
        with pytest.raises(InputError):
            load_images(t)
        return
    batch = load_images(t)
    assert len(batch) == (t.shape[0] if t.ndim == 4 else 1)
    for rec in batch:
        check_record(rec, t.shape[-2], t.shape[-1])
    out = batch.assemble([to_output(rec, rec.rgb) for rec in batch])
    assert out.shape == t.shape and out.dtype == t.dtype
    if t.dtype == torch.uint8:
        assert torch.equal(out, t)


# ---------------------------------------------------------------------------- PIL images
PIL_BYTES_PER_PIXEL = {"L": 1, "LA": 2, "P": 1, "PA": 2, "RGB": 3, "RGBA": 4, "RGBX": 4, "CMYK": 4,
                       "YCbCr": 3, "LAB": 3, "HSV": 3, "I;16": 2, "I;16B": 2, "I": 4, "F": 4}
MUST_LOAD = {"L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I;16", "I;16B", "1"}


@st.composite
def pil_images(draw: Any) -> Image.Image:
    mode = draw(st.sampled_from([*PIL_BYTES_PER_PIXEL, "1"]))
    width, height = draw(SIDE), draw(SIDE)
    rng = np.random.default_rng(draw(SEED))
    if mode == "1":
        data = rng.integers(0, 256, size=((width + 7) // 8) * height, dtype=np.uint8).tobytes()
    elif mode == "F" and draw(st.booleans()):  # mostly valid floats, sometimes raw bytes (NaN, huge)
        data = rng.random((height, width), dtype=np.float32).tobytes()
    elif mode == "I" and draw(st.booleans()):
        data = rng.integers(0, 65536, size=(height, width)).astype(np.int32).tobytes()
    else:
        data = rng.integers(0, 256, size=width * height * PIL_BYTES_PER_PIXEL[mode], dtype=np.uint8).tobytes()
    im = Image.frombytes(mode, (width, height), data)
    if mode in ("P", "L", "RGB") and draw(st.booleans()):
        im.info["transparency"] = 0 if mode != "RGB" else (0, 0, 0)
    return im


@QUICK
@given(pil_images())
def test_pil_images_load_in_every_mode_or_fail_cleanly(im: Image.Image) -> None:
    try:
        rec = load_images(im)[0]
    except InputError:
        assert im.mode not in MUST_LOAD
        return
    check_record(rec, im.height, im.width)
    out = to_output(rec, rec.rgb)
    assert isinstance(out, Image.Image) and out.size == im.size


# ---------------------------------------------------------------------------- files
FILE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".webp": "WEBP",
                ".ppm": "PPM", ".pgm": "PPM"}
FILE_MODES = ["L", "LA", "P", "RGB", "RGBA", "I;16", "CMYK", "1", "I", "F"]
LOSSLESS = {".png", ".tif", ".bmp", ".ppm", ".pgm"}
CHANNELS = {"L": 1, "1": 1, "I": 1, "I;16": 1, "F": 1, "LA": 2, "RGB": 3, "CMYK": 3, "YCbCr": 3,
            "LAB": 3, "RGBA": 4, "PA": 4}


def write_pil(im: Image.Image, suffix: str) -> bytes | None:
    """``im`` as a ``suffix`` file, or None when Pillow cannot write that mode in that format."""
    buf = io.BytesIO()
    try:
        im.save(buf, format=FILE_FORMATS[suffix])
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return buf.getvalue()


def load_file(data: bytes, suffix: str) -> tuple[ImageRecord, np.ndarray] | InputError:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"image{suffix}"
        path.write_bytes(data)
        try:
            return load_images(path, max_pixels=SMALL_LIMIT)[0], read_image(path, max_pixels=SMALL_LIMIT)
        except InputError as exc:
            return exc


@QUICK
@given(st.sampled_from(FILE_MODES), st.sampled_from(sorted(FILE_FORMATS)), SIDE, SIDE, SEED)
def test_files_in_every_format_load_to_their_size(mode: str, suffix: str, width: int, height: int,
                                                   seed: int) -> None:
    rng = np.random.default_rng(seed)
    if mode == "F":
        im = Image.fromarray(rng.random((height, width), dtype=np.float32), mode="F")
    elif mode in ("I", "I;16"):
        im = Image.fromarray(rng.integers(0, 65536, size=(height, width)).astype(np.uint16)).convert(mode)
    else:
        im = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).convert(mode)
    data = write_pil(im, suffix)
    assume(data is not None)
    assert data is not None
    with Image.open(io.BytesIO(data)) as ref:
        stored_mode = ref.mode
        reference = np.asarray(ref.convert(stored_mode)) if stored_mode in ("L", "LA", "RGB", "RGBA") else None
    result = load_file(data, suffix)
    assert not isinstance(result, InputError), f"{mode} as {suffix} (stored as {stored_mode}): {result}"
    rec, arr = result
    check_record(rec, height, width)
    assert arr.shape[:2] == (height, width) and arr.dtype in (np.uint8, np.uint16, np.float32)
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if stored_mode in CHANNELS:
        assert channels == CHANNELS[stored_mode]
    if suffix in LOSSLESS and reference is not None:
        np.testing.assert_array_equal(arr, reference)


def png16(arr: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written by hand (Pillow and OpenCV cannot write 16-bit gray+alpha)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    height, width = arr.shape[:2]
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@QUICK
@given(st.sampled_from([0, 1, 2, 3, 4]), st.sampled_from([".png", ".tif"]), SIDE, SIDE, SEED)
def test_16bit_files_round_trip_exactly(channels: int, suffix: str, width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 0 else (height, width, channels)
    a = rng.integers(0, 65536, size=shape).astype(np.uint16)
    if channels == 2:
        if suffix != ".png":
            return  # no writer for 16-bit gray+alpha TIFF
        data = png16(a, colour_type=4)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            data = save_image(a, Path(tmp) / f"x{suffix}").read_bytes()
    result = load_file(data, suffix)
    assert not isinstance(result, InputError), result
    rec, arr = result
    check_record(rec, height, width)
    np.testing.assert_array_equal(arr, a[..., 0] if channels == 1 else a)


SIGNATURES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"II*\x00", b"MM\x00*", b"BM",
              b"P6\n", b"P5\n4 4\n255\n", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"GIF89a", b"%!PS-Adobe-3.0 EPSF"]


@QUICK
@given(st.sampled_from(SIGNATURES), st.binary(max_size=1024), st.sampled_from(IMAGE_SUFFIXES))
def test_random_bytes_are_an_input_error_or_an_image(signature: bytes, body: bytes, suffix: str) -> None:
    result = load_file(signature + body, suffix)
    if not isinstance(result, InputError):
        rec, arr = result
        check_record(rec, arr.shape[0], arr.shape[1])


@st.composite
def damaged_files(draw: Any) -> tuple[bytes, str]:
    suffix = draw(st.sampled_from([".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm", ".png16", ".tif16"]))
    rng = np.random.default_rng(draw(SEED))
    height, width = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    if suffix.endswith("16"):
        suffix = suffix[:-2]
        a16 = rng.integers(0, 65536, size=(height, width, 3)).astype(np.uint16)
        with tempfile.TemporaryDirectory() as tmp:
            data = bytearray(save_image(a16, Path(tmp) / f"x{suffix}").read_bytes())
    else:
        mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P"]))
        im = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)).convert(mode)
        written = write_pil(im, suffix) or write_pil(im.convert("RGB"), suffix)
        assert written is not None
        data = bytearray(written)
    for _ in range(draw(st.integers(1, 4))):
        # half the damage lands in the first 64 bytes, where headers declare sizes and offsets
        position = draw(st.integers(0, len(data) - 1 if draw(st.booleans()) else min(63, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "cut", "zero"]))
        if action == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "zero":
            data[position:position + 4] = bytes(len(data[position:position + 4]))
        else:
            del data[position:]
            if not data:
                break
    return bytes(data), suffix


@QUICK
@given(damaged_files())
def test_damaged_files_are_an_input_error_or_an_image(case: tuple[bytes, str]) -> None:
    data, suffix = case
    result = load_file(data, suffix)
    if not isinstance(result, InputError):
        rec, arr = result
        check_record(rec, arr.shape[0], arr.shape[1])


def with_declared_size(data: bytes, suffix: str, width: int, height: int) -> bytes:
    """``data`` with the width and height fields of its header overwritten; pixel data untouched."""
    out = bytearray(data)
    if suffix == ".png":
        out[16:24] = struct.pack(">II", width, height)
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    elif suffix == ".bmp":
        out[18:26] = struct.pack("<ii", width, height)
    elif suffix == ".ppm":
        magic, _, rest = bytes(out).split(b"\n", 2)  # Pillow writes "P6\nW H\n255\n"
        return magic + f"\n{width} {height}\n".encode() + rest
    elif suffix == ".jpg":
        sof = bytes(out).index(b"\xff\xc0")
        out[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    elif suffix == ".tif":
        order = "<" if out[:2] == b"II" else ">"
        (ifd,) = struct.unpack(order + "I", out[4:8])
        (count,) = struct.unpack(order + "H", out[ifd:ifd + 2])
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            (tag,) = struct.unpack(order + "H", out[entry:entry + 2])
            if tag in (256, 257):
                value = width if tag == 256 else height
                out[entry + 2:entry + 12] = struct.pack(order + "HII", 4, 1, value)  # as LONG
    return bytes(out)


@QUICK
@given(st.sampled_from([".png", ".bmp", ".ppm", ".jpg", ".tif"]), st.integers(1, 2**16 - 1),
       st.integers(1, 2**16 - 1), SEED)
def test_declared_size_is_checked_before_decoding(suffix: str, width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = write_pil(Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)), suffix)
    assert data is not None
    result = load_file(with_declared_size(data, suffix, width, height), suffix)
    if width * height > SMALL_LIMIT:
        assert isinstance(result, InputError) and f"declares {width}x{height} pixels" in str(result)
        assert "max_pixels=" in str(result)
    elif not isinstance(result, InputError):
        check_record(result[0], height, width)
