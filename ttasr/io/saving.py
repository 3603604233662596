"""``save_image``: writing any image type to a file, bit-exact for integer data, atomically.

The data land through :func:`ttasr._fs.atomic_write_bytes`, so an interrupted run never
leaves a half-written image where a complete one is expected, and new files get the
umask's permissions like any other file the user creates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._fs import atomic_write_bytes
from ..errors import InputError
from .codecs import SIXTEEN_BIT_SUFFIXES, check_suffix, encode_cv2, encode_pil
from .convert import pil_to_array, quantise
from .loading import load_images
from .records import ImageRecord

__all__ = ["save_image"]


def save_image(image: Any, path: str | Path, *, bit_depth: int | None = None) -> Path:
    """Write ``image`` (numpy, PIL or torch, as :func:`~ttasr.io.load_images` accepts) to ``path``.

    uint16 data are written as 16-bit PNG/TIFF (OpenCV for colour, Pillow for gray); float
    data are written with ``bit_depth`` bits (8 by default). The file appears atomically.
    """
    path = Path(path).expanduser()
    suffix = check_suffix(path, "write")
    arr = _to_savable_array(image, bit_depth, path)
    if arr.dtype == np.uint16 and suffix not in SIXTEEN_BIT_SUFFIXES:
        raise InputError(
            f"cannot write 16-bit data to '{path}': {suffix[1:].upper()} holds 8 bits; "
            "save as .png or .tif, or pass uint8 data / bit_depth=8"
        )
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if suffix in (".jpg", ".jpeg") and channels in (2, 4):
        raise InputError(f"cannot write '{path}': JPEG has no alpha channel; save as .png or drop alpha")
    if arr.ndim == 3 and channels == 1:
        arr = arr[..., 0]
        channels = 1
    if arr.dtype == np.uint16 and channels > 1:
        data = encode_cv2(arr, suffix)
    else:
        data = encode_pil(arr, suffix)
    atomic_write_bytes(path, data)
    return path


def _to_savable_array(image: Any, bit_depth: int | None, path: Path) -> np.ndarray:
    if bit_depth not in (None, 8, 16):
        raise InputError(f"bit_depth={bit_depth} for '{path}': use 8 or 16")
    if isinstance(image, ImageRecord):
        raise InputError("save_image takes an image (array, tensor, PIL), not an ImageRecord: use to_output first")
    records = load_images(image).records
    if len(records) != 1:
        raise InputError(f"save_image writes one image to '{path}', got {len(records)}")
    rec = records[0]
    raw = _raw_array(image)
    if raw is not None and raw.dtype in (np.uint8, np.uint16) and bit_depth is None:
        return raw
    depth = bit_depth or (16 if rec.bit_depth == 16 else 8)
    planes = rec.rgb[0, :1] if rec.gray else rec.rgb[0]
    if rec.alpha is not None:
        planes = torch.cat([planes, rec.alpha[0]], 0)
    return quantise(planes.permute(1, 2, 0).numpy(), np.dtype(np.uint16 if depth == 16 else np.uint8))


def _raw_array(image: Any) -> np.ndarray | None:
    """The integer array behind a numpy or PIL image, kept as is so that saving is exact."""
    if isinstance(image, np.ndarray) and image.dtype in (np.uint8, np.uint16):
        return image
    from PIL import Image

    if isinstance(image, Image.Image):
        arr, _ = pil_to_array(image, "PIL image")
        return arr if arr.dtype in (np.uint8, np.uint16) else None
    return None
