"""Plain-data configs: frozen dataclasses of numbers, strings, paths and names, validated
on every construction.

A field is declared with :func:`option`, which keeps its help text, range and choices in
``field(metadata=...)``. :class:`PlainConfig.__post_init__` checks every field's type,
range and choice (with "did you mean" for typos), so ``AdaSSRConfig(max_steps=-1)``,
``lr=float("nan")``, ``flips="no"`` and ``attention="featurs"`` all fail at once with a
message that names the field. The same metadata drives the command line (one flag per
field, help and default shown) and the run id (fields marked ``affects_result=False``
are left out, so a longer budget or another progress setting still resumes).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, Literal, TypeVar

from ._lookup import did_you_mean
from .errors import InputError

__all__ = ["PlainConfig", "option", "config_fields", "field_help", "field_choices"]

C = TypeVar("C", bound="PlainConfig")


def option(
    default: Any = MISSING,
    help: str = "",  # noqa: A002 - the argparse word
    *,
    factory: Any = MISSING,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: Sequence[str] | None = None,
    affects_result: bool = True,
) -> Any:
    """A config field with its help text and constraints.

    ``low``/``high`` bound numbers (closed unless ``*_open``); ``choices`` lists the
    allowed strings when they are not spelled out by a ``Literal`` annotation;
    ``affects_result=False`` keeps the field out of the run id (budgets, logging, paths
    of side outputs).
    """
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "choices": tuple(choices) if choices is not None else None, "affects_result": affects_result}
    if factory is not MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class PlainConfig:
    """Base of every ttasr config: frozen, plain data, validated in ``__post_init__``."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = _check_type(self, f.name, getattr(self, f.name), hints[f.name])
            if value is not getattr(self, f.name):
                object.__setattr__(self, f.name, value)
            _check_constraints(self, f, value)

    def replace(self: C, **overrides: Any) -> C:
        """A copy with ``overrides``; unknown names get a "did you mean" error."""
        return config_with(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, *, result_only: bool = False) -> str:
        """Sorted JSON; ``result_only`` drops fields that do not change the result."""
        data = self.to_dict()
        if result_only:
            data = {k: v for k, v in data.items() if _meta(type(self), k).get("affects_result", True)}
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """The inverse of :meth:`to_dict` (nested configs and tuples rebuilt)."""
        return cls(**_check_names(cls, data))


def config_with(config: C, **overrides: Any) -> C:
    """``dataclasses.replace`` with a "did you mean" error for unknown field names."""
    return dataclasses.replace(config, **_check_names(type(config), overrides))


def _check_names(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in given:
        if key not in names:
            raise InputError(f"{cls.__name__} has no option {key!r}.{did_you_mean(key, names)} "
                             f"Options: {', '.join(sorted(names))}")
    return given


def config_fields(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Any]]:
    """``(field, type hint)`` of every field of a config class."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        yield f, hints[f.name]


def field_help(cls: type, name: str) -> str:
    return str(_meta(cls, name).get("help", ""))


def field_choices(cls: type, name: str) -> tuple[str, ...] | None:
    """The allowed strings of a field, from its ``Literal`` type or its ``choices``."""
    meta = _meta(cls, name)
    if meta.get("choices"):
        return tuple(meta["choices"])
    lits = _literals(_hints(cls)[name])
    return tuple(str(v) for v in lits) if lits else None


# ----------------------------------------------------------------------------- checks
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _meta(cls: type, name: str) -> dict[str, Any]:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return dict(f.metadata)
    return {}


def _literals(tp: Any) -> tuple[Any, ...]:
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(v for a in typing.get_args(tp) for v in _literals(a))
    return ()


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list"
    return "None" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _bad(config: object, name: str, value: Any, expected: str) -> InputError:
    return InputError(f"{type(config).__name__}.{name} must be {expected}, got {value!r} "
                      f"({type(value).__name__})")


def _check_type(config: object, name: str, value: Any, tp: Any) -> Any:
    """``value`` converted where lossless (int -> float, list -> tuple, dict -> config), or
    an :class:`InputError` naming the field, the expected type and what was given."""
    ok, out = _convert(value, tp)
    if not ok:
        lits = _literals(tp)
        only_words = all(typing.get_origin(a) is Literal or a is type(None) for a in typing.get_args(tp)) \
            if typing.get_origin(tp) in (typing.Union, types.UnionType) else True
        if lits and isinstance(value, str) and only_words:
            names = [str(v) for v in lits]
            raise InputError(f"{type(config).__name__}.{name} must be one of {', '.join(map(repr, names))}, "
                             f"got {value!r}.{did_you_mean(value, names)}")
        raise _bad(config, name, value, _describe(tp))
    return out


def _convert(value: Any, tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, out = _convert(value, arg)
            if ok:
                return True, out
        return False, value
    if tp is Any:
        return True, value
    if tp is type(None):
        return value is None, value
    if origin is Literal:
        return value in typing.get_args(tp) and isinstance(value, (str, int)) and not isinstance(value, bool), value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return True, float(value)
    if tp is str:
        return isinstance(value, str), value
    if origin is tuple:
        if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy / torch arrays
            value = value.tolist()
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(tp)
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(items) != len(value):
            return False, value
        outs = []
        for v, a in zip(value, items):
            ok, o = _convert(v, a)
            if not ok:
                return False, value
            outs.append(o)
        return True, tuple(outs)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return True, value
        if isinstance(value, dict) and issubclass(tp, PlainConfig):
            return True, tp.from_dict(value)
        return False, value
    return isinstance(value, tp) if isinstance(tp, type) else True, value


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, tuple):
        return [x for v in value for x in _numbers(v)]
    return []


def _check_constraints(config: object, f: dataclasses.Field[Any], value: Any) -> None:
    meta = f.metadata
    nums = _numbers(value)
    for x in nums:
        if not math.isfinite(x):
            raise _bad(config, f.name, value, "a finite number")
    lo, hi = meta.get("low"), meta.get("high")
    for x in nums:
        if lo is not None and (x < lo or (meta.get("low_open") and x == lo)):
            raise _bad(config, f.name, value, f"{'>' if meta.get('low_open') else '>='} {lo}")
        if hi is not None and (x > hi or (meta.get("high_open") and x == hi)):
            raise _bad(config, f.name, value, f"{'<' if meta.get('high_open') else '<='} {hi}")
    choices = meta.get("choices")
    if choices and isinstance(value, str) and value not in choices:
        raise InputError(f"{type(config).__name__}.{f.name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}.{did_you_mean(value, choices)}")
