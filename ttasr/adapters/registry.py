"""`AdapterRegistry`: adapters by name. The list of methods itself is
:mod:`ttasr.methods.registry`, written out explicitly (no registration on import)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._lookup import lookup

if TYPE_CHECKING:
    from .base import Adapter

__all__ = ["AdapterRegistry"]


def _key(name: str) -> str:
    return name.lower().replace("_", "-")


class AdapterRegistry:
    """Adapter classes by name and alias."""

    def __init__(self) -> None:
        self._by_name: dict[str, type[Adapter]] = {}

    def add(self, cls: type[Adapter], *aliases: str) -> type[Adapter]:
        """Register ``cls`` under ``cls.name`` and ``aliases``; returns ``cls``."""
        for name in (cls.name, *aliases):
            key = _key(name)
            if key in self._by_name and self._by_name[key] is not cls:
                raise ValueError(f"adapter name {key!r} is taken by {self._by_name[key].__name__}")
            self._by_name[key] = cls
        return cls

    def remove(self, cls: type[Adapter]) -> None:
        """Unregister every name of ``cls`` (for tests and plugins)."""
        for key in [k for k, v in self._by_name.items() if v is cls]:
            del self._by_name[key]

    def get(self, name: str) -> type[Adapter]:
        """The class registered as ``name``, or an error with the closest names."""
        return lookup(self._by_name, _key(name), "adapter")

    def names(self) -> list[str]:
        """Primary names (no aliases), sorted."""
        return sorted({cls.name for cls in self._by_name.values()})

    def create(self, name: str, model: Any, **overrides: Any) -> Adapter:
        return self.get(name)(model, **overrides)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._by_name

    def __iter__(self) -> Iterator[type[Adapter]]:
        seen: list[type[Adapter]] = []
        for cls in self._by_name.values():
            if cls not in seen:
                seen.append(cls)
        return iter(seen)
