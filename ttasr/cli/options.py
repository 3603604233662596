"""Command-line flags generated from a config class: one flag per field, nested configs as
``--augment-config.usm-p``, with the field's help and default. Used by ``ttasr adapt``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from .._config import config_fields, field_choices, field_help
from .._lookup import did_you_mean
from ..errors import InputError

__all__ = ["add_config_flags", "overrides_from"]

_SKIP = ("device",)  # has its own flag shared with `ttasr enhance`
_PREFIX = "cfg__"


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parse_list(text: str) -> Any:
    """``0.5,1.0`` or a JSON list such as ``[[0, 1], [1, 0]]``."""
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not a JSON list: {exc}") from exc
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


_NULL = object()
"""An explicit ``none`` on the command line (``None`` means "flag not given")."""


def _parse_none(conv: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return _NULL if text.lower() in ("none", "null") else conv(text)

    parse.__name__ = getattr(conv, "__name__", "value")
    return parse


def _path_or_list(text: str) -> Any:
    """A file path, or an inline JSON list (e.g. a kernel)."""
    return _parse_list(text) if text.strip().startswith("[") else text


class _NumberOrWord:
    """A number, or one of ``words`` (e.g. ``--blend 0.5`` or ``--blend auto``)."""

    def __init__(self, number: type, words: tuple[str, ...]) -> None:
        self.number, self.words = number, words
        self.__name__ = number.__name__

    def __call__(self, text: str) -> Any:
        if text in self.words:
            return text
        try:
            return self.number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or one of {', '.join(self.words)}, "
                                             f"got {text!r}") from None


def _converter(tp: Any) -> Callable[[str], Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        numbers = [a for a in args if a in (int, float)]
        literals = [a for a in args if typing.get_origin(a) is typing.Literal]
        inner: Callable[[str], Any]
        if numbers and literals and len(numbers) + len(literals) == len(args):  # e.g. 0.5 or "auto"
            inner = _NumberOrWord(numbers[0], tuple(str(w) for a in literals for w in typing.get_args(a)))
        else:
            inner = _path_or_list if len(args) > 1 and str in args else _converter(args[0])
        return _parse_none(inner) if len(args) < len(typing.get_args(tp)) else inner
    if origin is typing.Literal or tp is str:
        return str
    if tp is bool:
        return _parse_bool
    if tp in (int, float):
        return tp  # type: ignore[no-any-return]
    if origin is tuple:
        return _parse_list
    raise TypeError(f"no command-line form for {tp}")


def _flat_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, str, Any, tuple[str, ...] | None]]:
    """``(dotted name, type, help, default, choices)`` of every leaf field."""
    out = []
    for f, tp in config_fields(cls):
        if f.name in _SKIP and not prefix:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out += _flat_fields(tp, f"{prefix}{f.name}.")
            continue
        out.append((prefix + f.name, tp, field_help(cls, f.name), default, field_choices(cls, f.name)))
    return out


def add_config_flags(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """One flag per field of ``cls``; values stay ``None`` unless given."""
    group = parser.add_argument_group(title)
    for name, tp, text, default, choices in _flat_fields(cls):
        conv = _converter(tp)
        shown = json.dumps(default) if isinstance(default, (tuple, list)) else default
        if isinstance(conv, _NumberOrWord):
            choices = None  # the converter checks the words
        group.add_argument(
            "--" + name.replace("_", "-"), dest=_PREFIX + name.replace(".", "__"), type=conv, default=None,
            choices=choices, metavar="BOOL" if conv is _parse_bool else name.split(".")[-1].upper(),
            help=f"{text} (default: {shown})".replace("%", "%%"),
        )


def _nest(flat: dict[str, Any], cls: type, base: Any = None) -> dict[str, Any]:
    """``{"augment_config.usm_p": 0.1}`` -> ``{"augment_config": AugmentConfig(..., usm_p=0.1)}``."""
    out: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        head, dot, rest = key.partition(".")
        if dot:
            nested.setdefault(head, {})[rest] = value
        else:
            out[key] = value
    hints = dict((f.name, tp) for f, tp in config_fields(cls))
    for head, values in nested.items():
        if head not in hints:
            raise InputError(f"{cls.__name__} has no option {head!r}")
        current = getattr(base, head) if base is not None else hints[head]()
        out[head] = current.replace(**values)
    return out


def overrides_from(args: argparse.Namespace, cls: type, base: Any, set_items: list[str] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """The config overrides given as flags and as ``--set KEY=VALUE`` items (``KEY`` may be
    dotted, e.g. ``augment_config.usm_p``), converted like the flags."""
    flat = {k[len(_PREFIX):].replace("__", "."): v for k, v in vars(args).items()
            if k.startswith(_PREFIX) and v is not None}
    types_by_name = {name: tp for name, tp, *_ in _flat_fields(cls)}
    for item in set_items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in types_by_name:
            raise argparse.ArgumentTypeError(f"--set: {cls.__name__} has no option {key!r}."
                                             f"{did_you_mean(key, types_by_name)}")
        flat[key] = _converter(types_by_name[key])(value)
    flat = {k: None if v is _NULL else v for k, v in flat.items()}
    return _nest(flat, cls, base)
