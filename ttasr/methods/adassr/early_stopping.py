"""AdaSSR's NIQE early-stopping rule (Sec. IV-A-1)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["niqe_plateau"]


def niqe_plateau(scores: Sequence[float], min_delta: float = 0.05, patience: int = 3) -> bool:
    """True when the score decreased by less than ``min_delta`` ``patience`` times in a row.

    AdaSSR evaluates NIQE every 100 steps and "if the decrease in the metric is less than
    0.05 for three consecutive times, we terminate the training". An increase counts as
    a decrease below ``min_delta``.
    """
    run = 0
    for prev, cur in zip(scores, scores[1:]):
        run = run + 1 if prev - cur < min_delta else 0
    return run >= patience
