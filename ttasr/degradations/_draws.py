"""Scalar random draws from a ``torch.Generator``, made on the generator's own device.

The random degradations record every parameter they draw, so each draw is read back to
the host as a Python number (on a GPU generator that is a synchronisation per draw: a few
dozen per image, small next to the JPEG round trips that run on the CPU anyway).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError

Range = tuple[float, float]


def _unit(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator, device=generator.device, dtype=torch.float64))


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    """One draw from ``U[low, high)``."""
    return low + (high - low) * _unit(generator)


def bernoulli(generator: torch.Generator, p: float) -> bool:
    """True with probability ``p``; always consumes one draw, so streams stay aligned."""
    return _unit(generator) < p


def integer(generator: torch.Generator, low: int, high: int) -> int:
    """One integer uniform on ``{low, ..., high}`` (both ends included)."""
    return int(torch.randint(low, high + 1, (), generator=generator, device=generator.device))


def choice(generator: torch.Generator, probs: Sequence[float]) -> int:
    """An index drawn with the (not necessarily normalised) weights ``probs``."""
    total = float(sum(probs))
    u = _unit(generator) * total
    acc = 0.0
    for i, p in enumerate(probs):
        acc += p
        if u < acc:
            return i
    return max(i for i, p in enumerate(probs) if p > 0)  # u rounded up to the total


def check_range(name: str, value: Range, low: float | None = None, high: float | None = None) -> None:
    """Raise :class:`InputError` unless ``value`` is ``(lo, hi)`` with ``low <= lo <= hi <= high``."""
    lo, hi = value
    if not lo <= hi or (low is not None and lo < low) or (high is not None and hi > high):
        bounds = f" within [{low}, {high}]" if low is not None or high is not None else ""
        raise InputError(f"{name} must be a range (low, high) with low <= high{bounds}, got {value}")


def check_probs(name: str, probs: Sequence[float]) -> None:
    """Raise :class:`InputError` unless ``probs`` are non-negative weights with a positive sum."""
    if any(p < 0 for p in probs) or sum(probs) <= 0:
        raise InputError(f"{name} must be non-negative weights with a positive sum, got {tuple(probs)}")


def check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise InputError(f"{name} must be a probability in [0, 1], got {p}")
