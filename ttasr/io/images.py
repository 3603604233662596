"""Reading, checking and writing images, and converting them to and from model tensors.

Every input becomes an :class:`ImageRecord`: the RGB float32 ``1x3xHxW`` tensor in [0, 1]
that models consume, the alpha channel kept apart (``1x1xHxW``), and how the image came in,
so that :func:`to_output` hands results back in the same type:

========  =====================================  =========================================
input     accepted                               returned by :func:`to_output`
========  =====================================  =========================================
path      PNG, JPEG, BMP, TIFF, WebP, PNM file   numpy array with the file's dtype (uint8 or
                                                 uint16), ``HxW`` gray, ``HxWxC`` otherwise
PIL       modes L, LA, RGB, RGBA, I;16, I, F     PIL image in the same mode (``1`` → L,
          (others converted to RGB/RGBA)         ``P`` → RGB/RGBA, ``I;16B`` → I;16)
numpy     ``HxW`` or ``HxWxC``, uint8, uint16,   numpy array, same dtype and layout
          float32/64 in [0, 1]
torch     ``HxW``, ``CxHxW``, ``BxCxHxW``, float  tensor, same dtype, dims and device
          in [0, 1] or uint8
========  =====================================  =========================================

Channels: 1 = gray, 2 = gray + alpha, 3 = RGB, 4 = RGBA. Gray images are replicated to three
channels for the model and converted back as the mean of the three output channels (the
inverse of replication; a model that keeps gray inputs gray gives equal channels). Alpha is
not shown to the model: :func:`upscale_alpha` resizes it with bicubic interpolation and
clamps it to [0, 1].

16-bit colour PNG/TIFF files are read and written with OpenCV (Pillow reads them as 8-bit);
everything else uses Pillow. Writes are atomic (temporary file + ``os.replace``).
"""

from __future__ import annotations

import glob
import io
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, require

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageBatch",
    "ImageRecord",
    "check_size",
    "load_images",
    "read_image",
    "save_image",
    "to_output",
    "upscale_alpha",
]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm",
)
_SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")
_RANGE_TOLERANCE = 1e-4
"""Float inputs may stray this far outside [0, 1] (rounding) before they count as an error."""

Kind = Literal["path", "pil", "numpy", "torch"]


# ---------------------------------------------------------------------------- records
@dataclass
class ImageRecord:
    """One image as models see it, plus what is needed to give results back in its type."""

    rgb: torch.Tensor
    """``1x3xHxW`` float32 in [0, 1] on the CPU: what models consume."""
    alpha: torch.Tensor | None
    """``1x1xHxW`` float32 in [0, 1], or None when the image has no alpha channel."""
    kind: Kind
    name: str
    """File name, or a description such as ``numpy array #2``, for messages."""
    gray: bool = False
    layout: str = "HWC"
    """numpy/path: ``HW`` or ``HWC``; torch: ``HW``, ``CHW`` or ``BCHW``; PIL: ``PIL``."""
    dtype: Any = None
    """numpy dtype (numpy, path) or torch dtype (torch); None for PIL."""
    bit_depth: int = 8
    """8, 16, or 32 for float data."""
    mode: str | None = None
    """PIL mode of the result (PIL inputs only)."""
    path: Path | None = None
    device: torch.device | None = None
    """Device of a torch input; results go back there."""

    @property
    def height(self) -> int:
        return int(self.rgb.shape[-2])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[-1])

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.height, self.width


