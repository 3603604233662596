"""Offline proxy datasets: HR photos + a named, seeded camera degradation = pairs with known truth.

Real paired datasets (RealSR, DRealSR) must be downloaded by hand. A proxy set needs only
photos: each HR image is centre-cropped and degraded with a preset of
:mod:`ttasr.degradations.camera` (the presets of the AdaSSR proxy benchmark,
``benchmarks/adassr_proxy.py``), which a bicubic-trained model has never seen. The true
kernel and the drawn parameters are kept on each item (``info["kernel"]``,
``info["params"]``), so oracle rows can be run.

As in that benchmark, one preset and seed stand for one camera: by default every image is
degraded with the same seed, hence the same blur kernel and noise levels.
``per_image_seed=True`` gives the ``i``-th photo of the source the seed ``seed + i`` instead,
a different camera draw per image (``i`` counts unusable photos too, so that a photo's seed
does not depend on whether another one could be read). Either way the set depends only on
the photos, the preset, the scale, the crop and the seed.

Building costs one decode and one degradation per photo; with ``cache`` the pairs are
written as PNG files (8-bit, so lossless for these 8-bit images) and the next build with the
same inputs reads the manifest instead. Files land atomically and the manifest is written
last, so an interrupted build is simply redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .._fs import atomic_write_bytes, cache_dir
from .._lookup import unknown_name
from .._version import __version__
from ..degradations.camera import PRESETS, CameraPreset, degrade
from ..errors import InputError
from ..io import MAX_PIXELS, load_images, save_image
from ._scan import image_files, log_problems, probe_size
from .records import BenchDataset, BenchItem, Problem

__all__ = ["DEFAULT_PHOTOS", "WALLPAPERS", "ProxySource", "build_proxy", "wallpaper_photos"]

log = logging.getLogger(__name__)

DEFAULT_PHOTOS: tuple[str, ...] = (
    "BytheWater", "ColdRipple", "ColorfulCups", "EveningGlow", "FallenLeaf", "Kite", "OneStandsOut", "Path",
)
"""Photographs among Debian's plasma-workspace-wallpapers (GPL-2+), as in the AdaSSR proxy benchmark."""

WALLPAPERS = Path("/usr/share/wallpapers")

ProxySource = str | Path | Sequence[str | Path] | Mapping[str, str | Path]
"""A folder of HR images, one image file, a list of files, or ``{name: file}``."""

_FORMAT = 1
"""Version of the cache layout; part of the cache key."""


def wallpaper_photos(names: Sequence[str] = DEFAULT_PHOTOS, root: str | Path = WALLPAPERS) -> dict[str, Path]:
    """``{name: file}``: the largest image of each wallpaper ``root/<name>/contents/images/*``.

    Wallpapers that are not installed are left out; if none is, the error says how to
    install them (``apt-get install plasma-workspace-wallpapers``).
    """
    base = Path(root).expanduser()
    found: dict[str, Path] = {}
    for name in names:
        folder = base / name / "contents" / "images"
        files = image_files(folder) if folder.is_dir() else []
        sized = []
        for file in files:
            try:
                h, w = probe_size(file, None)
            except InputError:
                continue
            sized.append((h * w, file))
        if sized:  # the sizes are mostly links to one file: name the file itself
            found[name] = max(sized, key=lambda pair: pair[0])[1].resolve()
    if not found:
        raise InputError(
            f"none of the wallpapers {', '.join(names)} is installed in '{base}': install them with "
            "'apt-get install plasma-workspace-wallpapers', or pass a folder of HR photos"
        )
    return found


