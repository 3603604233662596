"""`AdapterConfig`: the fields every adapter understands, with the same meaning everywhere."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from ..errors import InputError

__all__ = ["AdapterConfig", "config_with", "config_to_json"]

C = TypeVar("C", bound="AdapterConfig")


@dataclass(frozen=True)
class AdapterConfig:
    """Shared adaptation settings. Subclasses change defaults and add fields.

    Defaults here follow AdaSSR's implementation details (Sec. IV-A) unless noted.
    """

    max_steps: int = 1500
    """Optimiser steps at most (AdaSSR T_step = 1,500)."""
    lr: float = 1e-4
    """Adam learning rate (AdaSSR: 1e-4)."""
    batch_size: int = 4
    """Pairs per step (AdaSSR: 4)."""
    patch_size: int = 48
    """Side of the model-input patch in LR↓ pixels; targets are ``patch_size * scale``.
    Not given in the paper; 48 is the usual LR patch for ×4 SR training."""
    ema_decay: float | None = 0.999
    """EMA decay α of the weights (AdaSSR eq. 16: 0.999); ``None`` trains without EMA and
    returns the raw weights."""
    proximal_weight: float = 0.0
    """μ of the proximal term μ‖Θ − Θ₀‖² to the starting weights (AdaSSR eq. 15)."""
    eval_every: int = 100
    """Steps between evaluations (early stopping, best-weight tracking, callbacks)."""
    seed: int = 0
    """Seed of every random choice (crops, augmentations, noise)."""
    device: str | None = None
    """``"cuda"``, ``"cpu"``, ...; ``None`` picks CUDA when available."""
    mode: Literal["multi", "single"] = "multi"
    """``"multi"``: one adaptation over all images (one camera); ``"single"``: each image
    adapted on its own from the starting weights."""
    checkpoint_every: int = 0
    """Save a resumable training state every this many steps (0: never)."""
    checkpoint_dir: str | None = None
    """Where resumable states go; default ``$TTASR_HOME/runs/<method>``."""
    progress: bool = True
    """Show tqdm progress bars."""

    def replace(self: C, **overrides: Any) -> C:
        return config_with(self, **overrides)


def config_with(config: C, **overrides: Any) -> C:
    """``dataclasses.replace`` with a "did you mean" error for unknown field names."""
    names = {f.name for f in dataclasses.fields(config)}
    for key in overrides:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise InputError(
                f"{type(config).__name__} has no option '{key}'.{hint} "
                f"Options: {', '.join(sorted(names))}"
            )
    new = dataclasses.replace(config, **overrides)
    _validate(new)
    return new


def _validate(c: AdapterConfig) -> None:
    if c.max_steps < 0:
        raise InputError(f"max_steps must be >= 0, got {c.max_steps}")
    if c.lr < 0:
        raise InputError(f"lr must be >= 0, got {c.lr}")
    if c.batch_size < 1 or c.patch_size < 4:
        raise InputError(f"batch_size must be >= 1 and patch_size >= 4, got {c.batch_size}, {c.patch_size}")
    if c.ema_decay is not None and not 0.0 <= c.ema_decay < 1.0:
        raise InputError(f"ema_decay must be in [0, 1) or None, got {c.ema_decay}")
    if c.eval_every < 1:
        raise InputError(f"eval_every must be >= 1, got {c.eval_every}")
    if c.mode not in ("multi", "single"):
        raise InputError(f"mode must be 'multi' or 'single', got {c.mode!r}")


def config_to_json(config: AdapterConfig) -> str:
    def default(o: Any) -> Any:
        return repr(o)

    return json.dumps(dataclasses.asdict(config), default=default, sort_keys=True)
