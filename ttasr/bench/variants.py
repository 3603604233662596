"""Method variants: one adapter under a label of its own, with config overrides, as one row.

A benchmark compares methods, but also one method under several settings (an oracle with
the true kernel, an ablation without augmentation, the paper's preset, ...). A
:class:`Variant` names such a row::

    Variant("oracle", "adassr", {"kernel_estimator": "given", "kernel": TRUE_KERNEL, "mode": "multi"})

``mode="multi"`` in the overrides adapts once over all images of a dataset (one camera),
as the AdaSSR proxy benchmark does; the default is one adaptation per image. The value
:data:`TRUE_KERNEL` stands for the blur kernel the dataset knows for its items (proxy
sets keep it); it is filled in per job, so oracle rows need no kernel file.

On the command line: ``--variant oracle=adassr --set oracle.kernel_estimator=given
--set oracle.kernel=@true-kernel``. A plain method name is the variant of that method
under its own name with no overrides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import InputError
from .jobs import UNADAPTED
from .records import BenchItem

__all__ = ["TRUE_KERNEL", "Variant", "bind_item_values", "parse_variant", "resolve_variants"]

TRUE_KERNEL = "@true-kernel"
"""An override value: the true blur kernel of the job's items (``item.info["kernel"]``)."""



@dataclass(frozen=True)
class Variant:
    """A table row: ``method`` (a registered adapter name) with ``overrides``, shown as ``label``."""

    label: str
    method: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """``"multi"`` (one adaptation per dataset) or ``"single"`` (one per image)."""
        return str(self.overrides.get("mode", "single"))

    def __post_init__(self) -> None:
        if not self.label.strip() or any(c in self.label for c in "|\n"):
            raise InputError(f"variant label {self.label!r}: give a non-empty name without '|' or line breaks")
        if self.mode not in ("single", "multi"):
            raise InputError(f"variant {self.label!r}: mode={self.mode!r}; use 'single' or 'multi'")


def parse_variant(text: str) -> Variant:
    """``"LABEL=METHOD"`` (command line) as a :class:`Variant` without overrides."""
    label, sep, method = text.partition("=")
    if not sep or not label.strip() or not method.strip():
        raise InputError(f"--variant expects LABEL=METHOD (e.g. oracle=adassr), got {text!r}")
    return Variant(label.strip(), method.strip())


def resolve_variants(methods: Sequence[str | Variant],
                     overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Variant]:
    """``{label: Variant}`` in the given order, :data:`UNADAPTED` first.

    Plain names are looked up in the adapter registry (so aliases and case are forgiven)
    and labelled with the registered name. ``overrides`` (``{label: {field: value}}``) are
    merged over each variant's own; a label that is not benchmarked is an error.
    """
    from ..methods.registry import METHODS

    out: dict[str, Variant] = {UNADAPTED: Variant(UNADAPTED, UNADAPTED)}
    for entry in methods:
        if isinstance(entry, Variant):
            variant = Variant(entry.label, METHODS.get(entry.method).name, dict(entry.overrides))
        elif str(entry).strip().lower() == UNADAPTED:
            continue
        else:
            name = METHODS.get(str(entry)).name
            variant = Variant(name, name)
        if variant.label in out and out[variant.label] != variant:
            raise InputError(f"two rows are labelled {variant.label!r}: give each variant its own label")
        out[variant.label] = variant
    for label, extra in (overrides or {}).items():
        if label not in out or label == UNADAPTED:
            raise InputError(f"overrides for {label!r}, which is not benchmarked "
                             f"(rows: {', '.join(out)})")
        old = out[label]
        out[label] = Variant(label, old.method, {**old.overrides, **extra})
    return out


def bind_item_values(overrides: Mapping[str, Any], items: Sequence[BenchItem]) -> dict[str, Any]:
    """``overrides`` with :data:`TRUE_KERNEL` replaced by the kernel the ``items`` share."""
    out = dict(overrides)
    for key, value in overrides.items():
        if not (isinstance(value, str) and value == TRUE_KERNEL):
            continue
        kernels = [item.info.get("kernel") for item in items]
        missing = [item.name for item, k in zip(items, kernels) if k is None]
        if missing:
            raise InputError(f"{key}={TRUE_KERNEL}: item(s) {', '.join(missing[:5])} have no known kernel; only "
                             "proxy datasets (proxy:<preset>) know their true kernel")
        first = torch.as_tensor(kernels[0])
        if any(not torch.equal(torch.as_tensor(k).to(first.dtype), first) for k in kernels[1:]):
            raise InputError(f"{key}={TRUE_KERNEL}: these images were blurred with different kernels, so one "
                             "adaptation over them (mode='multi') has no single true kernel; use mode='single' "
                             "or a proxy set without per_image_seed")
        out[key] = tuple(tuple(row) for row in first.tolist())  # the config's form of a kernel
    return out
