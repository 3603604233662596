"""Atomic, resumable training states: tensors in safetensors, everything else in JSON.

A state file is one ``.safetensors`` file: the tensors (weights, optimizer moments, RNG
states) under flat keys, and a JSON document in its metadata (step, history, scores, the
optimizer's hyper-parameters, the tensor layout). Loading never unpickles, so a planted or
corrupt file cannot run code: it is refused with :class:`~ttasr.errors.CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from .._fs import atomic_write, cache_dir
from ..errors import CheckpointError

__all__ = ["run_id", "state_path", "save_state", "load_state", "remove_state", "STATE_SUFFIX"]

log = logging.getLogger(__name__)

STATE_SUFFIX = ".state.safetensors"
_FORMAT = "ttasr-training-state-1"


def run_id(*parts: str) -> str:
    """A short stable id for one adaptation run (method, config, base model, images)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def state_path(directory: str | Path | None, method: str, rid: str) -> Path:
    root = Path(directory) if directory else cache_dir(f"runs/{method}")
    return root / f"{rid}{STATE_SUFFIX}"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by ``{"__tensor__": key}``."""
    if isinstance(obj, torch.Tensor):
        key = prefix.strip("/")
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, (str, int)):
                raise TypeError(f"training-state keys must be str or int, got {type(k).__name__}")
        # int keys (optimizer state) are tagged so that they come back as ints
        return {"__dict__": [[k, _flatten(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a training state")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts/lists of tensors and JSON values) atomically.

    A crash mid-write leaves the previous state intact.
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    doc = _flatten(state, "", tensors)
    # temporary files of this state left by a killed process (SIGKILL skips the cleanup)
    for stale in path.parent.glob(f".{path.name}.*.part") if path.parent.is_dir() else ():
        stale.unlink(missing_ok=True)
    with atomic_write(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": _FORMAT, "state": json.dumps(doc)})
        # Test hook (tests/test_faults.py): sleep between writing the temporary file and the
        # rename, so that a test can kill the process in the middle of a state write.
        if delay := os.environ.get("TTASR_TEST_STATE_WRITE_DELAY"):
            time.sleep(float(delay))
    log.debug("saved training state %s", path)


def load_state(path: Path) -> dict[str, Any] | None:
    """The state at ``path``, ``None`` if there is none; never executes code from the file."""
    from safetensors import safe_open

    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no items()
        if meta.get("format") != _FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {_FORMAT!r}")
        return _unflatten(json.loads(meta["state"]), tensors)  # type: ignore[no-any-return]
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a state we wrote"
        raise CheckpointError(
            f"{path} is not a ttasr training state ({type(exc).__name__}: {exc}). It was not loaded; "
            "delete it to start over, or resume=False"
        ) from exc


def remove_state(path: Path) -> None:
    """Remove a state and any temporary files of it."""
    for p in [path, *path.parent.glob(f".{path.name}.*.part")] if path.parent.is_dir() else [path]:
        if p.exists():
            p.unlink()
            log.debug("removed %s", p)
