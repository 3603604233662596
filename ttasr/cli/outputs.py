"""Output files of the commands: names decided before any work, checks, one-by-one writes."""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("ttasr")

from .signals import UsageError

_MODEL_SUFFIXES = (".safetensors", ".pth", ".pt")
"""What :func:`ttasr.models.saving.save_model` writes."""


def _check_folder(folder: Path, what: str) -> None:
    """Create ``folder`` and prove it takes files, before hours of work depend on it.

    A real file is written and removed: permission bits alone miss read-only mounts,
    ACLs and full quotas, and say nothing when running as root.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ttasr-write-check-", suffix=".part", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        from ..errors import InputError

        raise InputError(f"cannot write {what} to '{folder}' ({exc.strerror or exc}): "
                         "choose a folder you can write to") from None


def _check_model_path(path: Path) -> None:
    """``--save-model``: a suffix save_model writes, in a folder that takes files."""
    if path.suffix.lower() not in _MODEL_SUFFIXES:
        raise UsageError(f"--save-model {path}: use a .safetensors (recommended) or .pth suffix")
    if path.is_dir():
        raise UsageError(f"--save-model {path} is a folder: give a file name such as {path / 'adapted.safetensors'}")
    _check_folder(path.parent, "the adapted model")


def _output_paths(records: Sequence[Any], folder: Path, tag: str) -> list[Path]:
    """Where each image's result goes: distinct paths, decided before any work.

    Inputs from one folder give ``folder/<stem>_<tag>.png``. Inputs from several folders
    keep their path below the folders' common parent (``a/x.png``, ``b/x.png`` give
    ``folder/a/x_<tag>.png``, ``folder/b/x_<tag>.png``). Stems that clash in one folder
    keep the input's suffix (``x.png``, ``x.jpg`` give ``x_png_<tag>.png``,
    ``x_jpg_<tag>.png``), and whatever still clashes (the same file given twice) gets a
    counter. Names are compared case-insensitively, as macOS and Windows file systems do.
    """
    files = [Path(os.path.abspath(r.path)) if getattr(r, "path", None) is not None else None for r in records]
    parents = {f.parent for f in files if f is not None}
    root: Path | None = None
    if len(parents) > 1:
        try:
            root = Path(os.path.commonpath(sorted(str(p) for p in parents)))
        except ValueError:  # different drives: flat names, made distinct by the counter below
            root = None
    places: list[tuple[Path, str, str]] = []
    for i, (rec, f) in enumerate(zip(records, files)):
        name = Path(f.name if f is not None else str(getattr(rec, "name", "")))
        sub = f.parent.relative_to(root) if f is not None and root is not None else Path()
        places.append((sub, name.stem or f"image{i:03d}", name.suffix.lstrip(".").lower()))
    stems = Counter((str(sub).casefold(), stem.casefold()) for sub, stem, _ in places)
    paths: list[Path] = []
    seen: set[str] = set()
    for rec, (sub, stem, ext) in zip(records, places):
        base = f"{stem}_{ext}" if ext and stems[(str(sub).casefold(), stem.casefold())] > 1 else stem
        out_ext = ".png" if getattr(rec, "bit_depth", 8) <= 16 else ".tiff"
        path = candidate = folder / sub / f"{base}_{tag}{out_ext}"
        n = 1
        while str(candidate).casefold() in seen:
            n += 1
            candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        seen.add(str(candidate).casefold())
        paths.append(candidate)
    return paths


def _prepare_outputs(records: Sequence[Any], folder: Path, tag: str) -> list[Path]:
    """:func:`_output_paths`, with every folder they need created and checked."""
    paths = _output_paths(records, folder, tag)
    for sub in sorted({p.parent for p in paths}):
        _check_folder(sub, "images")
    for p in paths:
        if p.is_dir():
            from ..errors import InputError

            raise InputError(f"cannot write '{p}': a folder of that name is in the way")
    return paths


def _write_outputs(paths: Sequence[Path], indices: Iterable[int], make: Callable[[int], Any]) -> list[Path]:
    """Write ``make(i)`` to ``paths[i]`` for each index, each as soon as it is made, so that
    an interrupt keeps every image finished before it."""
    from ..io import save_image

    todo = list(indices)
    written: list[Path] = []
    try:
        for i in todo:
            save_image(make(i), paths[i])
            written.append(paths[i])
            log.info("wrote %s", paths[i])
    except KeyboardInterrupt:
        log.warning("interrupted: wrote %d of %d images", len(written), len(todo))
        raise
    return written


def _summary(written: Sequence[Path], loaded: int, folder: Path, skipped: Sequence[tuple[str, str]],
             note: str = "") -> None:
    """The last line of a command: what was written and which inputs were skipped."""
    total = loaded + len(skipped)
    line = f"wrote {len(written)} of {total} image{'s' if total != 1 else ''} to {folder}{note}"
    if skipped:
        line += f"; skipped {len(skipped)} that cannot be used: " + ", ".join(name for name, _ in skipped)
    (log.warning if skipped or note else log.info)(line)


def _dtype(name: str | None) -> Any:
    import torch

    return getattr(torch, name) if name else None

