"""Decoding image files to arrays and encoding arrays to file bytes, with Pillow or OpenCV.

Pillow decodes everything except 16-bit colour PNG/TIFF files, which it would reduce to
8 bits; those go to OpenCV. Files are untrusted input, so reading follows three rules:

* The size in the file's header is checked against a pixel limit before any decoder runs.
  A PNG of 1 MB can declare 14000x14000 16-bit pixels and decode to gigabytes (a
  "decompression bomb"). Pillow has such a check but OpenCV has a far higher one, and
  Pillow's raises its own exception type; here both paths share :data:`MAX_PIXELS`,
  overridable per call with ``max_pixels=`` (``None`` = no limit).
* Whatever a decoder raises on bad bytes (Pillow raises OSError, SyntaxError, EOFError,
  struct.error, ...) becomes one :class:`~ttasr.errors.InputError` naming the file.
* Pillow only tries the formats behind :data:`IMAGE_SUFFIXES`, so a file with a ``.png`` name
  cannot reach a rarely used plugin (EPS, for one, would run Ghostscript).

Results are upright: EXIF orientation is applied on both paths (see :mod:`.orientation`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, TTASRError, require
from .convert import check_float_range, pil_to_array
from .orientation import exif_orientation, orient_array, orientation_from_exif, upright
from .png import exif_chunk, png_header

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "SIXTEEN_BIT_SUFFIXES",
    "check_pixels",
    "check_suffix",
    "encode_cv2",
    "encode_pil",
    "read_image",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm",
)
SIXTEEN_BIT_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")

MAX_PIXELS: int = 2**27
"""Default pixel limit for decoding a file: 134,217,728 pixels (e.g. 11585x11585).

Far above any input worth super-resolving on one machine (a 4x result of it would hold
2.1 gigapixels), yet low enough that a bomb of the size seen in the wild (14000x14000) is
refused before decoding. It is also below Pillow's own hard limit (2 x
``PIL.Image.MAX_IMAGE_PIXELS`` ≈ 179 MP), so by default Pillow's check never fires first.
Pass ``max_pixels=`` to :func:`read_image` / :func:`~ttasr.io.load_images` to change it;
that value governs reads by ttasr whatever ``PIL.Image.MAX_IMAGE_PIXELS`` is set to.
"""

_PIL_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM")
"""Pillow plugins behind IMAGE_SUFFIXES (JPEG also yields MPO, the multi-picture JPEG of phones)."""

_PIL_LIMIT_LOCK = threading.Lock()
_TIFF_BITS_PER_SAMPLE = 258


def check_suffix(path: Path, action: str) -> str:
    """The lower-case suffix of ``path``, or an InputError when it is not an image format ttasr handles."""
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(
            f"cannot {action} '{path}': suffix '{path.suffix}' is not an image format ttasr "
            f"handles ({', '.join(IMAGE_SUFFIXES)}); convert the file or rename it"
        )
    return suffix


def check_pixels(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse a file whose header declares more than ``max_pixels`` pixels."""
    if max_pixels is None or width * height <= max_pixels:
        return
    raise InputError(
        f"image '{path}' declares {width}x{height} pixels (width x height, {width * height:,} "
        f"in all), over the limit of {max_pixels:,} pixels that guards against decompression "
        "bombs (small files that decode to gigabytes); if the image is genuine, pass "
        f"max_pixels={width * height} (or max_pixels=None for no limit) to load_images / read_image"
    )


def read_image(path: str | Path, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Read an image file as uint8 or uint16, ``HxW`` (gray) or ``HxWxC`` (RGB order), upright.

    The header's size is checked against ``max_pixels`` (default :data:`MAX_PIXELS`,
    ``None`` = no limit) before decoding. 16-bit colour PNG/TIFF files are read with
    OpenCV (BGR converted to RGB); others with Pillow. EXIF orientation is applied.
    Raises :class:`~ttasr.errors.InputError` for missing, unsupported, oversized or corrupt files.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"image file '{path}' does not exist: check the path")
    suffix = check_suffix(path, "read")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read image '{path}': {exc.strerror or exc}; check its permissions") from exc
    header = png_header(data)
    if header is not None:
        check_pixels(path, header.width, header.height, max_pixels)
        if header.sixteen_bit_colour:
            arr = _decode_cv2(data, path, gray_alpha=header.colour_type == 4)
            exif = exif_chunk(data)
            return orient_array(arr, orientation_from_exif(exif) if exif else 1)
    return _decode_pil(data, path, suffix, max_pixels)


