"""HR training images for pretraining the LR reconstruction network: loading and crops.

The paper pretrains on DIV2K's HR images (Sec. 5.1). :func:`load_hr_images` takes any
folder, glob, file list or tensors, or the name of the offline photo set (``"photos"``):
the natural colour photos that ship inside scikit-image (astronaut, coffee, chelsea,
rocket, stereo_motorcycle) plus, where the desktop has them, the KDE Plasma wallpaper
photos (``/usr/share/wallpapers/*/contents/images/*.jpg``, the largest file of each).
Images are kept as ``uint8`` (a quarter of the memory of floats); ``max_side`` shrinks the
large ones (antialiased), so that a crop of a few dozen pixels still holds structure
rather than a patch of sky.

:func:`sample_hr_crops` draws a batch of crops, images in proportion to their area, each
crop flipped or rotated at random (the dihedral group, as Real-ESRGAN's training does).
"""

from __future__ import annotations

import glob
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError

__all__ = ["HRImages", "PHOTO_SET", "load_hr_images", "offline_photo_files", "sample_hr_crops"]

log = logging.getLogger(__name__)

PHOTO_SET = "photos"
"""The name of the offline photo set accepted wherever HR images are asked for."""
_SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle")
_WALLPAPERS = "/usr/share/wallpapers/*/contents/images/*.jpg"


@dataclass
class HRImages:
    """Loaded HR images (``3 x H x W`` uint8 each) and where they came from."""

    images: list[torch.Tensor]
    names: list[str]
    source: str

    @property
    def sha256(self) -> str:
        """A hash of the pixels and names: part of a pretraining run's identity."""
        h = hashlib.sha256()
        for name, img in zip(self.names, self.images):
            h.update(name.encode())
            h.update(str(tuple(img.shape)).encode())
            h.update(img.contiguous().numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "images": len(self.images), "sha256": self.sha256}


def offline_photo_files() -> list[Path]:
    """The KDE wallpaper photos on this machine: the largest JPEG of each wallpaper."""
    best: dict[Path, tuple[int, Path]] = {}
    for p in sorted(Path(f) for f in glob.glob(_WALLPAPERS)):
        try:
            w, h = (int(v) for v in p.stem.split("x"))
        except ValueError:
            w = h = 0
        folder = p.parent
        if folder not in best or w * h > best[folder][0]:
            best[folder] = (w * h, p)
    return [p for _, p in (best[k] for k in sorted(best))]


def _shrink(img: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """``1x3xHxW`` float: shrunk (antialiased bicubic) so that its longer side is ``max_side``."""
    h, w = img.shape[-2:]
    if max_side is None or max(h, w) <= max_side:
        return img
    f = max_side / max(h, w)
    size = (max(1, round(h * f)), max(1, round(w * f)))
    return F.interpolate(img, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def _to_uint8(img: torch.Tensor) -> torch.Tensor:
    return (img[0] * 255).round().clamp(0, 255).to(torch.uint8)


def _photo_set() -> list[tuple[str, Any]]:
    from ...errors import require

    skdata = require("skimage.data", "offline", "the offline photo set")
    items: list[tuple[str, Any]] = []
    for name in _SKIMAGE_PHOTOS:
        img = getattr(skdata, name)()
        img = img[0] if isinstance(img, tuple) else img
        items.append((f"skimage:{name}", np.ascontiguousarray(img[..., :3])))
    walls = offline_photo_files()
    if not walls:
        log.info("no KDE wallpapers under %s: the photo set is scikit-image's %d photos",
                 _WALLPAPERS.split("*")[0], len(items))
    items += [(str(p), p) for p in walls]
    return items


def _files(source: Any) -> list[Any]:
    """A folder or glob as its image files, so that they are loaded (and shrunk) one at a
    time: a folder of DIV2K images as floats would not fit in memory at once."""
    from ...io.codecs import IMAGE_SUFFIXES

    if isinstance(source, (list, tuple)):
        return [f for item in source for f in _files(item)]
    if not isinstance(source, (str, Path)):
        return [source]
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.exists():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True)
                       if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no HR image files in {str(source)!r} (a folder, glob or file; or {PHOTO_SET!r} for "
                         "the offline photo set)")
    return list(files)


def load_hr_images(source: Any, *, max_side: int | None = None, min_side: int = 1) -> HRImages:
    """HR images from ``source``: ``"photos"`` (the offline photo set) or anything
    :func:`ttasr.load_images` accepts (folder, glob, files, arrays, tensors).

    Images whose shorter side (after ``max_side``) is under ``min_side`` are left out
    with a warning; none left is an :class:`~ttasr.errors.InputError`.
    """
    from ...io import load_images

    named = isinstance(source, str) and source == PHOTO_SET and not Path(source).exists()
    items: Sequence[tuple[str, Any]] = _photo_set() if named else [(str(f), f) for f in _files(source)]
    images, names, small = [], [], []
    for label, item in items:
        for rec in load_images(item, max_pixels=None):
            img = _shrink(rec.rgb, max_side)
            name = label if named else str(rec.path or rec.name)
            if min(img.shape[-2:]) < min_side:
                small.append(name)
                continue
            images.append(_to_uint8(img))
            names.append(name)
    if small:
        log.warning("left out %d HR images smaller than %d px: %s", len(small), min_side,
                    ", ".join(small[:5]) + (" ..." if len(small) > 5 else ""))
    if not images:
        raise InputError(f"no HR image of at least {min_side} px per side in {source!r}")
    text = PHOTO_SET if named else (str(source) if isinstance(source, (str, Path)) else type(source).__name__)
    log.info("HR images: %d from %s", len(images), text)
    return HRImages(images, names, text)


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 flips/rotations of a ``... x H x W`` tensor (``k`` in 0..7)."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def sample_hr_crops(images: Sequence[torch.Tensor], size: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """``batch x 3 x size x size`` float crops in [0, 1] of ``images`` (uint8, each at least
    ``size`` px per side), drawn with ``generator``: image by area, position, flip/rotation."""
    areas = torch.tensor([float(im.shape[-2] * im.shape[-1]) for im in images])
    which = torch.multinomial(areas / areas.sum(), batch, replacement=True, generator=generator)
    crops = []
    for i in which.tolist():
        im = images[i]
        h, w = im.shape[-2:]
        if min(h, w) < size:
            raise InputError(f"an HR image of {w}x{h} px is smaller than the {size}-px crop")
        top = int(torch.randint(h - size + 1, (), generator=generator))
        left = int(torch.randint(w - size + 1, (), generator=generator))
        k = int(torch.randint(8, (), generator=generator))
        crops.append(_dihedral(im[:, top:top + size, left:left + size], k))
    return torch.stack(crops).float() / 255.0
