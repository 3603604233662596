"""Exceptions raised by ttasr. Each message names the input at fault and the fix."""

from __future__ import annotations

__all__ = ["TTASRError", "InputError", "ModelError", "CheckpointError", "MissingDependencyError"]


class TTASRError(Exception):
    """Base class of every error ttasr raises on purpose."""


class InputError(TTASRError, ValueError):
    """An image or argument cannot be used: unreadable, wrong channels, too small, NaN."""


class ModelError(TTASRError, ValueError):
    """A checkpoint is not a super-resolution model ttasr can use."""


class CheckpointError(TTASRError, RuntimeError):
    """A named checkpoint cannot be found, downloaded, verified or converted."""


class MissingDependencyError(TTASRError, ImportError):
    """An optional package is needed for this feature."""


def require(module: str, extra: str, feature: str):
    """Import an optional dependency, or fail with the pip command that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the Python package '{module}', which is not installed. "
            f"Install it with: pip install 'ttasr[{extra}]'"
        ) from exc
