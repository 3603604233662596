"""What ttasr reads from a PNG's chunks without decoding any pixels.

The header (IHDR) gives the size, so the pixel limit can be enforced before a decoder
allocates anything, and the bit depth and colour type, which decide between Pillow (8-bit)
and OpenCV (16-bit colour). The ``eXIf`` chunk carries the orientation that OpenCV ignores.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["PngHeader", "exif_chunk", "png_header"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    """0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA."""

    @property
    def sixteen_bit_colour(self) -> bool:
        """Whether Pillow would lose precision (it reads 16-bit RGB(A) and gray+alpha as 8-bit)."""
        return self.bit_depth == 16 and self.colour_type in (2, 4, 6)


def png_header(data: bytes) -> PngHeader | None:
    """The IHDR fields of PNG ``data``, or None when ``data`` does not start like a PNG."""
    if len(data) < 26 or data[:8] != _SIGNATURE or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return PngHeader(width, height, data[24], data[25])


def exif_chunk(data: bytes) -> bytes | None:
    """The payload of the ``eXIf`` chunk, or None; walks chunk headers only (no inflating)."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"eXIf":
            return data[pos + 8:pos + 8 + length]
        if kind == b"IEND":
            return None
        pos += 12 + length
    return None
