"""The metrics ttasr knows, one line each. Adding a metric: a :class:`~ttasr.metrics.Metric`
subclass and one line here, or :func:`register_metric` from a plugin. The table
(:data:`METRICS`), :func:`~ttasr.metrics.evaluate` and :func:`~ttasr.metrics.fetch` all read
this list; nothing registers itself on import."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import TypeVar

from .._lookup import lookup
from .base import Metric, MetricInfo
from .fidelity import PSNRY, SSIMY
from .niqe import NIQE
from .perceptual import BRISQUE, LPIPS, NRQM, PI

__all__ = ["METRICS", "MetricRegistry", "get_metric", "list_metrics", "register_metric", "unregister_metric"]


M = TypeVar("M", bound="type[Metric]")


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


class MetricRegistry(Mapping[str, MetricInfo]):
    """Metric classes by name, in the order added. As a mapping it is the table: name ->
    :class:`MetricInfo`, read from the classes whenever asked (so it never goes stale)."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Metric]] = {}

    def add(self, cls: M) -> M:
        """Register ``cls`` under ``cls.name``; returns ``cls`` (usable as a decorator)."""
        if not (isinstance(cls, type) and issubclass(cls, Metric)) or inspect.isabstract(cls):
            raise TypeError(f"{cls!r} is not a concrete subclass of ttasr.metrics.Metric")
        missing = [a for a in ("name", "higher_is_better", "needs_reference") if not hasattr(cls, a)]
        if missing or not cls.name:
            raise TypeError(f"{cls.__name__} must set the class attributes {', '.join(missing or ['name'])}")
        key = _key(cls.name)
        if key != cls.name:
            raise ValueError(f"metric name {cls.name!r} must be lower case with '_', e.g. {key!r}")
        if key in self._classes and self._classes[key] is not cls:
            raise ValueError(f"metric name {key!r} is taken by {self._classes[key].__name__}")
        self._classes[key] = cls
        return cls

    def remove(self, cls: type[Metric]) -> None:
        """Unregister ``cls`` (for tests and plugins); a class not registered is ignored."""
        if self._classes.get(cls.name) is cls:
            del self._classes[cls.name]

    def lookup(self, name: str) -> type[Metric]:
        """The class registered as ``name`` (``-`` and case ignored), or an error with the closest names."""
        return lookup(self._classes, _key(name), "metric")

    def names(self) -> list[str]:
        """Metric names, in table order."""
        return list(self._classes)

    def classes(self) -> list[type[Metric]]:
        """Metric classes, in table order."""
        return list(self._classes.values())

    def file_arguments(self) -> list[str]:
        """Every key ``evaluate(paths=...)`` accepts, sorted."""
        return sorted({f.argument for cls in self._classes.values() for f in cls.files})

    def __getitem__(self, name: str) -> MetricInfo:
        return MetricInfo.of(self._classes[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"MetricRegistry({', '.join(self._classes)})"


METRICS = MetricRegistry()
METRICS.add(PSNRY)
METRICS.add(SSIMY)
METRICS.add(LPIPS)
METRICS.add(NIQE)
METRICS.add(BRISQUE)
METRICS.add(NRQM)
METRICS.add(PI)


def list_metrics() -> list[str]:
    """Names accepted by :func:`~ttasr.metrics.evaluate` and :func:`~ttasr.metrics.fetch`, in table order."""
    return METRICS.names()


def get_metric(name: str) -> type[Metric]:
    """The metric class called ``name``; unknown names get a "did you mean" error."""
    return METRICS.lookup(name)


def register_metric(cls: M) -> M:
    """Add a plugin metric to :data:`METRICS` (and so to ``evaluate``/``fetch``); returns ``cls``."""
    return METRICS.add(cls)


def unregister_metric(cls: type[Metric]) -> None:
    """Remove a metric added with :func:`register_metric`."""
    METRICS.remove(cls)
