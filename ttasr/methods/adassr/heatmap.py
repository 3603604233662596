"""Heat-map images of AdaSSR's attention maps, to look at (no paper equation).

:func:`heatmap_rgb` colours a map with a dark-blue -> yellow ramp; :func:`save_heatmap`
writes it as a PNG, optionally blended over the image the map was computed on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import InputError

__all__ = ["heatmap_rgb", "save_heatmap"]

# anchor colours of a dark-blue -> purple -> orange -> yellow ramp (our own choice)
_RAMP = np.array(
    [[0.02, 0.02, 0.12], [0.25, 0.05, 0.45], [0.62, 0.12, 0.45], [0.93, 0.38, 0.20], [0.99, 0.85, 0.25], [1.0, 1.0, 0.75]]
)


def heatmap_rgb(attention_map: torch.Tensor, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """An ``HxWx3`` uint8 colour image of a map (min-max scaled unless ``vmin``/``vmax``)."""
    m = attention_map.detach().to("cpu", torch.float64).squeeze().numpy()
    if m.ndim != 2:
        raise InputError(f"a heat map needs a 2-D map, got shape {tuple(attention_map.shape)}")
    lo = float(m.min()) if vmin is None else vmin
    hi = float(m.max()) if vmax is None else vmax
    t = np.clip((m - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(m)
    pos = t * (len(_RAMP) - 1)
    i = np.minimum(pos.astype(int), len(_RAMP) - 2)
    f = (pos - i)[..., None]
    rgb = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    return (rgb * 255 + 0.5).astype(np.uint8)


def save_heatmap(
    attention_map: torch.Tensor,
    path: str | Path,
    image: torch.Tensor | None = None,
    *,
    alpha: float = 0.55,
) -> Path:
    """Write a heat-map PNG of ``attention_map`` (HxW), blended over ``image`` if given."""
    from PIL import Image

    rgb = heatmap_rgb(attention_map).astype(np.float64)
    if image is not None:
        img = image.detach().to("cpu", torch.float64).squeeze(0)
        if img.ndim != 3 or tuple(img.shape[-2:]) != rgb.shape[:2]:
            raise InputError(
                f"image {tuple(image.shape)} does not match the map {rgb.shape[:2]}: pass the image the map was computed on"
            )
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        base = img[:3].clamp(0, 1).permute(1, 2, 0).numpy() * 255
        rgb = alpha * rgb + (1 - alpha) * base
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8)).save(path)
    return path
