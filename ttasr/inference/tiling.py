"""Tile layout and blending windows for tiled super-resolution (pure functions).

Along each axis of an ``H x W`` image, the fewest equal tiles are used whose neighbours
overlap by at least ``overlap`` pixels: ``n`` tiles of size ``ceil((length + (n - 1) *
overlap) / n)`` (rounded up to the model's size multiple when that stays within ``tile``),
for the smallest ``n`` that keeps that size within ``tile``. The tiles are spread evenly
from edge to edge, so their overlaps differ by at most a pixel. A 480 x 640 image with
``tile=512, overlap=32`` is cut into 1 x 2 tiles of 480 x 336, not 480 x 512. All tiles of
an image have the same size, so they can run through the network as one batch.

Each tile's ``scale``-times larger output is weighted by a separable window and
accumulated; dividing by the summed weights gives the result. The 1-D window of a tile
side that has a neighbour is, in LR pixels from that edge::

    0                      for the first  m = overlap // 4  pixels (the seam margin)
    raised cosine 0 → 1    over the next  overlap - 2m  pixels
    1                      beyond

Sides on the image border keep weight 1. Because the outermost ``m`` pixels of every inner
edge get zero weight, tiled inference equals untiled inference (up to float rounding) when
the network's receptive-field radius is at most ``overlap // 4`` LR pixels; with a wider
receptive field the differences stay in the seams and are faded in smoothly. Since the
grid is a product of row and column tiles, the summed weight is the outer product of the
1-D sums, so no full-size weight buffer is needed: :func:`normalised_windows` divides each
1-D window by the 1-D sum beforehand, and the tiles' weighted outputs then simply add up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..models.features import pad_for_model  # re-exported: ttasr.inference.pad_for_model

__all__ = [
    "Span",
    "blend_window",
    "normalised_windows",
    "pad_for_model",
    "seam_margin",
    "tile_size",
    "tile_spans",
    "tile_starts",
    "weight_sum",
]


@dataclass(frozen=True)
class Span:
    """One tile along one axis: LR ``start`` and ``size``, and its HR blending weights."""

    start: int
    size: int
    weight: torch.Tensor
    """1-D float32 window of length ``size * scale``."""


def seam_margin(overlap: int) -> int:
    """LR pixels next to an inner tile edge that get zero weight (``overlap // 4``)."""
    return overlap // 4


def _check(tile: int, overlap: int, multiple_of: int) -> None:
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be positive, got {multiple_of}")


def _layout(length: int, tile: int, overlap: int, multiple_of: int) -> tuple[int, int]:
    """``(count, size)`` of the fewest equal tiles covering ``length``; see the module docstring."""
    _check(tile, overlap, multiple_of)
    if length <= tile:
        return 1, length
    # n tiles of size s overlapping by `overlap` cover n*s - (n-1)*overlap pixels; this n is
    # the smallest whose s = ceil((length + (n-1)*overlap) / n) can be <= tile
    n = max(2, math.ceil((length - overlap) / (tile - overlap)))
    while True:
        size = -(-(length + (n - 1) * overlap) // n)
        if size <= tile:
            rounded = -(-size // multiple_of) * multiple_of
            return n, rounded if rounded <= tile else size
        n += 1


def tile_size(length: int, tile: int, overlap: int, multiple_of: int = 1) -> int:
    """Size of every tile along an axis of ``length`` pixels (``length`` for one tile)."""
    return _layout(length, tile, overlap, multiple_of)[1]


def tile_starts(length: int, tile: int, overlap: int, multiple_of: int = 1) -> list[int]:
    """Start offsets of the fewest equal tiles covering ``[0, length)`` with ``overlap``.

    One tile (start 0) when ``length <= tile``. Otherwise ``n`` tiles of
    :func:`tile_size` spread evenly: the first starts at 0, the last ends at ``length``,
    and neighbours overlap by at least ``overlap`` pixels (by at most one pixel more than
    the smallest overlap of the row).
    """
    n, size = _layout(length, tile, overlap, multiple_of)
    if n == 1:
        return [0]
    # size - overlap >= ceil((length - size) / (n - 1)) >= every stride, so overlaps hold
    return [round(i * (length - size) / (n - 1)) for i in range(n)]


def blend_window(size: int, scale: int, overlap: int, *, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D weights (length ``size * scale``) for a tile side; see the module docstring.

    ``ramp_start`` / ``ramp_end`` say whether the tile has a neighbour before / after it.
    """
    n = size * scale
    w = torch.ones(n, dtype=torch.float64)
    if overlap <= 0 or not (ramp_start or ramp_end):
        return w.float()
    m = seam_margin(overlap)
    ramp = overlap - 2 * m
    # LR coordinate of each HR pixel centre, measured from the tile's start
    pos = (torch.arange(n, dtype=torch.float64) + 0.5) / scale

    def side(d: torch.Tensor) -> torch.Tensor:
        t = ((d - m) / ramp).clamp(0.0, 1.0)
        return 0.5 - 0.5 * torch.cos(math.pi * t)

    if ramp_start:
        w = w * side(pos)
    if ramp_end:
        w = w * side(size - pos)
    return w.float()


def tile_spans(length: int, tile: int, overlap: int, scale: int, multiple_of: int = 1) -> list[Span]:
    """Tiles along one axis (:func:`tile_starts`) with their HR blending windows."""
    starts = tile_starts(length, tile, overlap, multiple_of)
    size = tile_size(length, tile, overlap, multiple_of)
    return [
        Span(s, size, blend_window(size, scale, overlap, ramp_start=i > 0, ramp_end=i < len(starts) - 1))
        for i, s in enumerate(starts)
    ]


def weight_sum(spans: list[Span], length: int, scale: int) -> torch.Tensor:
    """Summed 1-D weights over an axis of ``length * scale`` HR pixels (all positive).

    A small CPU tensor (the windows of :func:`tile_spans` are made there): the positivity
    check reads it on the host, never on a GPU.
    """
    total = torch.zeros(length * scale, dtype=torch.float32)
    for sp in spans:
        total[sp.start * scale:(sp.start + sp.size) * scale] += sp.weight
    if float(total.min()) <= 0:
        raise AssertionError("tile windows leave pixels with zero weight")  # a layout bug
    return total


def normalised_windows(spans: list[Span], length: int, scale: int) -> list[torch.Tensor]:
    """Each span's window divided by :func:`weight_sum` over its pixels (CPU, float32).

    With these, the blended image is the plain sum of the weighted tile outputs: no
    division of the full-size result afterwards.
    """
    weight_sum(spans, length, scale)  # checks the layout
    total = torch.zeros(length * scale, dtype=torch.float64)  # float64: each weight rounded once
    for sp in spans:
        total[sp.start * scale:(sp.start + sp.size) * scale] += sp.weight.double()
    return [(sp.weight.double() / total[sp.start * scale:(sp.start + sp.size) * scale]).float()
            for sp in spans]
