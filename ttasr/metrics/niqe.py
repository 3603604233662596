"""NIQE (Mittal, Soundararajan and Bovik, IEEE SPL 2013) with the original MATLAB parameters.

The score is ttasr's own float64 implementation of the MATLAB release (``niqe_release.zip``:
``computequality(im, 96, 96, 0, 0, mu_prisparam, cov_prisparam)``), in :mod:`.nss` and
:mod:`.matlab_ops`, with the *original* pristine model ``mu_prisparam``/``cov_prisparam``.
Lower is better. The image is scored as MATLAB scores the saved 8-bit file: RGB rounded to
8 bits, ``rgb2gray`` (``color_space="yiq"``) or the ``rgb2ycbcr`` luma (``"ycbcr"``, PIRM's
choice) rounded to 8 bits, then ``crop_border`` pixels removed from each edge.

On pyiqa's calibration images it gives 15.7460, 3.6549, 3.2343, 3.2020, 8.6655 where MATLAB
gives 15.7536, 3.6549, 3.2355, 3.1840, 8.6352 (pyiqa's port: 15.6532, 3.6549, 3.2342, 3.1922,
9.0727). The whole remaining gap is rounding noise in flat image areas, whose sign MATLAB's
filter decides differently from any other; see :mod:`.nss` for the cause and the proof.

The parameter file ``niqe_modelparameters.mat`` is resolved as described in
:mod:`ttasr.metrics.files`. :func:`fetch_niqe_params` obtains the original values without a
model hub: they ship, as ``basicsr/metrics/niqe_pris_params.npz``, inside the source
distribution of ``basicsr`` 1.4.2 on PyPI (Apache-2.0), which pip can always download.
Re-keyed, they reproduce MATLAB's NIQE of 3.65492152353770 on pyiqa's calibration image I04
(to 1e-12).
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, require
from .base import Metric
from .files import (
    MetricFile,
    MetricUnavailableError,
    check_sdist,
    pip_download_sdist,
    resolve_metric_file,
)
from .matlab_ops import rgb2gray, rgb2ycbcr_luma, to_uint8_levels
from .nss import niqe_quality

__all__ = [
    "NIQE",
    "NIQE_FILE",
    "NIQE_MIN_SIZE",
    "fetch_niqe_params",
    "load_niqe_params",
    "niqe",
    "niqe_batch",
    "niqe_gray_levels",
    "niqe_params_path",
]

log = logging.getLogger(__name__)

NIQE_FILE = MetricFile(
    metric="niqe",
    filename="niqe_modelparameters.mat",
    upstream_subdir="pyiqa",
    argument="niqe_params",
    fetch_hint="ttasr metrics fetch niqe",
)

#: Smallest image side (after ``crop_border``) accepted. NIQE fits a 36-D Gaussian to the
#: features of 96x96 blocks; below 4x4 blocks the covariance rests on too few samples
#: and the score is meaningless (the paper and MATLAB release use large photographs).
NIQE_MIN_SIZE = 384

_BLOCK = 96
_BASICSR_REQ = "basicsr==1.4.2"
_BASICSR_SDIST = "basicsr-1.4.2.tar.gz"
_BASICSR_SHA256 = "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87"
_NPZ_MEMBER = "basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz"
_N_FEATURES = 36


# --------------------------------------------------------------------------- parameters


def load_niqe_params(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, cov)`` of the pristine model from a ``.mat`` file, shapes ``(36,)`` and ``(36, 36)``."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(str(path))
        mu = np.ravel(mat["mu_prisparam"]).astype(np.float64)
        cov = np.asarray(mat["cov_prisparam"], dtype=np.float64)
    except (OSError, ValueError, KeyError) as exc:
        raise MetricUnavailableError(
            f"{path} is not a NIQE parameter file (a .mat with 'mu_prisparam' and 'cov_prisparam'): "
            f"{type(exc).__name__}: {exc}. Delete it and run `ttasr metrics fetch niqe`."
        ) from exc
    if mu.shape != (_N_FEATURES,) or cov.shape != (_N_FEATURES, _N_FEATURES):
        raise MetricUnavailableError(
            f"{path} holds NIQE parameters of shapes {mu.shape} and {cov.shape}, expected "
            f"({_N_FEATURES},) and ({_N_FEATURES}, {_N_FEATURES}). Delete it and run `ttasr metrics fetch niqe`."
        )
    return mu, cov


def _pip_download_basicsr(dest: Path, quiet: bool) -> Path:
    """Download basicsr's sdist with pip (nothing installed or run); returns the .tar.gz path."""
    return pip_download_sdist(_BASICSR_REQ, "basicsr", _BASICSR_SDIST, dest, quiet, hint=(
        f"Download {_BASICSR_SDIST} by hand (https://pypi.org/project/basicsr/1.4.2/#files) and pass "
        "it: fetch_niqe_params(sdist='path/to/basicsr-1.4.2.tar.gz'); or place "
        f"'{NIQE_FILE.filename}' in the metrics cache yourself."))


