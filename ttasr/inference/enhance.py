"""`enhance`: super-resolve images of any size and type with any model, tile by tile.

Only tiles travel to the model's device; the output is accumulated on the CPU with the
blending windows of :mod:`ttasr.inference.tiling` and normalised by the summed weights.
Each tile is padded at the bottom/right (reflect, or replicate for tiny tiles) to satisfy the
model's size requirements, and its output is cropped back. On running out of GPU memory the
tile is halved and the image redone. The model's tiling hint is respected: ``"internal"``
models (which tile themselves) are never tiled; ``"discouraged"`` models run on the whole
image and are tiled only after running out of memory.

Results are clamped to [0, 1] (models trained with L1 overshoot a little at edges; every
output type ttasr returns is defined on [0, 1]).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError, ModelError
from ..io import load_images, to_output
from ..models import SRModel, load_model
from ..models.features import pad_to_requirements
from .tiling import tile_spans, weight_sum

__all__ = ["enhance", "enhance_tensor", "resolve_dtype"]

log = logging.getLogger(__name__)

_MIN_TILE = 16
"""Smallest tile the out-of-memory fallback tries before giving up."""

_DTYPE_NAMES = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}


def enhance(
    model: Any,
    images: Any,
    *,
    tile: int | None = 512,
    overlap: int = 32,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> Any:
    """Super-resolve ``images`` and return them in the type they came in.

    ``model`` is an :class:`~ttasr.SRModel` or anything :func:`ttasr.load_model` takes.
    ``images`` is anything :func:`ttasr.io.load_images` takes: one image gives one result,
    a list, directory or glob gives a list (file inputs come back as numpy arrays with the
    file's dtype). ``tile`` is the LR tile size in pixels (``None`` or 0: whole image),
    ``overlap`` the LR overlap between tiles. ``dtype`` (float32 by default; float16 and
    bfloat16 only where the architecture supports them, else float32 with a warning) and
    ``device`` (the model's by default) choose where tiles run; ``model`` is not modified.
    ``progress``: a tqdm bar over tiles (None: only when an image has several tiles).
    """
    sr_model = model if isinstance(model, SRModel) else load_model(model)
    batch = load_images(images)
    outputs = []
    with _placed(sr_model, device, dtype) as run:
        for record in batch:
            sr = _enhance_placed(run, record.rgb, tile, overlap, progress, record.name)
            outputs.append(to_output(record, sr.clamp_(0, 1)))
    return batch.assemble(outputs)


def enhance_tensor(
    model: Any,
    x: torch.Tensor,
    *,
    tile: int | None = 512,
    overlap: int = 32,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    progress: bool | None = False,
    clamp: bool = True,
) -> torch.Tensor:
    """Super-resolve a ``Bx3xHxW`` (or ``Bx1xHxW``) float tensor in [0, 1], tiled.

    Returns a float32 CPU tensor ``Bx3x(sH)x(sW)``, clamped to [0, 1] unless ``clamp=False``.
    Same options as :func:`enhance`; the progress bar is off by default.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"enhance_tensor needs a float BxCxHxW tensor, got {shape}; use enhance() for other types")
    sr_model = model if isinstance(model, SRModel) else load_model(model)
    with _placed(sr_model, device, dtype) as run:
        out = _enhance_placed(run, x, tile, overlap, progress, "tensor")
    return out.clamp_(0, 1) if clamp else out


# ---------------------------------------------------------------------------- placement
def resolve_dtype(model: SRModel, dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """The dtype tiles run in: ``dtype`` if the model supports it, else float32 (warning).

    ``None`` means float32 on the CPU and the model's own dtype elsewhere.
    """
    if dtype is None:
        return torch.float32 if device.type == "cpu" else model.dtype
    if isinstance(dtype, str):
        if dtype.lower() not in _DTYPE_NAMES:
            raise InputError(f"dtype '{dtype}' is not known: use float32, float16 or bfloat16")
        dtype = _DTYPE_NAMES[dtype.lower()]
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise InputError(f"dtype {dtype} cannot run a model: use float32, float16 or bfloat16")
    if not model.supports(dtype):
        log.warning("%s does not support %s; running in float32", model.architecture, dtype)
        return torch.float32
    return dtype


def _normalise_device(device: torch.device | str | None, model: SRModel) -> torch.device:
    dev = torch.device(device) if device is not None else model.device
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


@contextmanager
def _placed(model: SRModel, device: torch.device | str | None, dtype: torch.dtype | str | None) -> Iterator[SRModel]:
    """``model`` itself if it already sits on ``device`` in ``dtype``, else a placed copy.

    A copy (not a move and back) keeps the caller's weights exact: a float32 → float16 →
    float32 round trip would round them.
    """
    target = _normalise_device(device, model)
    run_dtype = resolve_dtype(model, dtype, target)
    if target == _normalise_device(None, model) and run_dtype == model.dtype:
        yield model
        return
    placed = model.with_weights(model.trainable_copy())
    placed.module.to(device=target, dtype=run_dtype)
    try:
        yield placed
    finally:
        del placed
        _free_device_cache(target)


def _free_device_cache(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------- core
def _enhance_placed(
    model: SRModel, x: torch.Tensor, tile: int | None, overlap: int, progress: bool | None, name: str
) -> torch.Tensor:
    """Channel handling around :func:`_with_oom_fallback`; ``x`` stays on the CPU."""
    x = x.detach().to("cpu", torch.float32)
    channels = x.shape[1]
    if model.in_channels == channels:
        return _with_oom_fallback(model, x, tile, overlap, progress, name)
    if model.in_channels == 3 and channels == 1:
        return _with_oom_fallback(model, x.expand(-1, 3, -1, -1), tile, overlap, progress, name)
    if model.in_channels == 1 and channels == 3:
        # Luma-only networks (SRCNN-style): super-resolve Y, upscale chroma bicubically.
        log.info("%s: %s takes one channel; super-resolving luma (BT.601 Y), chroma upscaled "
                 "bicubically", name, model.architecture)
        ycc = _rgb_to_ycbcr(x)
        luma = _with_oom_fallback(model, ycc[:, :1], tile, overlap, progress, name)
        chroma = F.interpolate(ycc[:, 1:], size=luma.shape[-2:], mode="bicubic", align_corners=False)
        return _ycbcr_to_rgb(torch.cat([luma[:, :1], chroma], 1))
    raise InputError(
        f"{name} has {channels} channels but {model.architecture} takes {model.in_channels}: "
        "pass RGB (3) or gray (1) images"
    )


def _rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """Full-range BT.601 (JPEG) YCbCr of an RGB tensor in [0, 1]."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.cat([y, (b - y) / 1.772 + 0.5, (r - y) / 1.402 + 0.5], 1)


def _ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    y, cb, cr = x[:, 0:1], x[:, 1:2] - 0.5, x[:, 2:3] - 0.5
    r = y + 1.402 * cr
    b = y + 1.772 * cb
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return torch.cat([r, g, b], 1)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def _legal_tile(tile: int, model: SRModel) -> int:
    """Round ``tile`` down to the model's ``multiple_of`` and up to its ``minimum``."""
    req = model.size_requirements
    m = max(1, req.multiple_of)
    tile = max(m, (tile // m) * m)
    return max(tile, -(-req.minimum // m) * m)


def _with_oom_fallback(
    model: SRModel, x: torch.Tensor, tile: int | None, overlap: int, progress: bool | None, name: str
) -> torch.Tensor:
    """Run :func:`_tiled_forward`, halving the tile after each out-of-memory error."""
    if overlap < 0 or (tile is not None and tile < 0):
        raise InputError(f"tile={tile}, overlap={overlap}: use a positive tile (or None) and overlap >= 0")
    h, w = x.shape[-2:]
    whole = max(h, w)
    requested = _legal_tile(tile, model) if tile else None
    if model.tiling == "internal" or (model.tiling == "discouraged" and requested is not None):
        if requested is not None and requested < whole:
            log.debug("%s: %s tiling is %s; running the whole image", name, model.architecture, model.tiling)
        current: int | None = None  # whole image first
    else:
        current = requested if requested is not None and requested < whole else None
    while True:
        try:
            return _tiled_forward(model, x, current, overlap, progress)
        except RuntimeError as exc:
            if not _is_oom(exc):
                raise
            current = _tile_after_oom(model, current, requested, (h, w), name, exc)
        # outside the except block, so the traceback's frames (and their GPU tensors) are gone
        _free_device_cache(model.device)


def _tile_after_oom(
    model: SRModel, current: int | None, requested: int | None, hw: tuple[int, int], name: str,
    exc: BaseException,
) -> int:
    """The next tile size to try after running out of memory, or raise when none is left."""
    h, w = hw
    size = current if current is not None else max(h, w)
    if model.tiling == "internal":
        raise torch.cuda.OutOfMemoryError(
            f"out of memory super-resolving {name} ({h}x{w}) on {model.device}; "
            f"{model.architecture} tiles internally, so ttasr does not tile it: use "
            "device='cpu', a smaller image, or a lower-precision dtype if supported"
        ) from exc
    if current is None and model.tiling == "discouraged" and requested is not None and requested < size:
        smaller = requested
    else:
        smaller = _legal_tile(size // 2, model)
    floor = max(_MIN_TILE, model.size_requirements.minimum)
    if smaller >= size or smaller < floor:
        raise torch.cuda.OutOfMemoryError(
            f"out of memory super-resolving {name} ({h}x{w}) on {model.device} even with "
            f"{size} px tiles: use device='cpu', dtype=torch.float16 if the model supports "
            "it, or free GPU memory"
        ) from exc
    if model.tiling == "discouraged":
        log.warning("%s: out of memory with %d px; tiling %s (discouraged for this "
                    "architecture) with %d px tiles", name, size, model.architecture, smaller)
    else:
        log.warning("%s: out of memory with %d px tiles; retrying with %d px", name, size, smaller)
    return smaller


def _tiled_forward(
    model: SRModel, x: torch.Tensor, tile: int | None, overlap: int, progress: bool | None
) -> torch.Tensor:
    """Blend tile outputs into a CPU float32 buffer; ``tile=None`` runs the whole image."""
    b, _, h, w = x.shape
    s = model.scale
    t = tile if tile else max(h, w)
    ov = max(0, min(overlap, t // 2)) if t < max(h, w) else 0
    rows, cols = tile_spans(h, t, ov, s), tile_spans(w, t, ov, s)
    n = len(rows) * len(cols)
    if n == 1:
        return _forward_tile(model, x)
    from tqdm.auto import tqdm

    show = progress if progress is not None else n > 1
    out: torch.Tensor | None = None
    with tqdm(total=n, desc="tiles", unit="tile", disable=not show, leave=False) as bar:
        for r in rows:
            for c in cols:
                patch = x[..., r.start:r.start + r.size, c.start:c.start + c.size]
                y = _forward_tile(model, patch)
                if out is None:
                    out = torch.zeros(b, y.shape[1], h * s, w * s, dtype=torch.float32)
                region = out[..., r.start * s:(r.start + r.size) * s, c.start * s:(c.start + c.size) * s]
                region.addcmul_(y, r.weight[:, None] * c.weight[None, :])
                bar.update(1)
    assert out is not None
    out.div_(weight_sum(rows, h, s)[:, None])
    out.div_(weight_sum(cols, w, s)[None, :])
    return out


def _forward_tile(model: SRModel, patch: torch.Tensor) -> torch.Tensor:
    """One tile: pad to the size requirements, run on the model's device, crop, to CPU."""
    h, w = patch.shape[-2:]
    # contiguous: a strided view of the image would be re-laid-out by every early convolution
    padded = pad_to_requirements(model, patch).contiguous()
    y = model(padded)
    s = model.scale
    expected = (padded.shape[-2] * s, padded.shape[-1] * s)
    if tuple(y.shape[-2:]) != expected:
        raise ModelError(
            f"{model.architecture} turned a {tuple(padded.shape[-2:])} input into "
            f"{tuple(y.shape[-2:])}, not {expected} (scale {s}): check the model's scale"
        )
    return y[..., : h * s, : w * s].to("cpu", torch.float32)
