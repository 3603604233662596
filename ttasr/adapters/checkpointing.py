"""Atomic, resumable training states for long adaptations."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from .._fs import cache_dir
from ..models.download import atomic_write_path

__all__ = ["run_id", "state_path", "save_state", "load_state"]

log = logging.getLogger(__name__)


def run_id(*parts: str) -> str:
    """A short stable id for one adaptation run (method, config, base model, images)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def state_path(directory: str | None, method: str, rid: str, suffix: str = "state") -> Path:
    root = Path(directory) if directory else cache_dir(f"runs/{method}")
    return root / f"{rid}.{suffix}.pt"


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` through a temporary file and ``os.replace``.

    A crash mid-write leaves the previous state intact.
    """
    tmp = atomic_write_path(path)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    log.debug("saved training state %s", path)


def load_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
