"""The in-memory form every image takes: :class:`ImageRecord` and the :class:`ImageBatch` of them.

A record keeps what models consume (an RGB float tensor) apart from what is needed to hand
results back in the caller's type (kind, layout, dtype, mode, device), so that the model code
never sees where an image came from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import InputError

__all__ = ["ImageBatch", "ImageRecord", "Kind", "check_size"]

Kind = Literal["path", "pil", "numpy", "torch"]


@dataclass
class ImageRecord:
    """One image as models see it, plus what is needed to give results back in its type."""

    rgb: torch.Tensor
    """``1x3xHxW`` float32 in [0, 1] on the CPU: what models consume."""
    alpha: torch.Tensor | None
    """``1x1xHxW`` float32 in [0, 1], or None when the image has no alpha channel."""
    kind: Kind
    name: str
    """File name, or a description such as ``numpy array #2``, for messages."""
    gray: bool = False
    layout: str = "HWC"
    """numpy/path: ``HW`` or ``HWC``; torch: ``HW``, ``CHW`` or ``BCHW``; PIL: ``PIL``."""
    dtype: Any = None
    """numpy dtype (numpy, path) or torch dtype (torch); None for PIL."""
    bit_depth: int = 8
    """8, 16, or 32 for float data."""
    mode: str | None = None
    """PIL mode of the result (PIL inputs only)."""
    path: Path | None = None
    device: torch.device | None = None
    """Device of a torch input; results go back there."""

    @property
    def height(self) -> int:
        return int(self.rgb.shape[-2])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[-1])

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.height, self.width


@dataclass
class ImageBatch(Sequence[ImageRecord]):
    """Records from :func:`~ttasr.io.load_images` and how to regroup results into the input's shape.

    ``groups`` holds ``(start, count)`` per input item: a ``BxCxHxW`` tensor is one item of
    ``B`` records whose results are stacked back into one tensor.
    """

    records: list[ImageRecord]
    groups: list[tuple[int, int]] = field(default_factory=list)
    single: bool = False
    """True when one image (not a list, directory or glob) came in: results are not a list."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """``(name, reason)`` of each input left out by ``load_images(..., skip_bad=True)``, in
    input order, so that a caller (the CLI's summary) can say which files were not processed."""

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def __getitem__(self, index: Any) -> Any:
        return self.records[index]

    @property
    def tensors(self) -> list[torch.Tensor]:
        """The ``1x3xHxW`` model inputs."""
        return [r.rgb for r in self.records]

    def assemble(self, outputs: Sequence[Any]) -> Any:
        """Regroup per-record results (from :func:`~ttasr.io.to_output`) into the input's structure."""
        if len(outputs) != len(self.records):
            raise ValueError(f"expected {len(self.records)} results, got {len(outputs)}")
        items: list[Any] = []
        for start, count in self.groups:
            first = self.records[start]
            if first.kind == "torch" and first.layout == "BCHW":
                items.append(torch.cat(list(outputs[start:start + count]), 0))
            else:
                items.append(outputs[start])
        return items[0] if self.single else items


def check_size(record: ImageRecord | torch.Tensor, minimum: int, what: str, *, name: str | None = None) -> None:
    """Fail when the image's shorter side is below ``minimum`` pixels.

    ``what`` says what needs the size (``"AdaSSR with scale 4 and patch 48"``); the message
    names the image and suggests a smaller scale or patch, or upscaling the image first.
    """
    if isinstance(record, ImageRecord):
        h, w, label = record.height, record.width, name or record.name
    else:
        h, w, label = int(record.shape[-2]), int(record.shape[-1]), name or "image"
    if min(h, w) < minimum:
        raise InputError(
            f"{label} is {h}x{w} pixels, smaller than the {minimum} px that {what} needs: use a "
            "smaller scale or patch size, or upscale the image first"
        )