@dataclass
class ImageBatch(Sequence[ImageRecord]):
    """Records from :func:`load_images` and how to regroup results into the input's shape.

    ``groups`` holds ``(start, count)`` per input item: a ``BxCxHxW`` tensor is one item of
    ``B`` records whose results are stacked back into one tensor.
    """

    records: list[ImageRecord]
    groups: list[tuple[int, int]] = field(default_factory=list)
    single: bool = False
    """True when one image (not a list, directory or glob) came in: results are not a list."""

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def __getitem__(self, index: Any) -> Any:
        return self.records[index]

    @property
    def tensors(self) -> list[torch.Tensor]:
        """The ``1x3xHxW`` model inputs."""
        return [r.rgb for r in self.records]

    def assemble(self, outputs: Sequence[Any]) -> Any:
        """Regroup per-record results (from :func:`to_output`) into the input's structure."""
        if len(outputs) != len(self.records):
            raise ValueError(f"expected {len(self.records)} results, got {len(outputs)}")
        items: list[Any] = []
        for start, count in self.groups:
            first = self.records[start]
            if first.kind == "torch" and first.layout == "BCHW":
                items.append(torch.cat(list(outputs[start:start + count]), 0))
            else:
                items.append(outputs[start])
        return items[0] if self.single else items


# ---------------------------------------------------------------------------- loading
def load_images(source: Any) -> ImageBatch:
    """Turn ``source`` into an :class:`ImageBatch` of validated records.

    ``source`` is a file path, a directory (its image files, sorted by name, not recursive),
    a glob pattern, a PIL image, a numpy array (``HxW``/``HxWxC``), a torch tensor
    (``HxW``/``CxHxW``/``BxCxHxW``), an :class:`ImageRecord`, or a list of any of these.
    Raises :class:`~ttasr.errors.InputError` naming the image and the fix.
    """
    if isinstance(source, ImageBatch):
        return source
    single = not isinstance(source, (list, tuple))
    items = [source] if single else list(source)
    if not items:
        raise InputError("no images given: pass a path, directory, glob, array, tensor or PIL image")
    records: list[ImageRecord] = []
    groups: list[tuple[int, int]] = []
    for index, item in enumerate(items):
        expanded = _expand(item)
        if _is_collection(item):
            single = False
        for one in expanded:
            new = _records_from(one, index)
            groups.append((len(records), len(new)))
            records.extend(new)
    return ImageBatch(records, groups, single)


def _is_collection(item: Any) -> bool:
    """A directory or glob pattern stands for a list of images, even of one."""
    if not isinstance(item, (str, Path)):
        return False
    path = Path(item).expanduser()
    return path.is_dir() or (not path.exists() and any(ch in str(item) for ch in "*?["))


def _expand(item: Any) -> list[Any]:
    """A directory or glob pattern becomes its sorted image files; anything else itself."""
    if not isinstance(item, (str, Path)):
        return [item]
    text = str(item)
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(
                f"directory '{path}' holds no image files ({', '.join(IMAGE_SUFFIXES)}): "
                "check the path or convert the images"
            )
        return files
    if path.exists():
        return [path]
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)
                       if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"glob pattern '{text}' matches no image files: check the pattern")
        return files
    raise InputError(f"image file '{text}' does not exist: check the path")


def _records_from(item: Any, index: int) -> list[ImageRecord]:
    if isinstance(item, ImageRecord):
        return [item]
    if isinstance(item, Path):
        arr = read_image(item)
        rec = _record_from_array(arr, kind="path", name=item.name)
        rec.path = item
        return [rec]
    if isinstance(item, np.ndarray):
        return [_record_from_array(item, kind="numpy", name=f"numpy array #{index}")]
    if isinstance(item, torch.Tensor):
        return _records_from_tensor(item, name=f"tensor #{index}")
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a core dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(item, Image.Image):
        return [_record_from_pil(item, name=getattr(item, "filename", "") or f"PIL image #{index}")]
    raise InputError(
        f"input #{index} is a {type(item).__name__}: pass a path, directory, glob, PIL image, "
        "numpy array (HxW or HxWxC) or torch tensor (CxHxW or BxCxHxW)"
    )


