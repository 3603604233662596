"""Loaders for benchmark datasets on disk: RealSR v3, DRealSR, paired folders, LR-only folders.

Each loader scans a folder and returns a :class:`~ttasr.bench.records.BenchDataset` whose
items point at files; pixels are decoded only when an item is loaded. Every file the layout
cannot explain, every pair whose sizes disagree and every unreadable header becomes a
:class:`~ttasr.bench.records.Problem` on the dataset, and the scan goes on.

Pairs must satisfy ``HR size == LR size x scale``, as every full-reference metric needs.
An HR whose sides are not multiples of the scale (LR = HR // scale) is a problem unless
``mod_crop=True``, which keeps the top-left ``LR x scale`` of the HR, as BasicSR-style
evaluation does. An LR of the HR's own size (RealSR v1/v2) is a problem: it would need a
model without upsampling, which ttasr's models are not.
"""

from __future__ import annotations

import re
from pathlib import Path

from .._lookup import unknown_name
from ..errors import InputError
from ..io import MAX_PIXELS
from ._scan import child, image_files, log_problems, pair_items, probe_size
from .records import BenchDataset, BenchItem, Problem

__all__ = [
    "DEFAULT_PAIR_KEY",
    "REALSR_CAMERAS",
    "load_drealsr",
    "load_lr_only",
    "load_paired",
    "load_realsr",
]

REALSR_CAMERAS: tuple[str, ...] = ("Canon", "Nikon")
"""The two cameras of RealSR (Canon 5D3 and Nikon D810), one folder each."""

DEFAULT_PAIR_KEY = r"^(?P<key>.+?)(?:[_.-](?:hr|gt|lr|lq)\d*)?(?:[_.-]?x\d+)?$"
"""How :func:`load_paired` names a pair: the file stem without a role suffix (``_HR``,
``_GT``, ``_LR4``, ``_LQ``) and a scale suffix (``x4``, ``_x4``), case-insensitive, so that
``Canon_001_HR`` / ``Canon_001_LR4``, ``0801`` / ``0801x4`` and ``DSC_1454_x1`` /
``DSC_1454_x4`` pair up. The same key is taken on both sides, so an unusual name that loses
a few letters to the pattern still pairs with its counterpart."""

_SPLITS = ("train", "test")
_REALSR_NAME = re.compile(r"^(?P<key>.+)_(?:(?P<hr>HR)|LR(?P<scale>\d+))$", re.IGNORECASE)
_DREALSR_NAME = re.compile(r"^(?P<key>.+?)(?:_x\d+)?$", re.IGNORECASE)
_DREALSR_SCALE_FOLDER = re.compile(r"^(?P<split>[a-z]+)_x(?P<scale>\d+)$", re.IGNORECASE)


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise InputError(f"scale must be a positive integer, got {scale!r}")
    return scale


def _check_split(split: str) -> str:
    if split.lower() not in _SPLITS:
        raise unknown_name("split", split, _SPLITS)
    return split


