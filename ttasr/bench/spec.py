"""``load_dataset("kind:argument")``: one string names a benchmark dataset, for the CLI and configs.

=================================  ====================================================
spec                               dataset
=================================  ====================================================
``realsr:/data/RealSR(V3)``        RealSR v3 test pairs, Canon and Nikon
``drealsr:/data/DRealSR``          DRealSR test pairs (``Test_x<scale>``)
``paired:/data/set``               pairs from ``/data/set/HR`` and ``/data/set/LR``
``paired:/data/hr,/data/lr``       pairs from two folders
``lr:/data/photos``                LR images only (no-reference metrics)
``proxy:camera``                   the wallpaper photos degraded by preset ``camera``
``proxy:camera:/data/hr``          HR photos from ``/data/hr`` degraded by ``camera``
=================================  ====================================================

Loader options (``cameras``, ``split``, ``mod_crop``, ``crop``, ``seed``, ...) are passed as
keywords; text values (from a command line) are converted to the option's type.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._lookup import unknown_name
from ..degradations.camera import list_presets
from ..errors import InputError
from .datasets import load_drealsr, load_lr_only, load_paired, load_realsr
from .proxy import build_proxy
from .records import BenchDataset

__all__ = ["DATASET_KINDS", "list_dataset_kinds", "load_dataset", "parse_spec"]

DATASET_KINDS: dict[str, str] = {
    "realsr": "realsr:/path - RealSR v3 (root holding Canon/ and Nikon/)",
    "drealsr": "drealsr:/path - DRealSR (root holding Test_x4/, or that folder)",
    "paired": "paired:/root or paired:/hr,/lr - HR/LR folders matched by file name",
    "lr": "lr:/path - LR images without references",
    "proxy": f"proxy:<preset>[:/hr_dir] - photos degraded by a camera preset ({', '.join(list_presets())})",
}
"""Every kind ``load_dataset`` knows, with the form of its spec."""

_LOADERS: dict[str, Callable[..., BenchDataset]] = {
    "realsr": load_realsr,
    "drealsr": load_drealsr,
    "paired": load_paired,
    "lr": load_lr_only,
    "proxy": build_proxy,
}

_FILLED = {"root", "path", "hr_dir", "lr_dir", "preset", "source", "scale"}
"""Parameters the spec itself fills; the rest are options."""


def list_dataset_kinds() -> list[str]:
    return list(DATASET_KINDS)


def parse_spec(spec: str) -> tuple[str, str]:
    """``(kind, argument)`` of ``"kind:argument"``, the kind checked against :data:`DATASET_KINDS`."""
    kind, sep, argument = str(spec).partition(":")
    kind = kind.strip().lower()
    if not sep:
        raise InputError(
            f"dataset spec {spec!r} has no kind: write <kind>:<argument>, e.g. realsr:/data/RealSR or "
            f"lr:/data/photos. Kinds:\n" + "\n".join(f"  {form}" for form in DATASET_KINDS.values())
        )
    if kind not in DATASET_KINDS:
        raise unknown_name("dataset kind", kind, DATASET_KINDS)
    argument = argument.strip()
    if not argument:
        raise InputError(f"dataset spec {spec!r} lacks its argument: {DATASET_KINDS[kind]}")
    return kind, argument


def load_dataset(spec: str, *, scale: int = 4, **options: Any) -> BenchDataset:
    """The dataset a spec names (see the module docstring), scanned at ``scale``.

    ``options`` go to the loader (:func:`~ttasr.bench.load_realsr`, ...); an option that
    loader does not take is an error that lists those it does.
    """
    kind, argument = parse_spec(spec)
    loader = _LOADERS[kind]
    kwargs = _options(kind, loader, options)
    if kind == "paired":
        hr, comma, lr = argument.partition(",")
        return loader(hr.strip(), lr.strip() if comma else None, scale, **kwargs)
    if kind == "proxy":
        preset, colon, source = argument.partition(":")
        return loader(preset.strip(), source.strip() if colon and source.strip() else None, scale=scale, **kwargs)
    return loader(argument, scale, **kwargs)


def _options(kind: str, loader: Callable[..., BenchDataset], options: dict[str, Any]) -> dict[str, Any]:
    params = {name: p for name, p in inspect.signature(loader).parameters.items() if name not in _FILLED}
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key not in params:
            raise unknown_name(f"option for {kind} datasets", key, params)
        out[key] = _coerce(key, value, params[key]) if isinstance(value, str) else value
    return out


def _coerce(key: str, text: str, param: inspect.Parameter) -> Any:
    """A command-line value in the option's type, read from its default and annotation."""
    default, annotation = param.default, str(param.annotation)  # annotations are strings here
    lowered = text.strip().lower()
    if lowered == "none" and (default is None or "None" in annotation):
        return None
    if isinstance(default, bool):
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        if "Path" in annotation:  # cache: true, false or a folder
            return text
        raise InputError(f"option {key}={text!r}: use true or false")
    if isinstance(default, int) or annotation.startswith("int"):
        try:
            return int(lowered)
        except ValueError:
            raise InputError(f"option {key}={text!r}: use a whole number") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return text
