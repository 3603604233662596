"""The JPEG compression an image went through, read from its pixels.

A JPEG file carries its quantisation tables, and :func:`~ttasr.pairs.jpeg_settings_of` reads
them. An image that was compressed and then saved losslessly (a PNG export, a screenshot of a
decoded JPEG, a dataset converted to PNG) carries none, yet its pixels still hold them: in the
8x8 blocks of JPEG's grid, every DCT coefficient of the luma is a multiple of its table's step,
up to the decoder's rounding. :func:`detect_jpeg` finds the grid, then for each of the 64
frequencies the largest step whose multiples the coefficients sit on, and returns the settings
that :func:`~ttasr.pairs.calibrate_kernel` compresses its candidates with.

Limits: only the luma table is read (the chroma one is libjpeg's for the same quality when
the luma table is libjpeg's, else a copy of the luma one, and 4:2:0 chroma is assumed; the
calibration compares the luma, which neither changes). A step whose frequency was quantised
to zero in (nearly) every block cannot be read; it is filled from libjpeg's table when the
readable steps match one, else from the largest readable step. An image resized or rotated
after compression has lost its grid and reads as uncompressed.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import torch

from ..errors import InputError
from .calibration import JpegSettings

__all__ = ["JpegTrace", "detect_jpeg", "jpeg_trace_of", "libjpeg_quality", "libjpeg_tables"]

log = logging.getLogger(__name__)

BLOCK = 8
GRID_FREQUENCIES = (1, 8, 9, 2, 16, 10, 17, 3)
"""The AC frequencies (row-major index) that vote for the grid: the lowest, read in most images."""
GRID_WINDOW = 512
"""Side (px) of the central window in which the grid is searched."""
GRID_BLOCKS = 1024
"""Blocks examined per candidate grid."""
READ_BLOCKS = 8192
"""Blocks read on the grid found (evenly spaced over a larger image; memory grows with them)."""


@dataclass(frozen=True)
class JpegTrace:
    """What :func:`detect_jpeg` read from an image's pixels."""

    settings: JpegSettings
    """The settings to compress like the image was (:meth:`JpegSettings.roundtrip`)."""
    offset: tuple[int, int]
    """``(top, left)`` of JPEG's 8-px grid in the image: ``(0, 0)`` unless it was cropped."""
    steps: tuple[int, ...]
    """The luma steps read, 64 in the tables' (row-major) order; 0 where none could be read."""
    quality: int | None
    """The libjpeg quality whose luma table agrees with every step read, if one does."""

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (1xCxHxW in [0, 1], the size of the image read or a crop of it at its top left)
        compressed and decoded with :attr:`settings` on the image's grid (:attr:`offset`); the
        rows and columns before the grid stay as they are."""
        top, left = self.offset
        out = x.clone()
        out[..., top:, left:] = self.settings.roundtrip(x[..., top:, left:]).to(x)
        return out


@cache
def libjpeg_tables(quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """libjpeg's (luma, chroma) quantisation tables at ``quality``, as PIL writes them."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="JPEG", quality=int(quality))
    with Image.open(buffer) as im:
        tables = im.quantization
    return tuple(int(v) for v in tables[0]), tuple(int(v) for v in tables[1])


def _dct_matrix() -> torch.Tensor:
    n = torch.arange(BLOCK, dtype=torch.float64)
    d = torch.cos((2 * n[None, :] + 1) * n[:, None] * math.pi / (2 * BLOCK)) * math.sqrt(2 / BLOCK)
    d[0] /= math.sqrt(2)
    return d