def build_proxy(
    preset: str | CameraPreset,
    source: ProxySource | None = None,
    *,
    scale: int = 4,
    crop: int | None = 512,
    seed: int = 0,
    per_image_seed: bool = False,
    limit: int | None = None,
    cache: bool | str | Path = True,
    name: str | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> BenchDataset:
    """HR/LR pairs made by degrading the HR photos of ``source`` with a camera ``preset``.

    ``source`` is a folder of HR images, a file, a list of files or ``{name: file}``
    (default: :func:`wallpaper_photos`). Each photo is centre-cropped to ``crop x crop``
    (the benchmark's crop; ``None`` keeps the whole photo, cut to a multiple of ``scale``);
    photos smaller than ``crop`` are problems. ``limit`` keeps the first usable photos only.
    The HR is the 8-bit crop; the LR is ``HR / scale`` in each side.

    ``cache``: True stores the pairs under ``$TTASR_HOME/bench/proxy``, a path stores them
    there, False keeps them in memory only. The dataset is the same either way.
    """
    spec = _preset(preset)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}")
    if crop is not None and (crop < scale or crop % scale):
        raise InputError(
            f"crop {crop} must be a positive multiple of the scale {scale}: "
            f"use {max(scale, crop - crop % scale)} or {crop - crop % scale + scale}"
        )
    if limit is not None and limit < 1:
        raise InputError(f"limit must be >= 1, got {limit}")
    sources = _sources(source)
    label = name or f"proxy-{spec.name}"
    settings = {"preset": asdict(spec), "scale": scale, "crop": crop, "seed": seed,
                "per_image_seed": per_image_seed, "limit": limit}
    folder = None
    if cache is not False:
        root = cache_dir("bench/proxy") if cache is True else Path(cache).expanduser()
        folder = root / f"{spec.name}-x{scale}-{_cache_key(settings, sources)}"
        cached = _read_cache(folder, label, scale)
        if cached is not None:
            log.info("%s: read from the cache %s", label, folder)
            return cached
    problems: list[Problem] = []
    items: list[BenchItem] = []
    for index, (photo, path) in enumerate(sources.items()):
        if limit is not None and len(items) == limit:
            break
        hr = _hr_crop(path, crop, scale, max_pixels, problems)
        if hr is None:
            continue
        image_seed = seed + index if per_image_seed else seed
        degraded = degrade(hr, scale, spec, image_seed)
        info = {"preset": spec.name, "seed": image_seed, "params": degraded.params,
                "kernel": degraded.kernel, "source": str(path)}
        items.append(BenchItem(
            name=photo, lr=degraded.lr, hr=hr, scale=scale, dataset=label,
            lr_size=(int(degraded.lr.shape[-2]), int(degraded.lr.shape[-1])),
            hr_size=(int(hr.shape[-2]), int(hr.shape[-1])), info=info,
        ))
    if not items:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise InputError(f"no photo could be used for the proxy set {label}:\n{listing}")
    log_problems(label, problems)
    dataset = BenchDataset(label, scale, items, problems, root=folder)
    if folder is not None:
        dataset = _write_cache(folder, dataset)
    return dataset


def _preset(preset: str | CameraPreset) -> CameraPreset:
    if isinstance(preset, CameraPreset):
        return preset
    key = str(preset).lower().replace("_", "-")
    if key not in PRESETS:
        raise unknown_name("camera preset", str(preset), PRESETS)
    return PRESETS[key]


def _sources(source: ProxySource | None) -> dict[str, Path]:
    """``{name: file}`` in a fixed order; names are file stems, made unique where they clash."""
    if source is None:
        return wallpaper_photos()
    if isinstance(source, Mapping):
        return {str(k): Path(v).expanduser() for k, v in source.items()}
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if path.is_dir():
            files = image_files(path)
            if not files:
                raise InputError(f"'{path}' holds no image files to build a proxy set from: check the path")
        elif path.is_file():
            files = [path]
        else:
            raise InputError(f"HR source '{path}' does not exist: pass a folder of photos or an image file")
    else:
        files = [Path(p).expanduser() for p in source]
        if not files:
            raise InputError("no HR photos given for the proxy set")
    named: dict[str, Path] = {}
    for file in files:
        stem, n = file.stem, 2
        while stem in named:
            stem, n = f"{file.stem}-{n}", n + 1
        named[stem] = file
    return named


