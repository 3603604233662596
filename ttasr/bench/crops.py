"""Crops for the report: the most textured windows of each output, beside the same windows
of the bicubic-upsampled LR and of the HR."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch

from .jobs import Job

__all__ = ["CROPS", "CROP_SIZE", "crop_boxes", "keep_crops", "safe_name"]

CROPS = "crops"
CROP_SIZE = 128
"""Side of a kept crop in HR pixels (smaller for smaller images)."""


def safe_name(text: str) -> str:
    """``text`` as a file name: unsafe characters replaced, a short hash keeping names distinct."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80]
    return f"{slug}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def crop_boxes(lr: torch.Tensor, scale: int, count: int, size: int = CROP_SIZE) -> list[tuple[int, int, int]]:
    """Up to ``count`` non-overlapping square windows of ``lr`` with the most texture, as
    ``(top, left, side)`` in LR pixels, most textured first.

    Candidates lie on a half-window grid (plus the last row and column); texture is the mean
    absolute gradient of the gray image inside a window. Each side is ``size / scale``
    (at most the image's shorter side), so the HR-side crop is about ``size`` pixels.
    """
    h, w = lr.shape[-2:]
    side = max(1, min(size // max(scale, 1), h, w))
    gray = lr.detach().to("cpu", torch.float64).reshape(-1, h, w).mean(0)
    grad = torch.zeros(h, w, dtype=torch.float64)
    grad[:, 1:] += (gray[:, 1:] - gray[:, :-1]).abs()
    grad[1:, :] += (gray[1:, :] - gray[:-1, :]).abs()
    integral = torch.nn.functional.pad(grad.cumsum(0).cumsum(1), (1, 0, 1, 0))

    def positions(n: int) -> list[int]:
        step = max(1, side // 2)
        return sorted({*range(0, n - side + 1, step), n - side})

    scored = []
    for top in positions(h):
        for left in positions(w):
            b, r = top + side, left + side
            energy = float(integral[b, r] - integral[top, r] - integral[b, left] + integral[top, left])
            scored.append((-energy, top, left))
    chosen: list[tuple[int, int, int]] = []
    for _, top, left in sorted(scored):
        if len(chosen) == count:
            break
        if all(top >= t + side or t >= top + side or left >= l_ + side or l_ >= left + side
               for t, l_, _ in chosen):
            chosen.append((top, left, side))
    return chosen


def _bicubic_crop(lr: torch.Tensor, scale: int, top: int, left: int, side: int) -> torch.Tensor:
    """The HR-side window of the bicubic upsampled ``lr``: only a padded LR window is upsampled
    (bicubic reads 2 pixels each way, so the result equals the same part of the whole image)."""
    h, w = lr.shape[-2:]
    pad = 2
    t0, l0 = max(0, top - pad), max(0, left - pad)
    t1, l1 = min(h, top + side + pad), min(w, left + side + pad)
    up = torch.nn.functional.interpolate(lr[..., t0:t1, l0:l1].to(torch.float32), scale_factor=scale,
                                         mode="bicubic", align_corners=False)
    y, x = (top - t0) * scale, (left - l0) * scale
    return up[..., y:y + side * scale, x:x + side * scale].clamp(0, 1)


def keep_crops(job: Job, lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor | None, scale: int, count: int,
                out: Path) -> list[dict[str, Any]]:
    """Write this job's crops (and the item's bicubic and HR crops, once) and describe them."""
    from ..io import save_image
    from ..metrics.fidelity import psnr_y

    lr = lr.detach().to("cpu", torch.float32)
    own = safe_name(job.key)
    shared = safe_name(f"{job.dataset}|{job.item}|{job.model}")
    kept = []
    for n, (top, left, side) in enumerate(crop_boxes(lr, scale, count)):
        y, x, s = top * scale, left * scale, side * scale
        views = {"sr": sr[..., y:y + s, x:x + s], "bicubic": _bicubic_crop(lr, scale, top, left, side)}
        if hr is not None and hr.shape[-2] >= y + s and hr.shape[-1] >= x + s:
            views["hr"] = hr[..., y:y + s, x:x + s].to("cpu", torch.float32)
        if views["sr"].shape[-2:] != (s, s):  # an output smaller than LR x scale
            continue
        entry: dict[str, Any] = {"box": [y, x, s, s]}
        for view, image in views.items():
            rel = f"{CROPS}/{own if view == 'sr' else shared + '-' + view}-{n}.png"
            if view == "sr" or not (out / rel).is_file():  # the shared views: once per item and model
                save_image(image, out / rel)
            entry[view] = rel
        if "hr" in views:
            entry["psnr_y"] = {v: psnr_y(views[v], views["hr"]) for v in ("sr", "bicubic")}
        kept.append(entry)
    return kept