def _record_from_array(arr: np.ndarray, *, kind: Kind, name: str) -> ImageRecord:
    """Validate an ``HxW`` / ``HxWxC`` array and build its record."""
    if arr.ndim == 2:
        layout, hwc = "HW", arr[:, :, None]
    elif arr.ndim == 3:
        layout, hwc = "HWC", arr
    else:
        raise InputError(f"{name} has shape {arr.shape}: numpy images must be HxW or HxWxC")
    if hwc.dtype.byteorder not in ("=", "|"):  # big-endian data from some TIFF/FITS readers
        hwc = hwc.astype(hwc.dtype.newbyteorder("="))
    channels = hwc.shape[2]
    if channels not in (1, 2, 3, 4):
        hint = (" It looks channels-first (CxHxW): use arr.transpose(1, 2, 0)."
                if arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) else "")
        raise InputError(
            f"{name} has {channels} channels (shape {arr.shape}): ttasr reads numpy images as HxWxC "
            f"with 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels.{hint}"
        )
    values, depth = _to_unit_float(hwc.dtype, hwc, name)
    rgb, alpha, gray = _split_channels(torch.from_numpy(np.ascontiguousarray(values)).permute(2, 0, 1))
    return ImageRecord(rgb=rgb, alpha=alpha, kind=kind, name=name, gray=gray, layout=layout,
                       dtype=hwc.dtype, bit_depth=depth)


def _to_unit_float(dtype: np.dtype, arr: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Scale integer data to [0, 1]; check float data is finite and already in [0, 1]."""
    if dtype == np.uint8:
        return arr.astype(np.float32) / 255.0, 8
    if dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0, 16
    if dtype in (np.float32, np.float64, np.float16):
        values = arr.astype(np.float32)
        return _check_float_range(values, name), 32
    raise InputError(
        f"{name} has dtype {dtype}: use uint8, uint16, or float32/float64 in [0, 1]"
    )


def _check_float_range(values: Any, name: str) -> Any:
    """Fail on NaN/Inf or values outside [0, 1]; clamp rounding noise at the ends."""
    finite = np.isfinite(values).all() if isinstance(values, np.ndarray) else bool(torch.isfinite(values).all())
    if not finite:
        raise InputError(f"{name} contains NaN or Inf values: fix the data that produced it")
    lo, hi = float(values.min()), float(values.max())
    if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        raise InputError(
            f"{name} has float values in [{lo:.4g}, {hi:.4g}], but ttasr expects [0, 1]: for 0-255 "
            "data divide by 255 (or pass uint8), for 16-bit data divide by 65535, for [-1, 1] "
            "data use (x + 1) / 2"
        )
    return values.clip(0, 1) if isinstance(values, np.ndarray) else values.clamp(0, 1)


def _split_channels(chw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
    """``CxHxW`` in [0, 1] → (``1x3xHxW`` RGB, ``1x1xHxW`` alpha or None, gray flag)."""
    c = chw.shape[0]
    gray = c in (1, 2)
    colour = chw[:1].expand(3, -1, -1) if gray else chw[:3]
    alpha = chw[c - 1:c] if c in (2, 4) else None
    rgb = colour.unsqueeze(0).to(torch.float32).contiguous()
    return rgb, (alpha.unsqueeze(0).to(torch.float32).contiguous() if alpha is not None else None), gray


def _records_from_tensor(t: torch.Tensor, *, name: str) -> list[ImageRecord]:
    t = t.detach()
    if t.ndim == 2:
        layout, batch = "HW", t[None, None]
    elif t.ndim == 3:
        layout, batch = "CHW", t[None]
    elif t.ndim == 4:
        layout, batch = "BCHW", t
    else:
        raise InputError(f"{name} has shape {tuple(t.shape)}: tensors must be HxW, CxHxW or BxCxHxW")
    channels = batch.shape[1]
    if channels not in (1, 2, 3, 4):
        hint = (" It looks channels-last (HxWxC): use t.permute(2, 0, 1)."
                if t.ndim == 3 and t.shape[-1] in (1, 2, 3, 4) else "")
        raise InputError(
            f"{name} has {channels} channels (shape {tuple(t.shape)}): tensors are CxHxW with "
            f"1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels.{hint}"
        )
    if batch.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (shape {tuple(t.shape)})")
    cpu = batch.cpu()
    if t.dtype == torch.uint8:
        values, depth = cpu.float() / 255.0, 8
    elif t.is_floating_point():
        values, depth = _check_float_range(cpu.float(), name), 32
    else:
        raise InputError(f"{name} has dtype {t.dtype}: use a float tensor in [0, 1] or uint8")
    records = []
    for b in range(values.shape[0]):
        rgb, alpha, gray = _split_channels(values[b])
        records.append(ImageRecord(
            rgb=rgb, alpha=alpha, kind="torch",
            name=name if values.shape[0] == 1 else f"{name}[{b}]",
            gray=gray, layout=layout, dtype=t.dtype, bit_depth=depth, device=t.device,
        ))
    return records


def _record_from_pil(image: Any, *, name: str) -> ImageRecord:
    arr, mode = _pil_to_array(image, name)
    rec = _record_from_array(arr, kind="pil", name=name)
    rec.layout, rec.mode, rec.dtype = "PIL", mode, None
    return rec


def _pil_to_array(image: Any, name: str) -> tuple[np.ndarray, str]:
    """PIL image → (array with the raw values, mode to give results back in)."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return np.asarray(image), mode
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16), "I;16"
    if mode == "I":
        arr = np.asarray(image)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise InputError(
                f"{name} is a 32-bit integer image with values in [{arr.min()}, {arr.max()}]: "
                "ttasr reads integer images up to 16 bits; rescale to 0-65535 or to float in [0, 1]"
            )
        return arr.astype(np.uint16), "I"
    if mode == "F":
        return np.asarray(image, dtype=np.float32), "F"
    if mode == "1":
        return np.asarray(image.convert("L")), "L"
    has_alpha = "A" in mode or "a" in mode or "transparency" in image.info
    target = "RGBA" if has_alpha else "RGB"
    log.info("%s: converting PIL mode %s to %s", name, mode, target)
    return np.asarray(image.convert(target)), target


