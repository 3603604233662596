"""Tile layout and blending windows for tiled super-resolution (pure functions).

An ``H x W`` image is cut into a regular grid of ``tile x tile`` crops whose neighbours
overlap by at least ``overlap`` pixels (the last tile of a row or column is aligned with the
image edge, so it may overlap more). Each tile's ``scale``-times larger output is weighted by
a separable window and accumulated; dividing by the summed weights gives the result.

The 1-D window of a tile side that has a neighbour is, in LR pixels from that edge::

    0                      for the first  m = overlap // 4  pixels (the seam margin)
    raised cosine 0 → 1    over the next  overlap - 2m  pixels
    1                      beyond

Sides on the image border keep weight 1. Because the outermost ``m`` pixels of every inner
edge get zero weight, tiled inference equals untiled inference (up to float rounding) when
the network's receptive-field radius is at most ``overlap // 4`` LR pixels; with a wider
receptive field the differences stay in the seams and are faded in smoothly. Since the
grid is a product of row and column tiles, the summed weight is the outer product of the
1-D sums, so no full-size weight buffer is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..models.features import pad_for_model  # re-exported: ttasr.inference.pad_for_model

__all__ = ["Span", "blend_window", "pad_for_model", "seam_margin", "tile_spans", "tile_starts", "weight_sum"]


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


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with ``overlap``.

    One tile (start 0) when ``length <= tile``; otherwise the stride is ``tile - overlap``
    and the last tile ends exactly at ``length``.
    """
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got overlap={overlap}, tile={tile}")
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = math.ceil((length - tile) / stride) + 1
    starts = [min(i * stride, length - tile) for i in range(count)]
    return sorted(set(starts))


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


def tile_spans(length: int, tile: int, overlap: int, scale: int) -> list[Span]:
    """Tiles along one axis with their HR blending windows."""
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    return [
        Span(s, size, blend_window(size, scale, overlap, ramp_start=i > 0, ramp_end=i < len(starts) - 1))
        for i, s in enumerate(starts)
    ]


def weight_sum(spans: list[Span], length: int, scale: int) -> torch.Tensor:
    """Summed 1-D weights over an axis of ``length * scale`` HR pixels (all positive)."""
    total = torch.zeros(length * scale, dtype=torch.float32)
    for sp in spans:
        total[sp.start * scale:(sp.start + sp.size) * scale] += sp.weight
    if float(total.min()) <= 0:
        raise AssertionError("tile windows leave pixels with zero weight")  # a layout bug
    return total