def _params_from_sdist(sdist: Path) -> tuple[np.ndarray, np.ndarray]:
    check_sdist(sdist, _BASICSR_SHA256, _BASICSR_SDIST, "NIQE parameters")
    with tarfile.open(sdist, "r:gz") as tar:
        member = tar.extractfile(_NPZ_MEMBER)
        if member is None:  # pragma: no cover - the pinned sdist has it
            raise MetricUnavailableError(f"{sdist} has no {_NPZ_MEMBER}")
        data = np.load(io.BytesIO(member.read()))
        mu = np.asarray(data["mu_pris_param"], dtype=np.float64).reshape(1, _N_FEATURES)
        cov = np.asarray(data["cov_pris_param"], dtype=np.float64).reshape(_N_FEATURES, _N_FEATURES)
    return mu, cov


def fetch_niqe_params(
    dest_dir: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    *,
    sdist: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the original NIQE pristine parameters as ``niqe_modelparameters.mat``; return its path.

    The values are read, without installing anything, from ``niqe_pris_params.npz`` inside
    PyPI's ``basicsr-1.4.2.tar.gz`` (sha256-checked), downloaded with ``python -m pip download``,
    or from ``sdist`` when given. They are stored under the keys pyiqa and MATLAB use,
    ``mu_prisparam`` (1x36) and ``cov_prisparam`` (36x36), atomically, in ``dest_dir``
    (default ``$TTASR_HOME/metrics``). Idempotent: an existing valid file is returned at once.
    """
    import scipy.io

    from .._fs import atomic_write, cache_dir

    folder = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir("metrics")
    dest = folder / NIQE_FILE.filename
    if dest.is_file():
        try:
            load_niqe_params(dest)
            return dest
        except MetricUnavailableError:
            log.warning("replacing invalid NIQE parameter file %s", dest)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ttasr-niqe-") as tmp:
        tarball = Path(sdist).expanduser() if sdist is not None else _pip_download_basicsr(Path(tmp), quiet)
        mu, cov = _params_from_sdist(tarball)
    with atomic_write(dest) as part:
        with open(part, "wb") as f:
            scipy.io.savemat(f, {"mu_prisparam": mu, "cov_prisparam": cov})
        load_niqe_params(part)
    log.info("wrote NIQE pristine parameters (from %s) to %s", _BASICSR_SDIST, dest)
    return dest


def _pyiqa_download() -> str:
    require("pyiqa", "metrics", "NIQE")
    from pyiqa.archs.niqe_arch import default_model_urls
    from pyiqa.utils.download_util import load_file_from_url

    return load_file_from_url(default_model_urls["url"])


def niqe_params_path(niqe_params: str | os.PathLike[str] | None = None, *, allow_download: bool = True) -> Path:
    """The NIQE parameter file: explicit path, ttasr cache, pyiqa cache, then pyiqa's download."""
    return resolve_metric_file(NIQE_FILE, niqe_params, allow_download=allow_download, download=_pyiqa_download)


# --------------------------------------------------------------------------- metric


def _check_image(image: torch.Tensor, crop_border: int, min_size: int, metric: str) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"{metric} expects a (B, 3, H, W) RGB or (B, 1, H, W) tensor in [0, 1], got {shape}")
    if not image.is_floating_point():
        raise InputError(f"{metric} expects a float tensor in [0, 1], got dtype {image.dtype}")
    lo, hi = float(image.min()), float(image.max())
    if lo < -1e-6 or hi > 1 + 1e-6 or image.isnan().any():
        raise InputError(f"{metric} expects values in [0, 1], got [{lo:.4g}, {hi:.4g}]: clamp the image first")
    h, w = (s - 2 * crop_border for s in image.shape[-2:])
    if min(h, w) < min_size:
        raise InputError(
            f"{metric} needs images of at least {min_size}x{min_size} pixels (after crop_border={crop_border}), "
            f"got {h}x{w}. Its statistics are fitted over many {_BLOCK}x{_BLOCK} blocks; measure it on "
            "larger images (e.g. the full SR output) rather than on crops."
        )


_COLOR_SPACES = ("yiq", "ycbcr")


def _check_color_space(color_space: str) -> None:
    if color_space not in _COLOR_SPACES:
        raise InputError(f"NIQE color_space must be one of {', '.join(_COLOR_SPACES)}, got {color_space!r}")