def _decode_pil(data: bytes, path: Path, suffix: str, max_pixels: int | None) -> np.ndarray:
    from PIL import Image

    try:
        with _pil_allows(max_pixels), Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
            check_pixels(path, im.size[0], im.size[1], max_pixels)  # header only: nothing decoded yet
            if im.format == "TIFF" and _is_16bit_colour_tiff(im):
                orientation = exif_orientation(im)
                return orient_array(_decode_cv2(data, path, gray_alpha=False), orientation)
            im.load()
            arr, _ = pil_to_array(upright(im), path.name)
    except TTASRError:
        raise
    except Image.DecompressionBombError as exc:  # over Pillow's own limit, which sits below ours
        try:
            width, height = _size_ignoring_pil_limit(data)
        except Exception as inner:  # noqa: BLE001 - a header Pillow read once should read again
            raise _unreadable(path, suffix, inner) from exc
        check_pixels(path, width, height, max_pixels)
        raise _unreadable(path, suffix, exc) from exc  # pragma: no cover - only if sizes disagree
    except MemoryError as exc:
        raise InputError(
            f"image '{path}' does not fit in memory when decoded: lower max_pixels to refuse "
            "such files up front, or downscale the image first"
        ) from exc
    except Exception as exc:  # any decoder failure on untrusted bytes means a bad file
        raise _unreadable(path, suffix, exc) from exc
    if arr.dtype == np.float32:
        arr = check_float_range(arr, path.name)
    return arr


def _unreadable(path: Path, suffix: str, exc: BaseException) -> InputError:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):  # its text names our in-memory buffer, not the file
        detail = "Pillow does not recognise its content as PNG, JPEG, BMP, TIFF, WebP or PNM"
    else:
        detail = str(exc) or type(exc).__name__
    return InputError(
        f"cannot read image '{path}': the file is corrupt, truncated or not a {suffix[1:].upper()} "
        f"image ({detail}); re-export or re-download it"
    )


@contextlib.contextmanager
def _pil_allows(max_pixels: int | None) -> Iterator[None]:
    """Let Pillow open images up to ``max_pixels`` although its own limit is lower.

    Pillow's limit is a module global (``Image.MAX_IMAGE_PIXELS``) with no per-call
    override. When the caller allows more than it, the global is lifted for this read under
    a lock, so concurrent ttasr reads never restore it to a wrong value; our own check,
    made right after the header is read, takes its place.
    """
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None and limit is not None and max_pixels <= 2 * limit:
        yield
        return
    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _size_ignoring_pil_limit(data: bytes) -> tuple[int, int]:
    """(width, height) from the header of a file Pillow refused as too large; decodes nothing."""
    from PIL import Image

    with _pil_allows(None), Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as im:
        return im.size


def _is_16bit_colour_tiff(im: Any) -> bool:
    """Whether Pillow would lose precision: a 16-bit TIFF with more than one sample per pixel."""
    try:
        bits = im.tag_v2.get(_TIFF_BITS_PER_SAMPLE)
    except AttributeError:
        return False
    return isinstance(bits, tuple) and len(bits) > 1 and max(bits) == 16


def _decode_cv2(data: bytes, path: Path, *, gray_alpha: bool) -> np.ndarray:
    """Decode 16-bit colour data with OpenCV, returned in RGB(A) order (gray+alpha as 2 channels)."""
    cv2 = require("cv2", "io", "16-bit colour images")
    try:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise InputError(f"cannot read image '{path}': OpenCV cannot decode it ({exc}); re-export it") from exc
    except MemoryError as exc:
        raise InputError(f"image '{path}' does not fit in memory when decoded: downscale it first") from exc
    if arr is None or arr.size == 0:
        raise InputError(f"cannot read image '{path}': the file is corrupt or truncated; re-export it")
    if arr.ndim == 3:
        c = arr.shape[2]
        if gray_alpha and c == 4:  # OpenCV decodes gray+alpha as BGRA
            arr = arr[..., [0, 3]]
        elif c == 3:
            arr = arr[..., ::-1]
        elif c == 4:
            arr = arr[..., [2, 1, 0, 3]]
        elif c == 1:
            arr = arr[..., 0]
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputError(f"cannot read image '{path}': OpenCV decoded it as {arr.dtype}; save it as 8 or 16 bits")
    return np.ascontiguousarray(arr)


def encode_pil(arr: np.ndarray, suffix: str) -> bytes:
    """File bytes of an 8-bit (or 16-bit gray) array in the format ``suffix`` names."""
    from PIL import Image

    fmt = Image.registered_extensions().get(suffix)
    if fmt is None:
        raise InputError(f"Pillow cannot write '{suffix}' files here; save as .png")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format=fmt)
    return buf.getvalue()


def encode_cv2(arr: np.ndarray, suffix: str) -> bytes:
    """File bytes of a 16-bit colour ``HxWxC`` RGB(A) array (Pillow cannot write these)."""
    cv2 = require("cv2", "io", "16-bit colour images")
    c = arr.shape[2]
    if c == 2:  # OpenCV has no gray+alpha writer: store as RGBA
        log.warning("writing a 16-bit gray+alpha image as RGBA (OpenCV has no gray+alpha writer)")
        arr = arr[..., [0, 0, 0, 1]]
        c = 4
    bgr = arr[..., [2, 1, 0]] if c == 3 else arr[..., [2, 1, 0, 3]]
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(bgr))
    if not ok:
        raise InputError(f"OpenCV could not encode a 16-bit {suffix} image")
    return bytes(buf.tobytes())
