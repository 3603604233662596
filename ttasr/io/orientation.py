"""EXIF orientation: turning phone photos upright.

Cameras store pixels in sensor order and record how to display them in the EXIF
Orientation tag (0x0112). Viewers apply it, so a model fed the raw pixels would return a
result that looks rotated next to the input. Pillow-decoded images go through
:func:`PIL.ImageOps.exif_transpose`; arrays decoded by OpenCV (16-bit colour files, which
OpenCV reads with ``IMREAD_UNCHANGED`` and so without rotating) go through
:func:`orient_array`, which applies the same eight transforms.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["ORIENTATION_TAG", "exif_orientation", "orient_array", "orientation_from_exif", "upright"]

log = logging.getLogger(__name__)

ORIENTATION_TAG = 0x0112


def _valid(value: Any) -> int:
    """Orientation values outside 1-8 (written by broken software) mean "as stored"."""
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def exif_orientation(image: Any) -> int:
    """The Orientation tag of a PIL image (1 when absent or unreadable).

    A damaged EXIF block should not make a readable image unusable, so errors here are
    logged and ignored.
    """
    try:
        return _valid(image.getexif().get(ORIENTATION_TAG))
    except Exception as exc:  # noqa: BLE001 - any EXIF parser failure means "no orientation"
        log.debug("ignoring unreadable EXIF data: %s", exc)
        return 1


def orientation_from_exif(data: bytes) -> int:
    """The Orientation tag of a raw EXIF block (a PNG ``eXIf`` chunk), 1 when absent."""
    from PIL import Image

    exif = Image.Exif()
    try:
        exif.load(data)
        return _valid(exif.get(ORIENTATION_TAG))
    except Exception as exc:  # noqa: BLE001 - see exif_orientation
        log.debug("ignoring unreadable EXIF data: %s", exc)
        return 1


def upright(image: Any) -> Any:
    """A PIL image turned as its EXIF orientation says (the image itself when already upright)."""
    if exif_orientation(image) == 1:
        return image
    from PIL import ImageOps

    return ImageOps.exif_transpose(image)


def orient_array(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF ``orientation`` (1-8) to an ``HxW`` or ``HxWxC`` array, as Pillow would.

    The tag names the transform that makes the stored pixels upright: 3 is a half turn,
    6 a quarter turn clockwise, 8 counter-clockwise, and 2, 4, 5, 7 their mirrored forms.
    """
    if orientation == 2:
        out = arr[:, ::-1]
    elif orientation == 3:
        out = arr[::-1, ::-1]
    elif orientation == 4:
        out = arr[::-1]
    elif orientation == 5:
        out = arr.swapaxes(0, 1)
    elif orientation == 6:
        out = np.rot90(arr, -1)
    elif orientation == 7:
        out = np.rot90(arr, 2).swapaxes(0, 1)
    elif orientation == 8:
        out = np.rot90(arr, 1)
    else:
        return arr
    return np.ascontiguousarray(out)
