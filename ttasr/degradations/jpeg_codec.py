"""Real JPEG round trips with a random quality (Real-ESRGAN §3.1 "JPEG compression").

Each image is rounded to 8 bits and encoded by PIL (libjpeg: the IJG quantisation tables
scaled by the quality, 4:2:0 chroma), then decoded. Real-ESRGAN uses DiffJPEG, a
differentiable re-implementation on the GPU with a continuous quality; here the codec is
the real one, so the quality is an integer, drawn uniformly on the range's integers
(Real-ESRGAN: [30, 95] in both stages). A tensor on a GPU is copied to the CPU for the
codec and back (one synchronisation per call).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from . import _draws
from ._draws import Range

__all__ = ["decode_jpeg", "draw_jpeg_quality", "encode_jpeg", "jpeg_roundtrip", "random_jpeg"]


def _qualities(quality: int | Sequence[int], batch: int) -> list[int]:
    q = [int(quality)] * batch if isinstance(quality, (int, float)) else [int(v) for v in quality]
    if len(q) != batch:
        raise InputError(f"need one JPEG quality per image ({batch}), got {len(q)}")
    if any(not 1 <= v <= 100 for v in q):
        raise InputError(f"JPEG quality must be in [1, 100], got {q}")
    return q


def encode_jpeg(x: torch.Tensor, quality: int | Sequence[int]) -> list[bytes]:
    """The JPEG file of each image of a BCHW batch (1 or 3 channels, values clamped to [0, 1]
    and rounded to 8 bits), encoded by PIL with its quality (one, or one per image)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"encode_jpeg needs a Bx1xHxW or Bx3xHxW tensor, got {tuple(x.shape)}")
    q = _qualities(quality, x.shape[0])
    arr = (x.detach().clamp(0, 1) * 255.0).round().to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()
    files = []
    for i in range(arr.shape[0]):
        buf = io.BytesIO()
        Image.fromarray(arr[i, ..., 0] if arr.shape[-1] == 1 else arr[i]).save(buf, format="JPEG", quality=q[i])
        files.append(buf.getvalue())
    return files


def decode_jpeg(files: Sequence[bytes], like: torch.Tensor) -> torch.Tensor:
    """Decode JPEG files of equal size into a BCHW tensor of ``like``'s dtype, device and channels."""
    c = like.shape[1]
    out = []
    for data in files:
        with Image.open(io.BytesIO(data)) as im:
            a = np.asarray(im.convert("L" if c == 1 else "RGB"))
        out.append(torch.from_numpy(a.reshape(a.shape[0], a.shape[1], c).copy()))
    res = torch.stack(out).permute(0, 3, 1, 2).to(like.dtype) / 255.0
    return res.to(like.device)


def jpeg_roundtrip(x: torch.Tensor, quality: int | Sequence[int]) -> torch.Tensor:
    """``decode(encode(x))`` per image, in ``x``'s dtype and device (bit for bit what
    :func:`ttasr.degradations.noise.jpeg` gives)."""
    return decode_jpeg(encode_jpeg(x, quality), x)


def draw_jpeg_quality(generator: torch.Generator, quality_range: Range = (30, 95)) -> int:
    """One integer quality, uniform on the integers of ``quality_range``."""
    lo, hi = round(quality_range[0]), round(quality_range[1])
    if not 1 <= lo <= hi <= 100:
        raise InputError(f"JPEG quality range must satisfy 1 <= low <= high <= 100, got {quality_range}")
    return _draws.integer(generator, lo, hi)


def random_jpeg(x: torch.Tensor, generator: torch.Generator,
                quality_range: Range = (30, 95)) -> tuple[torch.Tensor, list[int]]:
    """JPEG each image of a BCHW batch with its own random quality; returns the qualities."""
    q = [draw_jpeg_quality(generator, quality_range) for _ in range(x.shape[0])]
    return jpeg_roundtrip(x, q), q