# ---------------------------------------------------------------------------- output
def upscale_alpha(alpha: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an ``Bx1xHxW`` alpha channel to ``size`` with bicubic interpolation, clamped."""
    out = F.interpolate(alpha.float(), size=size, mode="bicubic", align_corners=False)
    return out.clamp_(0, 1)


def to_output(record: ImageRecord, sr_rgb: torch.Tensor, sr_alpha: torch.Tensor | None = None) -> Any:
    """Give a super-resolved ``1x3xhxw`` result back in the type ``record`` came in.

    Values are clamped to [0, 1] and, for integer types, rounded. Gray inputs come back gray
    (mean of the three channels). If the input had alpha and ``sr_alpha`` is None, the
    input's alpha is upscaled with :func:`upscale_alpha`.
    """
    if sr_rgb.ndim != 4 or sr_rgb.shape[:2] != (1, 3):
        raise ValueError(f"expected a 1x3xHxW result, got shape {tuple(sr_rgb.shape)}")
    sr = sr_rgb.detach().to("cpu", torch.float32).clamp(0, 1)
    h, w = sr.shape[-2:]
    if record.alpha is not None and sr_alpha is None:
        sr_alpha = upscale_alpha(record.alpha, (h, w))
    planes = sr.mean(1, keepdim=True) if record.gray else sr
    if record.alpha is not None and sr_alpha is not None:
        planes = torch.cat([planes, sr_alpha.detach().to("cpu", torch.float32).clamp(0, 1)], 1)
    chw = planes[0]

    if record.kind == "torch":
        if record.dtype == torch.uint8:
            out = (chw * 255).round_().to(torch.uint8)
        else:
            out = chw.to(record.dtype)
        out = {"HW": out[0], "CHW": out, "BCHW": out[None]}[record.layout]
        return out.to(record.device) if record.device is not None else out

    hwc = chw.permute(1, 2, 0).numpy()
    if record.kind == "pil":
        from PIL import Image

        mode = record.mode or "RGB"
        if mode == "F":
            return Image.fromarray(np.ascontiguousarray(hwc[..., 0]), mode="F")
        if mode in ("I;16", "I"):
            arr16 = _quantise(hwc[..., 0], np.dtype(np.uint16))
            return Image.fromarray(arr16) if mode == "I;16" else Image.fromarray(arr16.astype(np.int32))
        arr8 = _quantise(hwc, np.dtype(np.uint8))
        return Image.fromarray(arr8[..., 0] if arr8.shape[2] == 1 else arr8)

    out_np = _quantise(hwc, np.dtype(record.dtype)) if record.dtype is not None else hwc
    return out_np[..., 0] if record.layout == "HW" else out_np


def _quantise(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float in [0, 1] → ``dtype`` (rounded for integer types)."""
    if dtype == np.uint8:
        return np.round(values * 255.0).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(values.astype(np.float64) * 65535.0).astype(np.uint16)
    return np.ascontiguousarray(values.astype(dtype))


def check_size(record: ImageRecord | torch.Tensor, minimum: int, what: str, *, name: str | None = None) -> None:
    """Fail when the image's shorter side is below ``minimum`` pixels.

    ``what`` says what needs the size (``"AdaSSR with scale 4 and patch 48"``); the message
    names the image and suggests a smaller scale or patch, or upscaling the image first.
    """
    if isinstance(record, ImageRecord):
        h, w, label = record.height, record.width, name or record.name
    else:
        h, w, label = int(record.shape[-2]), int(record.shape[-1]), name or "image"
    if min(h, w) < minimum:
        raise InputError(
            f"{label} is {h}x{w} pixels, smaller than the {minimum} px that {what} needs: use a "
            "smaller scale or patch size, or upscale the image first"
        )


# ---------------------------------------------------------------------------- files
def _check_suffix(path: Path, action: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(
            f"cannot {action} '{path}': suffix '{path.suffix}' is not an image format ttasr "
            f"handles ({', '.join(IMAGE_SUFFIXES)}); convert the file or rename it"
        )
    return suffix


def _png_header(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR chunk, or None if it is not a PNG."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _is_16bit_colour(path: Path, suffix: str) -> bool:
    """Whether Pillow would lose precision: 16-bit RGB(A) or gray+alpha PNG/TIFF."""
    if suffix == ".png":
        header = _png_header(path)
        return header is not None and header[0] == 16 and header[1] in (2, 4, 6)
    if suffix in (".tif", ".tiff"):
        try:
            from PIL import Image

            with Image.open(path) as im:
                bits = im.tag_v2.get(258)  # BitsPerSample
        except (OSError, SyntaxError, ValueError, AttributeError):  # not a TIFF Pillow reads
            return False
        return isinstance(bits, tuple) and len(bits) > 1 and max(bits) == 16
    return False


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 or uint16, ``HxW`` (gray) or ``HxWxC`` (RGB order).

    16-bit colour PNG/TIFF files are read with OpenCV (BGR converted to RGB); others with
    Pillow. Raises :class:`~ttasr.errors.InputError` for missing, unsupported or corrupt files.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"image file '{path}' does not exist: check the path")
    suffix = _check_suffix(path, "read")
    if suffix in _SIXTEEN_BIT_SUFFIXES and _is_16bit_colour(path, suffix):
        return _read_cv2(path)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            arr, _ = _pil_to_array(im, path.name)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(
            f"cannot read image '{path}': the file is corrupt, truncated or not a {suffix[1:].upper()} "
            f"image ({exc}); re-export or re-download it"
        ) from exc
    if arr.dtype == np.float32:
        arr = _check_float_range(arr, path.name)
    return arr


def _read_cv2(path: Path) -> np.ndarray:
    cv2 = require("cv2", "io", "16-bit colour images")
    data = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(f"cannot read image '{path}': the file is corrupt or truncated; re-export it")
    if arr.ndim == 3:
        c = arr.shape[2]
        header = _png_header(path) if path.suffix.lower() == ".png" else None
        if header is not None and header[1] == 4 and c == 4:  # gray+alpha decoded as BGRA
            arr = arr[..., [0, 3]]
        elif c == 3:
            arr = arr[..., ::-1]
        elif c == 4:
            arr = arr[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(arr)


def save_image(image: Any, path: str | Path, *, bit_depth: int | None = None) -> Path:
    """Write ``image`` (numpy, PIL or torch, as :func:`load_images` accepts) to ``path``.

    uint16 data are written as 16-bit PNG/TIFF (OpenCV for colour, Pillow for gray); float
    data are written with ``bit_depth`` bits (8 by default). The file appears atomically.
    """
    path = Path(path).expanduser()
    suffix = _check_suffix(path, "write")
    arr = _to_savable_array(image, bit_depth, path)
    if arr.dtype == np.uint16 and suffix not in _SIXTEEN_BIT_SUFFIXES:
        raise InputError(
            f"cannot write 16-bit data to '{path}': {suffix[1:].upper()} holds 8 bits; "
            "save as .png or .tif, or pass uint8 data / bit_depth=8"
        )
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    if suffix in (".jpg", ".jpeg") and channels in (2, 4):
        raise InputError(f"cannot write '{path}': JPEG has no alpha channel; save as .png or drop alpha")
    if arr.ndim == 3 and channels == 1:
        arr = arr[..., 0]
        channels = 1
    if arr.dtype == np.uint16 and channels > 1:
        data = _encode_cv2(arr, suffix)
    else:
        data = _encode_pil(arr, suffix)
    _atomic_write_bytes(path, data)
    return path


def _to_savable_array(image: Any, bit_depth: int | None, path: Path) -> np.ndarray:
    if bit_depth not in (None, 8, 16):
        raise InputError(f"bit_depth={bit_depth} for '{path}': use 8 or 16")
    if isinstance(image, ImageRecord):
        raise InputError("save_image takes an image (array, tensor, PIL), not an ImageRecord: use to_output first")
    records = load_images(image).records
    if len(records) != 1:
        raise InputError(f"save_image writes one image to '{path}', got {len(records)}")
    rec = records[0]
    raw = _raw_array(image)
    if raw is not None and raw.dtype in (np.uint8, np.uint16) and bit_depth is None:
        return raw
    depth = bit_depth or (16 if rec.bit_depth == 16 else 8)
    planes = rec.rgb[0, :1] if rec.gray else rec.rgb[0]
    if rec.alpha is not None:
        planes = torch.cat([planes, rec.alpha[0]], 0)
    return _quantise(planes.permute(1, 2, 0).numpy(), np.dtype(np.uint16 if depth == 16 else np.uint8))


def _raw_array(image: Any) -> np.ndarray | None:
    """The integer array behind a numpy or PIL image, kept as is so that saving is exact."""
    if isinstance(image, np.ndarray) and image.dtype in (np.uint8, np.uint16):
        return image
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return None
    if isinstance(image, Image.Image):
        arr, _ = _pil_to_array(image, "PIL image")
        return arr if arr.dtype in (np.uint8, np.uint16) else None
    return None


def _encode_pil(arr: np.ndarray, suffix: str) -> bytes:
    from PIL import Image

    fmt = Image.registered_extensions().get(suffix)
    if fmt is None:
        raise InputError(f"Pillow cannot write '{suffix}' files here; save as .png")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format=fmt)
    return buf.getvalue()


def _encode_cv2(arr: np.ndarray, suffix: str) -> bytes:
    cv2 = require("cv2", "io", "16-bit colour images")
    c = arr.shape[2]
    if c == 2:  # OpenCV has no gray+alpha writer: store as RGBA
        log.warning("writing a 16-bit gray+alpha image as RGBA (OpenCV has no gray+alpha writer)")
        arr = arr[..., [0, 0, 0, 1]]
        c = 4
    bgr = arr[..., [2, 1, 0]] if c == 3 else arr[..., [2, 1, 0, 3]]
    ok, buf = cv2.imencode(suffix, np.ascontiguousarray(bgr))
    if not ok:
        raise InputError(f"OpenCV could not encode a 16-bit {suffix} image")
    return buf.tobytes()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}{path.suffix}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
