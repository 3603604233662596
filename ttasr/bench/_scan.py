"""Scanning folders without decoding pixels: listing images, reading sizes, checking pairs.

Every check here turns a bad file into a :class:`~ttasr.bench.records.Problem` and moves on,
so that one scan reports everything wrong with a dataset at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import IMAGE_SUFFIXES
from ..io.codecs import check_pixels
from ..io.orientation import exif_orientation
from .records import BenchItem, Problem

__all__ = ["check_pair", "child", "image_files", "log_problems", "pair_items", "probe_size"]

log = logging.getLogger(__name__)

_HEADER_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "PPM")
"""The Pillow plugins behind IMAGE_SUFFIXES, as in :mod:`ttasr.io.codecs`: a file named
``.png`` never reaches a rarely used plugin while its header is read."""

_TRANSPOSING = (5, 6, 7, 8)
"""EXIF orientations that swap width and height when the image is turned upright."""


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name.

    Hidden files are skipped: archives unpacked on macOS carry ``._name.png`` companions that
    are not images, and ttasr's own temporary files start with a dot.
    """
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def child(folder: Path, name: str) -> Path | None:
    """``folder/name``, matching the name case-insensitively (``Test`` or ``test``), or None."""
    exact = folder / name
    if exact.is_dir():
        return exact
    if not folder.is_dir():
        return None
    for p in sorted(folder.iterdir()):
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return None


def probe_size(path: Path, max_pixels: int | None) -> tuple[int, int]:
    """``(height, width)`` of the upright image, from its header alone.

    Raises :class:`~ttasr.errors.InputError` when the header cannot be read or declares more
    pixels than ``max_pixels`` (the file would be refused when loaded, so it is refused now).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=_HEADER_FORMATS) as im:
            width, height = im.size
            turned = exif_orientation(im) in _TRANSPOSING
    except UnidentifiedImageError as exc:  # its text names the file again; say what it is not
        raise InputError("unreadable: not a PNG, JPEG, BMP, TIFF, WebP or PNM image") from exc
    except Exception as exc:  # any failure to parse an untrusted header means an unusable file
        raise InputError(f"unreadable header ({exc or type(exc).__name__})") from exc
    check_pixels(path, width, height, max_pixels)
    return (width, height) if turned else (height, width)


def check_pair(
    hr: tuple[int, int], lr: tuple[int, int], scale: int, *, mod_crop: bool
) -> tuple[str | None, tuple[int, int] | None]:
    """Whether an HR of size ``hr`` is the reference of an LR of size ``lr`` at ``scale``.

    Returns ``(reason, crop)``: ``reason`` is None when the pair is usable, else one line
    saying what is wrong; ``crop`` is the HR ``(height, width)`` to keep when the HR is
    larger than LR x scale by less than ``scale`` pixels (a side not divisible by the scale)
    and ``mod_crop`` allows cropping it, else None.
    """
    (hh, hw), (lh, lw) = hr, lr
    want = (lh * scale, lw * scale)
    if (hh, hw) == want:
        return None, None
    if (hh, hw) == (lh, lw):
        return (
            f"LR has the HR's size {hh}x{hw}: the LR was upsampled to the HR's size (RealSR v1/v2 "
            f"ship pairs like this); use data whose LR is 1/{scale} of the HR (RealSR v3)"
        ), None
    if hh // scale == lh and hw // scale == lw:
        if mod_crop:
            return None, want
        return (
            f"HR {hh}x{hw} is not divisible by the scale {scale} (LR {lh}x{lw}); pass "
            f"mod_crop=True to crop the HR to {want[0]}x{want[1]}"
        ), None
    return f"HR is {hh}x{hw} but LR {lh}x{lw} x {scale} is {want[0]}x{want[1]}", None


def pair_items(
    hr_files: Mapping[str, Path],
    lr_files: Mapping[str, Path],
    *,
    scale: int,
    dataset: str,
    mod_crop: bool,
    max_pixels: int | None,
    problems: list[Problem],
    info: Mapping[str, Any] | None = None,
) -> list[BenchItem]:
    """Items for the keys found on both sides; a problem for every other key or bad pair.

    Keys are scene names (``Canon_001``); items come out sorted by key. Problems are appended
    to ``problems`` in the same order.
    """
    items: list[BenchItem] = []
    for key in sorted(set(hr_files) | set(lr_files)):
        hr, lr = hr_files.get(key), lr_files.get(key)
        if hr is None or lr is None:
            have, lack = ("LR", "HR") if hr is None else ("HR", "LR")
            path = lr if hr is None else hr
            assert path is not None
            problems.append(Problem(path, f"{have} image of '{key}' has no {lack} counterpart", "missing"))
            continue
        sizes = _probe_all((hr, lr), max_pixels, problems)
        if sizes is None:
            continue
        hr_size, lr_size = sizes
        reason, crop = check_pair(hr_size, lr_size, scale, mod_crop=mod_crop)
        if reason is not None:
            problems.append(Problem(hr, reason, "size"))
            continue
        items.append(BenchItem(
            name=key, lr=lr, hr=hr, scale=scale, dataset=dataset, lr_size=lr_size,
            hr_size=(lr_size[0] * scale, lr_size[1] * scale), hr_crop=crop, info=dict(info or {}),
        ))
    return items


def _probe_all(paths: Iterable[Path], max_pixels: int | None, problems: list[Problem]) -> list[tuple[int, int]] | None:
    """The sizes of all ``paths``, or None after recording a problem for each unreadable one."""
    sizes: list[tuple[int, int]] = []
    ok = True
    for path in paths:
        try:
            sizes.append(probe_size(path, max_pixels))
        except InputError as exc:
            problems.append(Problem(path, str(exc), "unreadable"))
            ok = False
    return sizes if ok else None


def log_problems(name: str, problems: list[Problem]) -> None:
    """One warning per scan that found problems, naming the first few."""
    if not problems:
        return
    shown = "\n".join(f"  - {p}" for p in problems[:5])
    more = f"\n  ... and {len(problems) - 5} more (see BenchDataset.problems)" if len(problems) > 5 else ""
    log.warning("%s: %d file(s) left out:\n%s%s", name, len(problems), shown, more)
