"""Inference on images of any size: tiled, blended, padded to the model's requirements."""

from .enhance import enhance, enhance_tensor, resolve_dtype
from .tiling import (
    Span,
    blend_window,
    pad_for_model,
    seam_margin,
    tile_spans,
    tile_starts,
    weight_sum,
)

__all__ = [
    "Span",
    "blend_window",
    "enhance",
    "enhance_tensor",
    "pad_for_model",
    "resolve_dtype",
    "seam_margin",
    "tile_spans",
    "tile_starts",
    "weight_sum",
]