def _folder(path: str | Path, what: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise InputError(f"{what} folder '{folder}' does not exist or is not a folder: check the path")
    return folder


# ---------------------------------------------------------------------------- RealSR
def load_realsr(
    root: str | Path,
    scale: int = 4,
    *,
    cameras: tuple[str, ...] | str = REALSR_CAMERAS,
    split: str = "Test",
    mod_crop: bool = False,
    max_pixels: int | None = MAX_PIXELS,
) -> BenchDataset:
    """RealSR version 3 (Cai et al., ICCV 2019): ``root/<Camera>/<Split>/<scale>/`` pairs.

    Layout of the v3 release (github.com/csjcai/RealSR): one folder per camera (``Canon``,
    ``Nikon``), split (``Train``, ``Test``) and scale (``2``, ``3``, ``4``), each holding
    ``<Camera>_<NNN>_HR.png`` and ``<Camera>_<NNN>_LR<scale>.png``. The release's README
    says of v3 "HR and LR have different resolution": the LR is the HR downscaled by the
    scale, and papers feed it to the model as is and score the result against the HR.
    Versions 1 and 2 ship an LR upsampled to the HR's size; such pairs are reported as size
    problems. ``root`` may also be the folder that holds the unpacked ``RealSR(V3)`` folder.

    Names are case-insensitive for folders (``Test`` or ``test``). Items are named
    ``Canon_001`` etc. and carry ``info = {"camera", "split"}``.
    """
    scale = _check_scale(scale)
    if isinstance(cameras, str):
        cameras = tuple(c.strip() for c in cameras.split(",") if c.strip())
    if not cameras:
        raise InputError(f"RealSR needs at least one camera: {', '.join(REALSR_CAMERAS)}")
    for camera in cameras:
        if camera.lower() not in {c.lower() for c in REALSR_CAMERAS}:
            raise unknown_name("RealSR camera", camera, REALSR_CAMERAS)
    split = _check_split(split)
    base = _realsr_root(_folder(root, "RealSR"), cameras)
    name = "realsr" + (f"-{cameras[0].lower()}" if len(cameras) == 1 else "")
    name += "" if split.lower() == "test" else f"-{split.lower()}"
    problems: list[Problem] = []
    items: list[BenchItem] = []
    found = 0
    for camera in cameras:
        folder = _walk(base, (camera, split, str(scale)))
        if folder is None:
            problems.append(Problem(
                base / camera / split / str(scale),
                f"folder missing: RealSR v3 keeps the {camera} {split.lower()} pairs at x{scale} here",
                "layout",
            ))
            continue
        found += 1
        hr_files, lr_files = _realsr_files(folder, scale, problems)
        items += pair_items(
            hr_files, lr_files, scale=scale, dataset=name, mod_crop=mod_crop, max_pixels=max_pixels,
            problems=problems, info={"camera": folder.parent.parent.name, "split": folder.parent.name},
        )
    if not found:
        raise InputError(
            f"'{base}' does not look like RealSR v3: no {' or '.join(f'{c}/{split}/{scale}' for c in cameras)} "
            "folder in it. Pass the folder that holds Canon/ and Nikon/"
        )
    log_problems(name, problems)
    return BenchDataset(name, scale, items, problems, root=base)


def _realsr_root(root: Path, cameras: tuple[str, ...]) -> Path:
    """``root``, or its only subfolder that holds the camera folders (the unpacked archive's)."""
    if any(child(root, c) for c in cameras):
        return root
    inner = [p for p in sorted(root.iterdir()) if p.is_dir() and any(child(p, c) for c in cameras)]
    return inner[0] if len(inner) == 1 else root


def _walk(base: Path, parts: tuple[str, ...]) -> Path | None:
    folder: Path | None = base
    for part in parts:
        folder = child(folder, part) if folder is not None else None
    return folder


def _realsr_files(folder: Path, scale: int, problems: list[Problem]) -> tuple[dict[str, Path], dict[str, Path]]:
    hr: dict[str, Path] = {}
    lr: dict[str, Path] = {}
    for path in image_files(folder):
        match = _REALSR_NAME.match(path.stem)
        if match is None:
            problems.append(Problem(path, "name is not <Camera>_<NNN>_HR or <Camera>_<NNN>_LR<scale>", "name"))
            continue
        if match["scale"] is not None and int(match["scale"]) != scale:
            problems.append(Problem(path, f"an LR for x{match['scale']} in the x{scale} folder", "name"))
            continue
        _claim(hr if match["hr"] else lr, match["key"], path, problems)
    return hr, lr


def _claim(side: dict[str, Path], key: str, path: Path, problems: list[Problem]) -> None:
    """Give ``key`` to ``path`` unless another file of the same side has it already."""
    if key in side:
        problems.append(Problem(path, f"pairs as '{key}' like {side[key].name}; rename one of them", "name"))
    else:
        side[key] = path


# ---------------------------------------------------------------------------- DRealSR
def load_drealsr(
    root: str | Path,
    scale: int = 4,
    *,
    split: str = "test",
    mod_crop: bool = False,
    max_pixels: int | None = MAX_PIXELS,
) -> BenchDataset:
    """DRealSR (Wei et al., ECCV 2020): ``root/Test_x<scale>/test_HR`` and ``.../test_LR``.

    Layout of the release (github.com/xiezw5/Component-Divide-and-Conquer-for-Real-World-
    Image-Super-Resolution): one folder per scale, ``Test_x2``, ``Test_x3``, ``Test_x4``,
    each with ``test_HR/`` and ``test_LR/`` (the CDC code reads ``<split>_HR`` and
    ``<split>_LR`` in a pair folder); the README counts 93 test pairs (x4). Files carry a
    focal-length suffix, ``<scene>_x1.png`` and ``<scene>_x4.png``; which side gets which
    suffix differs between the copies in circulation, so the role comes from the folder
    and the suffix is only stripped to pair the scene names (``DSC_1454``).

    ``root`` is the DRealSR folder or one ``Test_x<scale>`` folder in it.
    """
    scale = _check_scale(scale)
    split = _check_split(split)
    base = _folder(root, "DRealSR")
    folder = _drealsr_folder(base, scale, split)
    hr_dir, lr_dir = child(folder, f"{split}_HR"), child(folder, f"{split}_LR")
    assert hr_dir is not None and lr_dir is not None  # _drealsr_folder checked both
    name = "drealsr" + ("" if split.lower() == "test" else f"-{split.lower()}")
    problems: list[Problem] = []
    sides = [_keyed(d, _DREALSR_NAME, problems) for d in (hr_dir, lr_dir)]
    items = pair_items(
        sides[0], sides[1], scale=scale, dataset=name, mod_crop=mod_crop, max_pixels=max_pixels,
        problems=problems,
    )
    log_problems(name, problems)
    return BenchDataset(name, scale, items, problems, root=folder)


def _drealsr_folder(base: Path, scale: int, split: str) -> Path:
    def has_pair(folder: Path) -> bool:
        return child(folder, f"{split}_HR") is not None and child(folder, f"{split}_LR") is not None

    if has_pair(base):
        named = _DREALSR_SCALE_FOLDER.match(base.name)
        if named and int(named["scale"]) != scale:
            raise InputError(
                f"'{base}' holds DRealSR x{named['scale']} pairs but scale {scale} was asked for: "
                f"pass the Test_x{scale} folder or scale={named['scale']}"
            )
        return base
    folder = child(base, f"{split}_x{scale}")
    if folder is None or not has_pair(folder):
        raise InputError(
            f"'{base}' does not look like DRealSR: expected {split.capitalize()}_x{scale}/{split}_HR and "
            f"{split.capitalize()}_x{scale}/{split}_LR in it (or {split}_HR and {split}_LR directly)"
        )
    return folder


def _keyed(folder: Path, pattern: re.Pattern[str], problems: list[Problem]) -> dict[str, Path]:
    """The images of ``folder`` by pairing key: ``pattern``'s ``key`` group (else group 1, else the match)."""
    out: dict[str, Path] = {}
    for path in image_files(folder):
        match = pattern.search(path.stem)
        key = _key_of(match)
        if key is None:
            problems.append(Problem(path, f"name does not match the pairing pattern {pattern.pattern!r}", "name"))
            continue
        _claim(out, key, path, problems)
    return out


def _key_of(match: re.Match[str] | None) -> str | None:
    if match is None:
        return None
    if "key" in match.re.groupindex:
        key = match["key"]
    elif match.re.groups:
        key = match[1]
    else:
        key = match[0]
    return key or None


# ---------------------------------------------------------------------------- folders
def load_paired(
    hr_dir: str | Path,
    lr_dir: str | Path | None = None,
    scale: int = 4,
    *,
    key: str | re.Pattern[str] = DEFAULT_PAIR_KEY,
    name: str | None = None,
    mod_crop: bool = False,
    max_pixels: int | None = MAX_PIXELS,
) -> BenchDataset:
    """Pairs from two folders, matched by the part of the file stem that ``key`` extracts.

    With ``lr_dir=None``, ``hr_dir`` is a root holding ``HR/`` (or ``GT/``) and ``LR/`` (or
    ``LQ/``); an LR folder with no images but an ``X<scale>`` subfolder (DIV2K's
    ``LR_bicubic/X4``) is entered. ``key`` is a regular expression searched in each stem
    (case-insensitive when given as text); its ``key`` group, else its first group, else the
    whole match, names the pair (default :data:`DEFAULT_PAIR_KEY`).
    """
    scale = _check_scale(scale)
    hr_folder, lr_folder = _paired_folders(Path(hr_dir).expanduser(), lr_dir, scale)
    pattern = re.compile(key, re.IGNORECASE) if isinstance(key, str) else key
    label = name or (hr_folder.parent.name if lr_dir is None else hr_folder.name) or "paired"
    problems: list[Problem] = []
    sides = [_keyed(d, pattern, problems) for d in (hr_folder, lr_folder)]
    items = pair_items(
        sides[0], sides[1], scale=scale, dataset=label, mod_crop=mod_crop, max_pixels=max_pixels,
        problems=problems,
    )
    log_problems(label, problems)
    return BenchDataset(label, scale, items, problems, root=hr_folder.parent if lr_dir is None else hr_folder)


def _paired_folders(hr_dir: Path, lr_dir: str | Path | None, scale: int) -> tuple[Path, Path]:
    if lr_dir is not None:
        return _folder(hr_dir, "HR"), _folder(lr_dir, "LR")
    root = _folder(hr_dir, "dataset")
    hr = next((f for f in (child(root, "HR"), child(root, "GT")) if f is not None), None)
    lr = next((f for f in (child(root, "LR"), child(root, "LQ")) if f is not None), None)
    if hr is None or lr is None:
        raise InputError(
            f"'{root}' has no {'HR/ (or GT/)' if hr is None else 'LR/ (or LQ/)'} folder: pass the HR and "
            "LR folders separately (paired:/path/to/hr,/path/to/lr)"
        )
    inner = child(lr, f"x{scale}")
    if inner is not None and not image_files(lr):
        lr = inner
    return hr, lr


def load_lr_only(
    path: str | Path,
    scale: int = 4,
    *,
    name: str | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> BenchDataset:
    """LR images without references (a folder, or one file): no-reference metrics only.

    Items are named by file stem; two files with the same stem (``a.png``, ``a.jpg``) are a
    name problem for the second.
    """
    scale = _check_scale(scale)
    source = Path(path).expanduser()
    if source.is_file():
        files, root = [source], source.parent
    else:
        root = _folder(source, "LR")
        files = image_files(root)
        if not files:
            raise InputError(f"'{root}' holds no image files: check the path")
    label = name or root.name or "lr"
    problems: list[Problem] = []
    items: list[BenchItem] = []
    taken: dict[str, Path] = {}
    for file in files:
        if file.stem in taken:
            problems.append(Problem(file, f"same name as {taken[file.stem].name}; rename one of them", "name"))
            continue
        try:
            size = probe_size(file, max_pixels)
        except InputError as exc:
            problems.append(Problem(file, str(exc), "unreadable"))
            continue
        taken[file.stem] = file
        items.append(BenchItem(name=file.stem, lr=file, hr=None, scale=scale, dataset=label, lr_size=size))
    log_problems(label, problems)
    return BenchDataset(label, scale, items, problems, root=root)
