"""Name lookups with a "did you mean" error, shared by every registry and choice field."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

from .errors import InputError

__all__ = ["did_you_mean", "lookup", "unknown_name"]

V = TypeVar("V")


def did_you_mean(key: str, names: Iterable[str], n: int = 3) -> str:
    """``" Did you mean a, b?"`` for the names closest to ``key``, or ``""``."""
    names = list(names)
    close = [m for m in names if key and (m.startswith(key) or key in m) and m != key]
    close += [m for m in difflib.get_close_matches(key, names, n=n) if m not in close]
    close = close[:n]
    return f" Did you mean {', '.join(close)}?" if close else ""


def unknown_name(what: str, key: str, names: Iterable[str]) -> InputError:
    """The error for an unknown ``key`` among ``names``: the closest names and all of them."""
    names = sorted(set(names))
    return InputError(f"unknown {what} {key!r}.{did_you_mean(key, names)} Available: {', '.join(names)}")


def lookup(table: Mapping[str, V], key: str, what: str) -> V:
    """``table[key]``, or :func:`unknown_name`'s error."""
    try:
        return table[key]
    except KeyError:
        raise unknown_name(what, key, table) from None