def _jpeg_luma(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """JPEG's Y (0-255, level-shifted by 128) of a 1xCxHxW image in [0, 1], as float64, and
    where a channel is clipped at 0 or 255: there the decoded colour no longer sums to the
    decoded Y (a saturated photo clips a fifth of its pixels at JPEG quality 56)."""
    x = image[0].detach().to("cpu", torch.float64) * 255
    y = x[0] if x.shape[0] == 1 else 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    clipped = ((x < 0.5) | (x > 254.5)).any(0)
    return y - 128, clipped


def _blocks(plane: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """The whole 8x8 blocks of ``plane`` (HxW) on the grid starting at ``offset``, as Nx8x8."""
    top, left = offset
    plane = plane[top:, left:]
    h, w = plane.shape[0] // BLOCK * BLOCK, plane.shape[1] // BLOCK * BLOCK
    return plane[:h, :w].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).permute(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK)


def block_dct(y: torch.Tensor, offset: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """The orthonormal 8x8 DCT of every whole block of ``y`` (HxW) on the grid starting at
    ``offset``, as ``blocks x 64`` in row-major frequency order (JPEG's scaling)."""
    d = _dct_matrix()
    return (d @ _blocks(y, offset) @ d.T).reshape(-1, BLOCK * BLOCK)


def _unclipped_dct(y: torch.Tensor, clipped: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """:func:`block_dct` of the blocks with no clipped pixel."""
    keep = ~_blocks(clipped, offset).flatten(1).any(1)
    return block_dct(y, offset)[keep]


def _spread(rows: torch.Tensor, most: int) -> torch.Tensor:
    """At most ``most`` of ``rows``, evenly spaced."""
    return rows if len(rows) <= most else rows[torch.linspace(0, len(rows) - 1, most).long()]


def jpeg_grid(y: torch.Tensor, clipped: torch.Tensor | None = None) -> tuple[tuple[int, int], int]:
    """The offset of JPEG's 8-px grid in ``y``: the one on which most of the lowest AC
    frequencies read a quantisation step (:func:`quantisation_step`), ties to the one whose
    non-zero AC coefficients sit closest to whole numbers; and that count (0 when no offset
    reads a step: no trace of JPEG)."""
    clipped = torch.zeros_like(y, dtype=torch.bool) if clipped is None else clipped
    # the grid is searched in a central window that starts on a multiple of 8 (offsets carry over)
    span = GRID_WINDOW + BLOCK
    top0, left0 = (max(0, (n - span) // 2) // BLOCK * BLOCK for n in y.shape)
    y, clipped = y[top0:top0 + span, left0:left0 + span], clipped[top0:top0 + span, left0:left0 + span]
    best, score = (0, 0), (-1, -1.0)
    for top in range(BLOCK):
        for left in range(BLOCK):
            coefficients = _spread(_unclipped_dct(y, clipped, (top, left)), GRID_BLOCKS)
            if not len(coefficients):
                continue
            read = sum(quantisation_step(coefficients[:, k]) >= 2 for k in GRID_FREQUENCIES)
            ac = coefficients[:, 1:]
            ac = ac[ac.abs() >= 1.5]  # zeros sit on every grid of a smooth image
            near = float(((ac - ac.round()).abs() < 0.25).double().mean()) if len(ac) else 0.0
            if (read, near) > score:
                best, score = (top, left), (read, near)
    return best, score[0]


def quantisation_step(coefficients: torch.Tensor, max_step: int = 255, min_support: int = 12,
                      max_residual: float = 0.45, min_z: float = 6.0) -> int:
    """The largest step ``q`` such that the coefficients of magnitude at least ``q/2`` (those
    that ``q`` left non-zero) sit on multiples of ``q``. Their mean distance to the nearest
    multiple must be at most ``max_residual`` (the decoder's rounding leaves about 0.25), and
    ``min_z`` standard errors below the ``q/4`` of coefficients that no step quantised (the
    distance is then uniform on ``[0, q/2]``), over at least ``min_support`` coefficients.
    Divisors of the true step pass too, hence the largest; its neighbours and multiples do
    not. 0 when no step of 2 or more qualifies (an uncompressed image, or a frequency
    quantised to zero in nearly every block)."""
    c = coefficients.abs().float()
    top = min(max_step, int(2 * float(c.max())) + 1) if len(c) else 0
    if top < 2:
        return 0
    steps = torch.arange(2, top + 1, dtype=torch.float32)  # larger steps keep nothing
    keep = c[:, None] >= steps[None, :] / 2  # blocks x steps
    support = keep.sum(0)
    ratio = c[:, None] / steps[None, :]
    residual = ((ratio - ratio.round()).abs() * steps[None, :] * keep).sum(0) / support.clamp(min=1)
    # a uniform distance on [0, q/2] has mean q/4 and standard deviation q/(4 sqrt 3)
    z = (steps / 4 - residual) * support.sqrt() / (steps / (4 * math.sqrt(3)))
    ok = (support >= min_support) & (residual <= max_residual) & (z >= min_z)
    found = torch.nonzero(ok).flatten()
    return int(steps[found[-1]]) if len(found) else 0


def libjpeg_quality(steps: Sequence[int], min_exact: int = 3) -> int | None:
    """The libjpeg quality whose luma table agrees best with the ``steps`` read (64, 0 where
    unread): every step read divides the table's (a frequency with few non-zero coefficients
    can read a divisor of its step), and most equal it, at least ``min_exact``. ``None`` when
    no quality does (a camera's own tables)."""
    read = [k for k, q in enumerate(steps) if q]
    best, best_exact = [], min_exact - 1
    for quality in range(1, 101):
        table = libjpeg_tables(quality)[0]
        if any(table[k] % steps[k] for k in read):
            continue
        exact = sum(table[k] == steps[k] for k in read)
        if exact > best_exact:
            best, best_exact = [quality], exact
        elif exact == best_exact:
            best.append(quality)
    return best[len(best) // 2] if best else None


def detect_jpeg(image: torch.Tensor, *, name: str = "image", min_steps: int = 3,
                min_custom_steps: int = 16) -> JpegTrace | None:
    """The JPEG compression that ``image`` (1xCxHxW in [0, 1], C 1 or 3, 8-bit values) went
    through, read from its pixels; ``None`` when fewer than ``min_steps`` of the luma
    table's steps read 2 or more (uncompressed, quality near 100, or resized since), or
    when the steps read match no libjpeg quality and are fewer than ``min_custom_steps``
    (too few to stand for a camera's own table; a wrong table is worse than none)."""
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3):
        raise InputError(f"{name}: detect_jpeg needs a 1x1xHxW or 1x3xHxW image, got {tuple(image.shape)}")
    if min(image.shape[-2:]) < 4 * BLOCK:
        raise InputError(f"{name}: {image.shape[-2]}x{image.shape[-1]} is too small to read JPEG blocks from "
                         f"(needs at least {4 * BLOCK} px a side)")
    y, clipped = _jpeg_luma(image)
    offset, _ = jpeg_grid(y, clipped)
    coefficients = _spread(_unclipped_dct(y, clipped, offset), READ_BLOCKS)
    # a flat block's pixels round alike, moving its DC by up to 4: the DC step is read on
    # blocks with some detail, whose pixels round independently
    detailed = (coefficients[:, 1:].abs() >= 1).sum(1) >= 6
    steps = [quantisation_step(coefficients[detailed, 0])]
    steps += [quantisation_step(coefficients[:, k]) for k in range(1, BLOCK * BLOCK)]
    if sum(q >= 2 for q in steps) < min_steps:
        return None
    read = [k for k, q in enumerate(steps) if q]
    quality = libjpeg_quality(steps)
    if quality is not None:
        settings = JpegSettings(quality=quality)
    elif len(read) < min_custom_steps:
        log.warning("%s: JPEG traces found, but %d luma steps read match no libjpeg quality: too few to "
                    "model the compression; treated as uncompressed", name, len(read))
        return None
    else:
        fill = max(steps)
        luma = tuple(q if q else fill for q in steps)
        settings = JpegSettings(qtables=(luma, luma))
    log.info("%s: JPEG traces found (grid offset %s, %d of 64 luma steps read%s)", name, offset, len(read),
             f", libjpeg quality {quality}" if quality is not None else ", not libjpeg's tables")
    return JpegTrace(settings, offset, tuple(steps), quality)


def jpeg_trace_of(image: torch.Tensor, name: object = "image") -> JpegTrace | None:
    """:func:`detect_jpeg` of ``image`` (on the CPU, as float), ``None`` also where the image is too
    small or not of a shape to read JPEG from: for callers that only ask whether JPEG shows."""
    try:
        return detect_jpeg(image.float().cpu(), name=str(name))
    except InputError:
        return None