def niqe_gray_levels(image: torch.Tensor, color_space: str = "yiq", crop_border: int = 0) -> torch.Tensor:
    """The 8-bit gray image MATLAB's NIQE reads, ``(B, H', W')`` float64 levels in [0, 255].

    ``image`` is ``(B, 3, H, W)`` RGB or ``(B, 1, H, W)`` gray in [0, 1]; it is rounded to 8
    bits (as saving it does), converted with ``rgb2gray`` (``"yiq"``) or to the ``rgb2ycbcr``
    luma (``"ycbcr"``), both rounded to 8 bits, and cropped by ``crop_border`` per edge.
    """
    _check_color_space(color_space)
    levels = to_uint8_levels(image.detach().to(torch.float64).clamp(0.0, 1.0) * 255.0)
    if levels.shape[1] == 3:
        gray = rgb2gray(levels) if color_space == "yiq" else rgb2ycbcr_luma(levels)
    else:
        gray = levels[:, 0]
    if c := crop_border:
        gray = gray[..., c:-c, c:-c]
    return gray


class NIQE(Metric):
    """NIQE with the original MATLAB parameters; lower is better.

    ``color_space="yiq"`` (MATLAB ``rgb2gray``, as the release's ``computequality`` and
    pyiqa's ``niqe``) reproduces the published calibration scores; PIRM's perceptual index
    uses ``"ycbcr"`` luma with a 4-pixel border (see :class:`ttasr.metrics.PI`). Scores are
    computed in float64 on the image's device (on the CPU for MPS, which has no float64).
    """

    name = "niqe"
    higher_is_better = False
    needs_reference = False
    files = (NIQE_FILE,)
    description = "NIQE with the original MATLAB pristine model"

    def __init__(
        self,
        niqe_params: str | os.PathLike[str] | None = None,
        *,
        crop_border: int = 0,
        color_space: str = "yiq",
        allow_download: bool = True,
        min_size: int = NIQE_MIN_SIZE,
    ) -> None:
        _check_color_space(color_space)
        if crop_border < 0:
            raise InputError(f"crop_border must be >= 0, got {crop_border}")
        self.params_path = niqe_params_path(niqe_params, allow_download=allow_download)
        mu, cov = load_niqe_params(self.params_path)  # fails now, with a clear message, on a bad file
        self._mu = torch.from_numpy(mu)
        self._cov = torch.from_numpy(cov)
        self.crop_border = crop_border
        self.color_space = color_space
        self.min_size = min_size

    def per_image(self, image: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of each image of a BCHW batch in [0, 1], shape ``(B,)`` (float64, CPU).

        ``hr`` is ignored (no-reference metric)."""
        _check_image(image, self.crop_border, self.min_size, "NIQE")
        if image.device.type == "mps":
            image = image.cpu()
        with torch.no_grad():
            gray = niqe_gray_levels(image, self.color_space, self.crop_border)
            score = niqe_quality(gray, self._mu.to(gray.device), self._cov.to(gray.device))
        return score.to("cpu", torch.float64)

    @classmethod
    def create(cls, crop_border: int = 0, paths: Mapping[str, str | os.PathLike[str]] | None = None) -> NIQE:
        """As :meth:`Metric.create`, sharing one built metric per file and options (as :func:`niqe`)."""
        return _shared((paths or {}).get(NIQE_FILE.argument), crop_border, "yiq", NIQE_MIN_SIZE)

    @classmethod
    def fetch(cls, quiet: bool = False) -> Path:
        """The original parameters, from PyPI's basicsr sdist (:func:`fetch_niqe_params`)."""
        return fetch_niqe_params(quiet=quiet)


_DEFAULT: dict[tuple[str, int, str, int], NIQE] = {}


def _shared(params: str | os.PathLike[str] | None, crop_border: int, color_space: str, min_size: int) -> NIQE:
    path = str(niqe_params_path(params))
    key = (path, crop_border, color_space, min_size)
    if key not in _DEFAULT:
        _DEFAULT[key] = NIQE(path, crop_border=crop_border, color_space=color_space, min_size=min_size)
    return _DEFAULT[key]


def niqe_batch(image: torch.Tensor, params: str | os.PathLike[str] | None = None, *,
               crop_border: int = 0, color_space: str = "yiq", min_size: int = NIQE_MIN_SIZE) -> torch.Tensor:
    """Per-image NIQE of a BCHW batch in [0, 1], shape ``(B,)``."""
    return _shared(params, crop_border, color_space, min_size).per_image(image)


def niqe(image: torch.Tensor, params: str | os.PathLike[str] | None = None, *,
         crop_border: int = 0, color_space: str = "yiq", min_size: int = NIQE_MIN_SIZE) -> float:
    """NIQE of a BCHW image (batch mean) in [0, 1] with the original MATLAB parameters.

    ``params`` is the path of ``niqe_modelparameters.mat``; by default it is looked up as
    described in :mod:`ttasr.metrics.files` (run ``ttasr metrics fetch niqe`` once offline).
    Raises :class:`MetricUnavailableError` when the file cannot be found and
    :class:`ttasr.InputError` for images under :data:`NIQE_MIN_SIZE` pixels a side.
    """
    return float(niqe_batch(image, params, crop_border=crop_border, color_space=color_space,
                            min_size=min_size).mean())

