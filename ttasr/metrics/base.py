"""`Metric`, the small base class of every image-quality metric, and `MetricInfo`, its row in
the table :data:`ttasr.metrics.METRICS`.

A metric is a pure function (``psnr_y``, ``niqe``, ...) plus a thin class that fixes its
options (torchmetrics style). The class says what the metric is (``name``,
``higher_is_better``, ``needs_reference``, ``files``, ``description``), scores a batch
(:meth:`Metric.per_image`), is built by :func:`ttasr.metrics.evaluate`
(:meth:`Metric.create`) and makes its files available (:meth:`Metric.fetch`). Adding a metric
is one subclass and one line in :mod:`ttasr.metrics.registry`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from ..errors import InputError
from .files import MetricFile, resolve_metric_file

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Metric", "MetricInfo"]


class Metric(ABC):
    """An image-quality metric with fixed options; scores BCHW batches in [0, 1].

    Subclasses set the class attributes and implement :meth:`per_image`. For
    :meth:`create`'s default, the constructor takes ``crop_border=`` and, for each of
    :attr:`files`, a keyword named by its ``argument`` (``niqe_params=``, ...); a metric
    whose constructor differs overrides :meth:`create`.
    """

    name: ClassVar[str]
    """Key in :data:`~ttasr.metrics.METRICS` and in ``evaluate(metrics=...)``."""
    higher_is_better: ClassVar[bool]
    needs_reference: ClassVar[bool]
    """Full-reference (scores ``sr`` against ``hr``) or no-reference (``sr`` alone)."""
    files: ClassVar[tuple[MetricFile, ...]] = ()
    """Parameter/weight files it needs; each ``argument`` is a key of ``evaluate(paths=...)``."""
    description: ClassVar[str] = ""
    """One line for the table: what exactly is computed."""

    @abstractmethod
    def per_image(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        """Score of each image of ``sr`` (against ``hr`` when full-reference), shape ``(B,)``."""

    def __call__(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> float:
        """Mean score over the batch."""
        return float(self.per_image(sr, hr).mean())

    def _reference(self, hr: torch.Tensor | None) -> torch.Tensor:
        """``hr``, or the error a full-reference metric gives without it."""
        if hr is None:
            raise InputError(f"{self.name} is a full-reference metric: pass hr=")
        return hr

    @classmethod
    def create(cls, crop_border: int = 0, paths: Mapping[str, str | os.PathLike[str]] | None = None) -> Self:
        """The metric as :func:`~ttasr.metrics.evaluate` uses it: ``crop_border`` removed from
        every edge, files from ``paths`` (by :attr:`MetricFile.argument`; absent ones are
        looked up in the caches)."""
        paths = paths or {}
        given = {f.argument: paths[f.argument] for f in cls.files if f.argument in paths}
        build: Callable[..., Self] = cls
        return build(crop_border=crop_border, **given)

    @classmethod
    def fetch(cls, quiet: bool = False) -> Path:
        """Make the metric's files available locally; return the path of the first.

        This default only looks in the caches (:func:`~ttasr.metrics.files.resolve_metric_file`);
        metrics whose files can be downloaded override it.
        """
        if not cls.files:
            raise InputError(f"{cls.name} needs no parameter file; nothing to fetch")
        found = [resolve_metric_file(spec) for spec in cls.files]
        return found[0]


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is and needs: one row of :data:`~ttasr.metrics.METRICS`."""

    name: str
    higher_is_better: bool
    needs_reference: bool
    """Full-reference (needs the HR image) or no-reference."""
    files: tuple[str, ...]
    """Keyword arguments of :func:`evaluate`'s ``paths`` that take its parameter/weight files."""
    description: str

    @classmethod
    def of(cls, metric: type[Metric]) -> MetricInfo:
        """The row of ``metric``, read from its class attributes."""
        return cls(metric.name, metric.higher_is_better, metric.needs_reference,
                   tuple(f.argument for f in metric.files), metric.description)
