"""``load_images``: any mix of paths, folders, globs, arrays, tensors and PIL images → records.

Every input is checked before the batch is handed on, and all problems are reported
together: a folder of 500 photos with three broken files should say so once, naming all
three, rather than stop at the first and make the user fix them one run at a time. With
``skip_bad=True`` the good images go on and the bad ones are listed on
:attr:`ImageBatch.skipped`.
"""

from __future__ import annotations

import glob
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .codecs import IMAGE_SUFFIXES, MAX_PIXELS, read_image
from .convert import record_from_array, record_from_pil, records_from_tensor
from .records import ImageBatch, ImageRecord

__all__ = ["load_images"]

log = logging.getLogger(__name__)


def load_images(source: Any, *, max_pixels: int | None = MAX_PIXELS, skip_bad: bool = False) -> ImageBatch:
    """Turn ``source`` into an :class:`ImageBatch` of validated records.

    ``source`` is a file path, a directory (its image files, sorted by name, not recursive),
    a glob pattern, a PIL image, a numpy array (``HxW``/``HxWxC``), a torch tensor
    (``HxW``/``CxHxW``/``BxCxHxW``), an :class:`ImageRecord`, or a list of any of these.
    Files are turned upright by their EXIF orientation.

    ``max_pixels`` caps the size a file's header may declare before it is decoded
    (default :data:`~ttasr.io.codecs.MAX_PIXELS`; ``None`` = no limit); arrays, tensors and
    PIL images are already in memory and are not capped.

    Every input is checked; if any cannot be used, one :class:`~ttasr.errors.InputError`
    lists them all with their reasons. With ``skip_bad=True`` they are left out instead,
    logged as a warning and recorded as ``(name, reason)`` on :attr:`ImageBatch.skipped`;
    if none is usable the InputError is raised all the same.
    """
    if isinstance(source, ImageBatch):
        return source
    single = not isinstance(source, (list, tuple))
    items = [source] if single else list(source)
    if not items:
        raise InputError("no images given: pass a path, directory, glob, array, tensor or PIL image")
    records: list[ImageRecord] = []
    groups: list[tuple[int, int]] = []
    bad: list[tuple[str, InputError]] = []
    for index, item in enumerate(items):
        if _is_collection(item):
            single = False
        try:
            expanded = _expand(item)
        except InputError as exc:
            bad.append((str(item), exc))
            continue
        for one in expanded:
            try:
                new = _records_from(one, index, max_pixels)
            except InputError as exc:
                bad.append((_label(one, index), exc))
                continue
            groups.append((len(records), len(new)))
            records.extend(new)
    if bad:
        _handle_bad(bad, len(groups), skip_bad)
    return ImageBatch(records, groups, single, skipped=[(name, str(exc)) for name, exc in bad])


def _label(item: Any, index: int) -> str:
    """How a bad input is named in the summary: its path, or the name its records would get."""
    if isinstance(item, Path):
        return str(item)
    if isinstance(item, np.ndarray):
        return f"numpy array #{index}"
    if isinstance(item, torch.Tensor):
        return f"tensor #{index}"
    return f"input #{index} ({type(item).__name__})"


def _handle_bad(bad: list[tuple[str, InputError]], good: int, skip_bad: bool) -> None:
    """Raise one error for all bad inputs, or (``skip_bad``) warn and let the good ones go on."""
    if len(bad) == 1 and good == 0:
        raise bad[0][1]  # one input, and it is bad: its own message says all there is to say
    total = len(bad) + good
    listing = "\n".join(f"  - {name}: {exc}" for name, exc in bad)
    if good == 0:
        raise InputError(f"none of the {total} images can be used:\n{listing}")
    if not skip_bad:
        raise InputError(
            f"{len(bad)} of {total} images cannot be used:\n{listing}\n"
            f"Fix or remove them, or pass skip_bad=True to go on with the other {good}."
        )
    log.warning("skipping %d of %d images that cannot be used:\n%s", len(bad), total, listing)


def _is_collection(item: Any) -> bool:
    """A directory or glob pattern stands for a list of images, even of one."""
    if not isinstance(item, (str, Path)):
        return False
    path = Path(item).expanduser()
    return path.is_dir() or (not path.exists() and any(ch in str(item) for ch in "*?["))


def _expand(item: Any) -> list[Any]:
    """A directory or glob pattern becomes its sorted image files; anything else itself."""
    if not isinstance(item, (str, Path)):
        return [item]
    text = str(item)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(
                f"directory '{path}' holds no image files ({', '.join(IMAGE_SUFFIXES)}): "
                "check the path or convert the images"
            )
        return files
    if path.exists():
        return [path]
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)
                       if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"glob pattern '{text}' matches no image files: check the pattern")
        return files
    raise InputError(f"image file '{text}' does not exist: check the path")


def _records_from(item: Any, index: int, max_pixels: int | None) -> list[ImageRecord]:
    if isinstance(item, ImageRecord):
        return [item]
    if isinstance(item, Path):
        arr = read_image(item, max_pixels=max_pixels)
        rec = record_from_array(arr, kind="path", name=item.name)
        rec.path = item
        return [rec]
    if isinstance(item, np.ndarray):
        return [record_from_array(item, kind="numpy", name=f"numpy array #{index}")]
    if isinstance(item, torch.Tensor):
        return records_from_tensor(item, name=f"tensor #{index}")
    from PIL import Image

    if isinstance(item, Image.Image):
        return [record_from_pil(item, name=getattr(item, "filename", "") or f"PIL image #{index}")]
    raise InputError(
        f"input #{index} is a {type(item).__name__}: pass a path, directory, glob, PIL image, "
        "numpy array (HxW or HxWxC) or torch tensor (CxHxW or BxCxHxW)"
    )
