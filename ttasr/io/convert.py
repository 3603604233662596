"""Converting between caller types (numpy, PIL, torch) and :class:`ImageRecord`, both ways.

Inputs are checked here, at the boundary, so that model code can assume a ``1x3xHxW``
float32 tensor in [0, 1]: wrong layouts, channel counts, dtypes, NaN/Inf and out-of-range
floats fail with an :class:`~ttasr.errors.InputError` that names the image and the fix.
:func:`to_output` is the inverse: it hands a result back in the type, dtype, layout and
mode its input came in.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .orientation import upright
from .records import ImageRecord, Kind

__all__ = [
    "check_float_range",
    "pil_to_array",
    "quantise",
    "record_from_array",
    "record_from_pil",
    "records_from_tensor",
    "to_output",
    "upscale_alpha",
]

log = logging.getLogger(__name__)

_RANGE_TOLERANCE = 1e-4
"""Float inputs may stray this far outside [0, 1] (rounding) before they count as an error."""


# ---------------------------------------------------------------------------- in
def record_from_array(arr: np.ndarray, *, kind: Kind, name: str) -> ImageRecord:
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
    _check_not_empty(hwc.shape[0], hwc.shape[1], name, arr.shape)
    values, depth = _to_unit_float(hwc.dtype, hwc, name)
    rgb, alpha, gray = _split_channels(torch.from_numpy(np.ascontiguousarray(values)).permute(2, 0, 1))
    return ImageRecord(rgb=rgb, alpha=alpha, kind=kind, name=name, gray=gray, layout=layout,
                       dtype=hwc.dtype, bit_depth=depth)


def _check_not_empty(height: int, width: int, name: str, shape: Any) -> None:
    """A zero-sized image has nothing to upscale, and reductions on it fail obscurely later."""
    if height == 0 or width == 0:
        raise InputError(f"{name} has no pixels (shape {tuple(shape)}): pass an image at least 1x1")


def _to_unit_float(dtype: np.dtype, arr: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Scale integer data to [0, 1]; check float data is finite and already in [0, 1]."""
    if dtype == np.uint8:
        return arr.astype(np.float32) / 255.0, 8
    if dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0, 16
    if dtype in (np.float32, np.float64, np.float16):
        values = arr.astype(np.float32)
        return check_float_range(values, name), 32
    raise InputError(
        f"{name} has dtype {dtype}: use uint8, uint16, or float32/float64 in [0, 1]"
    )


def check_float_range(values: Any, name: str) -> Any:
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


def records_from_tensor(t: torch.Tensor, *, name: str) -> list[ImageRecord]:
    """Validate an ``HxW`` / ``CxHxW`` / ``BxCxHxW`` tensor; one record per batch entry."""
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
    _check_not_empty(batch.shape[2], batch.shape[3], name, t.shape)
    cpu = batch.cpu()
    if t.dtype == torch.uint8:
        values, depth = cpu.float() / 255.0, 8
    elif t.is_floating_point():
        values, depth = check_float_range(cpu.float(), name), 32
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


def record_from_pil(image: Any, *, name: str) -> ImageRecord:
    """Record of a PIL image, turned upright by its EXIF orientation like a file would be."""
    arr, mode = pil_to_array(upright(image), name)
    rec = record_from_array(arr, kind="pil", name=name)
    rec.layout, rec.mode, rec.dtype = "PIL", mode, None
    return rec


def pil_to_array(image: Any, name: str) -> tuple[np.ndarray, str]:
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
    try:
        converted = image.convert(target)
    except ValueError as exc:  # Pillow has no conversion for some modes (LAB, HSV with alpha...)
        raise InputError(
            f"{name} is in PIL mode {mode}, which Pillow cannot convert to {target} ({exc}): "
            "convert it to RGB or RGBA yourself first"
        ) from exc
    return np.asarray(converted), target


# ---------------------------------------------------------------------------- out
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
            arr16 = quantise(hwc[..., 0], np.dtype(np.uint16))
            return Image.fromarray(arr16) if mode == "I;16" else Image.fromarray(arr16.astype(np.int32))
        arr8 = quantise(hwc, np.dtype(np.uint8))
        return Image.fromarray(arr8[..., 0] if arr8.shape[2] == 1 else arr8)

    out_np = quantise(hwc, np.dtype(record.dtype)) if record.dtype is not None else hwc
    return out_np[..., 0] if record.layout == "HW" else out_np


def quantise(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float in [0, 1] → ``dtype`` (rounded for integer types)."""
    if dtype == np.uint8:
        return np.round(values * 255.0).astype(np.uint8)
    if dtype == np.uint16:
        return np.round(values.astype(np.float64) * 65535.0).astype(np.uint16)
    return np.ascontiguousarray(values.astype(dtype))
