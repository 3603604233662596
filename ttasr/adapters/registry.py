"""`create_adapter` / `list_adapters`: adapters by name, with an explicit registry."""

from __future__ import annotations

import difflib
from typing import Any

from ..errors import InputError
from .base import Adapter

__all__ = ["ADAPTERS", "register_adapter", "create_adapter", "list_adapters"]

ADAPTERS: dict[str, type[Adapter]] = {}


def register_adapter(cls: type[Adapter], *aliases: str) -> type[Adapter]:
    for key in (cls.name, *aliases):
        ADAPTERS[key.lower()] = cls
    return cls


def list_adapters() -> list[str]:
    """Names accepted by :func:`create_adapter` (primary names, no aliases)."""
    return sorted({cls.name for cls in ADAPTERS.values()})


def create_adapter(name: str, model: Any, **overrides: Any) -> Adapter:
    """Build the adapter called ``name`` for ``model``; ``overrides`` set config fields."""
    key = name.lower().replace("_", "-")
    cls = ADAPTERS.get(key)
    if cls is None:
        close = difflib.get_close_matches(key, ADAPTERS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown adapter '{name}'.{hint} Available: {', '.join(list_adapters())}")
    return cls(model, **overrides)
