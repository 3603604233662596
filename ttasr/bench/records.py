"""What a benchmark dataset is made of: :class:`BenchItem`, :class:`BenchDataset`, :class:`Problem`.

A dataset is scanned, not loaded: an item knows where its pixels are (a file, or a tensor
already in memory) and the sizes read from the file headers, and decodes only when
:meth:`BenchItem.load_lr` / :meth:`BenchItem.load_hr` are called. Scanning a set of
thousands of photos therefore costs one header read per file, and a bad file is a
:class:`Problem` on the dataset instead of an exception half-way through a benchmark.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, overload

import torch

from ..errors import InputError
from ..io import MAX_PIXELS, load_images

__all__ = ["BenchDataset", "BenchItem", "Problem", "ProblemKind", "Source"]

ProblemKind = Literal["missing", "size", "unreadable", "name", "layout"]
"""``missing``: a file without its HR/LR counterpart; ``size``: HR is not LR x scale;
``unreadable``: the header cannot be read; ``name``: a file the layout's naming does not
explain (or two files that claim the same pair); ``layout``: an expected folder is absent."""

Source = Path | torch.Tensor
"""Where an image's pixels are: a file (decoded on demand) or a ``1x3xHxW`` tensor in [0, 1]."""


@dataclass(frozen=True)
class Problem:
    """One file (or folder) a loader could not use, and why, in one line."""

    path: Path
    reason: str
    kind: ProblemKind

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True, eq=False)
class BenchItem:
    """One LR image to super-resolve, with its HR reference when the dataset has one."""

    name: str
    """Unique within the dataset; the scene name without role suffixes (``Canon_001``)."""
    lr: Source
    hr: Source | None
    """None for LR-only data, which can be scored with no-reference metrics only."""
    scale: int
    dataset: str
    lr_size: tuple[int, int]
    """``(height, width)`` of the LR image, as its file header (or tensor) says."""
    hr_size: tuple[int, int] | None = None
    """``(height, width)`` of the HR reference as used: after ``hr_crop``, always LR x scale."""
    hr_crop: tuple[int, int] | None = None
    """When set, :meth:`load_hr` keeps the top-left ``(height, width)`` of the HR file: the
    "mod crop" that drops the rows and columns past the last whole multiple of the scale."""
    info: Mapping[str, Any] = field(default_factory=dict)
    """Whatever the loader knows beyond the pixels: camera, split, preset, seed, kernel, ..."""

    @property
    def has_hr(self) -> bool:
        return self.hr is not None

    def load_lr(self, *, max_pixels: int | None = MAX_PIXELS) -> torch.Tensor:
        """The LR image as a ``1x3xHxW`` float32 tensor in [0, 1] (gray replicated, alpha dropped)."""
        return _load(self.lr, max_pixels)

    def load_hr(self, *, max_pixels: int | None = MAX_PIXELS) -> torch.Tensor:
        """The HR reference as a ``1x3xHxW`` float32 tensor in [0, 1], of size LR x scale."""
        if self.hr is None:
            raise InputError(
                f"{self.dataset}/{self.name} has no HR reference: score it with no-reference metrics only"
            )
        hr = _load(self.hr, max_pixels)
        if self.hr_crop is not None:
            hr = hr[..., : self.hr_crop[0], : self.hr_crop[1]]
        return hr


def _load(source: Source, max_pixels: int | None) -> torch.Tensor:
    if isinstance(source, torch.Tensor):
        return source
    return load_images(source, max_pixels=max_pixels).records[0].rgb


@dataclass
class BenchDataset(Sequence[BenchItem]):
    """The usable items of one dataset at one scale, and the problems met while scanning it."""

    name: str
    scale: int
    items: list[BenchItem]
    problems: list[Problem] = field(default_factory=list)
    """Per-file problems, in scan order; those files are left out of :attr:`items`."""
    root: Path | None = None
    """The folder scanned (for messages and reports); None for data built in memory."""

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> BenchItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[BenchItem]: ...

    def __getitem__(self, index: int | slice) -> BenchItem | list[BenchItem]:
        return self.items[index]

    def __iter__(self) -> Iterator[BenchItem]:
        return iter(self.items)

    @property
    def paired(self) -> bool:
        """Whether every item has an HR reference (full-reference metrics apply to all)."""
        return bool(self.items) and all(item.has_hr for item in self.items)

    def head(self, n: int) -> BenchDataset:
        """The first ``n`` items (a quick run); problems are kept, since they describe the scan."""
        if n < 0:
            raise InputError(f"head({n}): the number of items must be >= 0")
        return replace(self, items=self.items[:n])

    def summary(self) -> str:
        """One line for logs and reports: name, scale, how many items, pairs and problems."""
        pairs = sum(item.has_hr for item in self.items)
        text = f"{self.name} x{self.scale}: {len(self.items)} images, {pairs} with HR"
        if self.problems:
            text += f", {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
        return text

    def describe_problems(self, limit: int | None = 20) -> str:
        """The problems, one per line (the first ``limit`` of them; None for all)."""
        shown = self.problems if limit is None else self.problems[:limit]
        lines = [f"  - {p}" for p in shown]
        if len(shown) < len(self.problems):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)