def _hr_crop(path: Path, crop: int | None, scale: int, max_pixels: int | None,
             problems: list[Problem]) -> torch.Tensor | None:
    """The centre crop of ``path`` as an 8-bit ``1x3xHxW`` tensor, or None after a problem."""
    try:
        h, w = probe_size(path, max_pixels)
    except InputError as exc:
        problems.append(Problem(path, str(exc), "unreadable"))
        return None
    if crop is not None and min(h, w) < crop:
        problems.append(Problem(path, f"{h}x{w} is smaller than the crop {crop}x{crop}", "size"))
        return None
    if crop is None and min(h, w) < scale:
        problems.append(Problem(path, f"{h}x{w} is smaller than the scale {scale}", "size"))
        return None
    try:
        rgb = load_images(path, max_pixels=max_pixels).records[0].rgb
    except InputError as exc:
        problems.append(Problem(path, str(exc), "unreadable"))
        return None
    if crop is None:
        rgb = rgb[..., : h - h % scale, : w - w % scale]
    else:
        top, left = (h - crop) // 2, (w - crop) // 2
        rgb = rgb[..., top:top + crop, left:left + crop]
    # 16-bit photos are rounded to 8 bits: the LR is 8-bit too, and the cache stores PNG8.
    return ((rgb * 255.0).round() / 255.0).contiguous()


def _cache_key(settings: Mapping[str, Any], sources: Mapping[str, Path]) -> str:
    """A digest of everything the pairs depend on, photos identified by path, size and mtime."""
    photos = []
    for photo, path in sources.items():
        try:
            st = path.stat()
            photos.append([photo, str(path.resolve()), st.st_size, st.st_mtime_ns])
        except OSError:
            photos.append([photo, str(path), None, None])
    blob = json.dumps({"format": _FORMAT, "ttasr": __version__, "settings": settings, "photos": photos},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _write_cache(folder: Path, dataset: BenchDataset) -> BenchDataset:
    """Write the pairs and then the manifest; return the dataset read back from the files."""
    entries = []
    for item in dataset.items:
        hr_rel, lr_rel = f"HR/{item.name}.png", f"LR/{item.name}.png"
        save_image(item.load_hr(), folder / hr_rel)
        save_image(item.load_lr(), folder / lr_rel)
        info = dict(item.info)
        kernel = info.pop("kernel")
        entries.append({"name": item.name, "hr": hr_rel, "lr": lr_rel, "lr_size": list(item.lr_size),
                        "info": info, "kernel": None if kernel is None else kernel.tolist(),
                        "kernel_dtype": None if kernel is None else str(kernel.dtype).removeprefix("torch.")})
    manifest = {"format": _FORMAT, "items": entries,
                "problems": [{"path": str(p.path), "reason": p.reason, "kind": p.kind} for p in dataset.problems]}
    atomic_write_bytes(folder / "manifest.json", json.dumps(manifest, indent=1).encode())
    cached = _read_cache(folder, dataset.name, dataset.scale)
    assert cached is not None  # just written
    return cached


def _read_cache(folder: Path, label: str, scale: int) -> BenchDataset | None:
    """The cached dataset, or None when absent, of another format, or missing a file."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != _FORMAT:
        return None
    items = []
    for entry in manifest["items"]:
        hr, lr = folder / entry["hr"], folder / entry["lr"]
        if not (hr.is_file() and lr.is_file()):
            log.info("%s: cache %s lacks %s; building again", label, folder, entry["name"])
            return None
        lh, lw = entry["lr_size"]
        kernel = entry["kernel"]
        if kernel is not None:
            kernel = torch.tensor(kernel, dtype=getattr(torch, entry["kernel_dtype"]))
        info = dict(entry["info"], kernel=kernel)
        items.append(BenchItem(name=entry["name"], lr=lr, hr=hr, scale=scale, dataset=label,
                               lr_size=(lh, lw), hr_size=(lh * scale, lw * scale), info=info))
    problems = [Problem(Path(p["path"]), p["reason"], p["kind"]) for p in manifest["problems"]]
    return BenchDataset(label, scale, items, problems, root=folder)
