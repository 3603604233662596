"""The methods ttasr knows, one line each (name, then aliases). Adding a method: a folder
under :mod:`ttasr.methods` and one line here."""

from __future__ import annotations

from typing import Any

from ..adapters.base import Adapter
from ..adapters.registry import AdapterRegistry
from .adassr import AdaSSR
from .hraware import HRAware
from .internal import InternalLearning
from .lway import LWay

__all__ = ["METHODS", "create_adapter", "list_adapters"]

METHODS = AdapterRegistry()
METHODS.add(InternalLearning, "zssr", "internal-learning")
METHODS.add(AdaSSR, "ada-ssr")
METHODS.add(HRAware, "hr-aware")
METHODS.add(LWay)


def create_adapter(name: str, model: Any, **overrides: Any) -> Adapter:
    """Build the adapter called ``name`` for ``model``; ``overrides`` set config fields."""
    return METHODS.create(name, model, **overrides)


def list_adapters() -> list[str]:
    """Names accepted by :func:`create_adapter` (primary names, no aliases)."""
    return METHODS.names()
