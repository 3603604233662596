"""`enhance`: super-resolve images of any size and type with any model, tile by tile.

The image moves to the model's device once and is cast there. It is cut into the fewest
equal tiles that respect ``tile`` and ``overlap`` (:mod:`ttasr.inference.tiling`); the
tiles of an image, and of the images of a batch, run through the network in batches of
``tile_batch``. Each tile's output is weighted by its (pre-normalised) blending window and
added into a float32 buffer on the device, or, when the output would take more than a
quarter of the free GPU memory, into a CPU buffer through pinned memory and asynchronous
copies, added up while the GPU runs the next batch. Nothing in the tile loop waits for the
device, so a GPU runs the tiles back to back. Tiles are padded at the bottom/right
(reflect, or replicate for tiny tiles) to satisfy the model's size requirements, and their
outputs are cropped back.

On running out of GPU memory the tile batch is halved, then the tile, and the image redone.
The model's tiling hint is respected: ``"internal"`` models (which tile themselves) are
never tiled; ``"discouraged"`` models run on the whole image and are tiled only after
running out of memory.

Precision and layout: the network runs in ``dtype`` (weights and inputs cast once, no
autocast) on ``device``; when that differs from where the caller's network sits, a cast copy
is made once and kept on the :class:`~ttasr.SRModel` for later calls, rebuilt when the
network's weights change. On CUDA devices the copy and the tiles are channels-last by
default (what cuDNN's fastest convolutions use).

Results are clamped to [0, 1] (models trained with L1 overshoot a little at edges; every
output type ttasr returns is defined on [0, 1]).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, ModelError
from ..io import load_images, to_output
from ..models import SRModel, load_model
from ..models.features import pad_to_requirements
from .tiling import Span, normalised_windows, tile_spans

__all__ = ["enhance", "enhance_tensor", "resolve_dtype"]

log = logging.getLogger(__name__)

_MIN_TILE = 16
"""Smallest tile the out-of-memory fallback tries before giving up."""

_BATCH_BUDGET = 4
"""Automatic tile batch on GPUs: as many tiles as this many tiles of the requested size hold."""

_DEVICE_OUTPUT_SHARE = 0.25
"""The output is accumulated on the GPU when it takes less than this share of free memory."""

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
    tile_batch: int | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    channels_last: bool | None = None,
    progress: bool | None = None,
) -> Any:
    """Super-resolve ``images`` and return them in the type they came in.

    ``model`` is an :class:`~ttasr.SRModel` or anything :func:`ttasr.load_model` takes.
    ``images`` is anything :func:`ttasr.io.load_images` takes: one image gives one result,
    a list, directory or glob gives a list (file inputs come back as numpy arrays with the
    file's dtype; results live on the CPU). ``tile`` is the LR tile size in pixels (``None``
    or 0: whole image), ``overlap`` the LR overlap between tiles, ``tile_batch`` how many
    tiles run through the network at once (``None``: as many as about four tiles of size
    ``tile`` hold on a GPU, one on the CPU). ``dtype`` (float32 by default; float16 and
    bfloat16 only where the architecture supports them, else float32 with a warning) and
    ``device`` (the model's by default) choose where tiles run; ``channels_last`` (``None``:
    on for CUDA devices) their memory layout. ``model`` is not modified; a copy cast for
    ``device``/``dtype`` is kept on it for the next call. ``progress``: a tqdm bar over
    tiles (None: only when an image has several tiles).
    """
    sr_model = model if isinstance(model, SRModel) else load_model(model)
    batch = load_images(images)
    run = _place(sr_model, device, dtype, channels_last)
    outputs = []
    for record in batch:
        sr = _enhance_placed(run, record.rgb, tile, overlap, tile_batch, progress, record.name, clamp=True)
        outputs.append(to_output(record, sr))
    return batch.assemble(outputs)


def enhance_tensor(
    model: Any,
    x: torch.Tensor,
    *,
    tile: int | None = 512,
    overlap: int = 32,
    tile_batch: int | None = None,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    channels_last: bool | None = None,
    progress: bool | None = False,
    clamp: bool = True,
) -> torch.Tensor:
    """Super-resolve a ``Bx3xHxW`` (or ``Bx1xHxW``) float tensor in [0, 1], tiled.

    Returns a float32 tensor ``Bx3x(sH)x(sW)`` on ``x``'s device (a CPU input gives a CPU
    result, a CUDA input a CUDA result, whichever ``device`` the tiles ran on), clamped to
    [0, 1] unless ``clamp=False``. Same options as :func:`enhance`; the progress bar is off
    by default.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"enhance_tensor needs a float BxCxHxW tensor, got {shape}; use enhance() for other types")
    sr_model = model if isinstance(model, SRModel) else load_model(model)
    run = _place(sr_model, device, dtype, channels_last)
    return _enhance_placed(run, x, tile, overlap, tile_batch, progress, "tensor", clamp=clamp)


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


@dataclass(frozen=True)
class _Placement:
    """Where and how tiles run: ``model`` sits on ``device`` in ``dtype``."""

    model: SRModel
    device: torch.device
    dtype: torch.dtype
    channels_last: bool


@dataclass
class _PlacedCopy:
    source: weakref.ref[nn.Module]
    fingerprint: tuple[tuple[int, int], ...]
    module: nn.Module


@dataclass
class _PlacedCopies:
    """Cast copies of one :class:`SRModel`'s network, by ``(device, dtype, channels_last)``.

    Kept on the model under ``_placed_copies``. A shallow copy of the model (such as
    :meth:`SRModel.with_weights` makes) sees another owner and starts its own; pickling or
    deep-copying the model drops the copies.
    """

    owner: weakref.ref[SRModel]
    entries: dict[tuple[torch.device, torch.dtype, bool], _PlacedCopy] = field(default_factory=dict)

    def __reduce__(self) -> Any:
        return _empty_copies, ()

    def __deepcopy__(self, memo: dict[int, Any]) -> None:
        return None


def _empty_copies() -> None:
    return None


def _fingerprint(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """Storage address and in-place version of every weight: changes when training steps,
    ``load_state_dict`` or ``.to()`` touch them (writes through ``.data`` are not seen).

    Tensors the network derives from its other weights at run time (SPAN's ``eval_conv``)
    are left out, so running the caller's network does not invalidate its copies.
    """
    return tuple(
        (t.data_ptr(), t._version)
        for name, t in chain(module.named_parameters(), module.named_buffers())
        if name.rsplit(".", 2)[-2:-1] != ["eval_conv"]
    )


def _place(
    model: SRModel, device: torch.device | str | None, dtype: torch.dtype | str | None, channels_last: bool | None
) -> _Placement:
    """``model`` itself if it already sits on ``device`` in ``dtype``, else a cached cast copy.

    A copy (not a move and back) keeps the caller's weights exact: a float32 → float16 →
    float32 round trip would round them. The caller's own network is never made
    channels-last; channels-last tiles make the convolutions use that layout all the same.
    """
    target = _normalise_device(device, model)
    run_dtype = resolve_dtype(model, dtype, target)
    cl = target.type == "cuda" if channels_last is None else bool(channels_last)
    if target == _normalise_device(None, model) and run_dtype == model.dtype:
        return _Placement(model, target, run_dtype, cl)
    return _Placement(_cached_copy(model, target, run_dtype, cl), target, run_dtype, cl)


def _cached_copy(model: SRModel, device: torch.device, dtype: torch.dtype, channels_last: bool) -> SRModel:
    """``model``'s network cast for ``(device, dtype, channels_last)``, made once per weights."""
    cache = getattr(model, "_placed_copies", None)
    if not isinstance(cache, _PlacedCopies) or cache.owner() is not model:
        cache = _PlacedCopies(weakref.ref(model))
        model._placed_copies = cache  # type: ignore[attr-defined]
    key = (device, dtype, channels_last)
    fingerprint = _fingerprint(model.module)
    entry = cache.entries.get(key)
    if entry is None or entry.source() is not model.module or entry.fingerprint != fingerprint:
        cache.entries.pop(key, None)  # free a stale copy before making the new one
        entry = None
        module = model.trainable_copy()
        module.requires_grad_(False).eval()
        module.to(device=device, dtype=dtype)
        if channels_last:
            module.to(memory_format=torch.channels_last)
        entry = _PlacedCopy(weakref.ref(model.module), fingerprint, module)
        cache.entries[key] = entry
        log.debug("%s: made a %s copy on %s", model.architecture, dtype, device)
    return model.with_weights(entry.module)


def _free_device_cache(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------- core
def _enhance_placed(
    run: _Placement, x: torch.Tensor, tile: int | None, overlap: int, tile_batch: int | None,
    progress: bool | None, name: str, *, clamp: bool,
) -> torch.Tensor:
    """Channel handling around :func:`_with_oom_fallback`; the result goes back to ``x``'s device."""
    if overlap < 0 or (tile is not None and tile < 0):
        raise InputError(f"tile={tile}, overlap={overlap}: use a positive tile (or None) and overlap >= 0")
    if tile_batch is not None and tile_batch < 1:
        raise InputError(f"tile_batch={tile_batch}: use a positive number of tiles per batch (or None)")
    model, home = run.model, x.device
    x = x.detach().to(run.device).float()  # moved once, cast there
    channels = x.shape[1]
    if model.in_channels == channels:
        out = _with_oom_fallback(run, x, tile, overlap, tile_batch, progress, name)
    elif model.in_channels == 3 and channels == 1:
        out = _with_oom_fallback(run, x.expand(-1, 3, -1, -1), tile, overlap, tile_batch, progress, name)
    elif model.in_channels == 1 and channels == 3:
        # Luma-only networks (SRCNN-style): super-resolve Y, upscale chroma bicubically.
        log.info("%s: %s takes one channel; super-resolving luma (BT.601 Y), chroma upscaled "
                 "bicubically", name, model.architecture)
        ycc = _rgb_to_ycbcr(x)
        luma = _with_oom_fallback(run, ycc[:, :1], tile, overlap, tile_batch, progress, name)
        chroma = F.interpolate(ycc[:, 1:].to(luma.device), size=luma.shape[-2:], mode="bicubic", align_corners=False)
        out = _ycbcr_to_rgb(torch.cat([luma[:, :1], chroma], 1))
    else:
        raise InputError(
            f"{name} has {channels} channels but {model.architecture} takes {model.in_channels}: "
            "pass RGB (3) or gray (1) images"
        )
    if clamp:
        out = out.clamp_(0, 1)
    return out.to(home)


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


def _layout(model: SRModel, h: int, w: int, tile: int | None, overlap: int) -> tuple[list[Span], list[Span]]:
    """Row and column tiles for ``tile`` (``None``: the whole image)."""
    s = model.scale
    t = tile if tile else max(h, w)
    ov = max(0, min(overlap, t // 2)) if t < max(h, w) else 0
    m = max(1, model.size_requirements.multiple_of)
    return tile_spans(h, t, ov, s, m), tile_spans(w, t, ov, s, m)


def _auto_tile_batch(run: _Placement, tile_hw: tuple[int, int], budget_side: int) -> int:
    """Tiles per batch: as many as ``_BATCH_BUDGET`` tiles of ``budget_side`` pixels square
    hold, but one on the CPU, as before: there batching was faster for some networks and
    slower for others (SPAN x4 with 128 px tiles: 0.58 s instead of 0.82 s; Compact with
    96 px tiles: 0.69 s instead of 0.53 s; 512 px tiles: slower), and costs memory."""
    if run.device.type == "cpu":
        return 1
    ph, pw = (a + b for a, b in zip(tile_hw, run.model.size_requirements.padding(*tile_hw), strict=True))
    return max(1, _BATCH_BUDGET * budget_side * budget_side // (ph * pw))


def _with_oom_fallback(
    run: _Placement, x: torch.Tensor, tile: int | None, overlap: int, tile_batch: int | None,
    progress: bool | None, name: str,
) -> torch.Tensor:
    """Run :func:`_tiled_forward`; after an out-of-memory error halve the tile batch, or the
    tile once a batch holds one tile, and start the image again."""
    model = run.model
    b, _, h, w = x.shape
    whole = max(h, w)
    requested = _legal_tile(tile, model) if tile else None
    if model.tiling == "internal" or (model.tiling == "discouraged" and requested is not None):
        if requested is not None and requested < whole:
            log.debug("%s: %s tiling is %s; running the whole image", name, model.architecture, model.tiling)
        current: int | None = None  # whole image first
    else:
        current = requested if requested is not None and requested < whole else None
    xin = x.to(run.dtype)
    reduced: int | None = None  # the tile batch after an out-of-memory error
    while True:
        rows, cols = _layout(model, h, w, current, overlap)
        count = b * len(rows) * len(cols)
        k = reduced or tile_batch or _auto_tile_batch(run, (rows[0].size, cols[0].size), requested or whole)
        k = max(1, min(k, count))
        try:
            return _tiled_forward(run, xin, rows, cols, k, progress)
        except RuntimeError as exc:
            if not _is_oom(exc):
                raise
            if k > 1:
                reduced = k // 2
                log.warning("%s: out of memory with %d tiles per batch; retrying with %d", name, k, reduced)
            else:
                current = _tile_after_oom(model, current, requested, (h, w), name, exc)
                reduced = 1
        # outside the except block, so the traceback's frames (and their GPU tensors) are gone
        _free_device_cache(run.device)


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
    run: _Placement, x: torch.Tensor, rows: list[Span], cols: list[Span], k: int, progress: bool | None
) -> torch.Tensor:
    """Super-resolve ``x`` (on the device, in the run dtype) tile batch by tile batch.

    Returns float32, on the device or (for outputs too large for it) on the CPU. With one
    tile per image the outputs are copied, not blended; with one batch, not even copied.
    """
    b, _, h, w = x.shape
    s = run.model.scale
    th, tw = rows[0].size, cols[0].size
    single = len(rows) == len(cols) == 1
    if single and k >= b:
        y = _forward_batch(run, x).float()
        return y.contiguous() if run.channels_last else y  # (the CPU default: no copy, as before)
    items = [(i, r, c) for i in range(b) for r in range(len(rows)) for c in range(len(cols))]
    row_w = col_w = None
    if not single:
        row_w = _to_device(normalised_windows(rows, h, s), run.device)
        col_w = _to_device(normalised_windows(cols, w, s), run.device)
    from tqdm.auto import tqdm

    show = progress if progress is not None else not single
    out: _Output | None = None
    with tqdm(total=len(items), desc="tiles", unit="tile", disable=single or not show, leave=False) as bar:
        for first in range(0, len(items), k):
            chunk = items[first:first + k]
            if single:
                tiles = x[chunk[0][0]:chunk[-1][0] + 1]
            else:
                tiles = torch.cat([
                    x[i:i + 1, :, rows[r].start:rows[r].start + th, cols[c].start:cols[c].start + tw]
                    for i, r, c in chunk
                ])
            y = _forward_batch(run, tiles).float()
            if out is None:
                out = _Output.allocate((b, y.shape[1], h * s, w * s), run.device, blend=not single)
            regions = [
                (i, slice(rows[r].start * s, (rows[r].start + th) * s), slice(cols[c].start * s, (cols[c].start + tw) * s))
                for i, r, c in chunk
            ]
            weights = None if row_w is None or col_w is None else [row_w[r][:, None] * col_w[c] for _, r, c in chunk]
            out.put(y, regions, weights)
            bar.update(len(chunk))
    if out is None:  # an empty batch
        return torch.zeros(0, run.model.out_channels, h * s, w * s, device=x.device)
    return out.result()


def _to_device(windows: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """The windows on ``device`` with one copy, as views."""
    if device.type == "cpu":
        return windows
    joined = torch.cat(windows).to(device, non_blocking=True)
    return list(joined.split([len(v) for v in windows]))


def _forward_batch(run: _Placement, tiles: torch.Tensor) -> torch.Tensor:
    """One batch of tiles: pad to the size requirements, run, check the scale, crop."""
    model = run.model
    h, w = tiles.shape[-2:]
    # contiguous: a strided view of the image would be re-laid-out by every early convolution
    layout = torch.channels_last if run.channels_last else torch.contiguous_format
    padded = pad_to_requirements(model, tiles).contiguous(memory_format=layout)
    y = model(padded)
    s = model.scale
    expected = (padded.shape[-2] * s, padded.shape[-1] * s)
    if tuple(y.shape[-2:]) != expected:
        raise ModelError(
            f"{model.architecture} turned a {tuple(padded.shape[-2:])} input into "
            f"{tuple(y.shape[-2:])}, not {expected} (scale {s}): check the model's scale"
        )
    return y[..., : h * s, : w * s]


def _output_fits(nbytes: int, device: torch.device) -> bool:
    """Whether an output of ``nbytes`` may be accumulated on ``device`` (see ``_DEVICE_OUTPUT_SHARE``)."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # PyTorch's cache
    return nbytes < _DEVICE_OUTPUT_SHARE * free


@dataclass
class _Output:
    """The float32 result being assembled, on the device or on the CPU.

    On the CPU (outputs too large for the GPU), each batch is weighted on the GPU and copied
    asynchronously into pinned memory; it is added in while the GPU runs the next batch.
    """

    buffer: torch.Tensor
    blend: bool
    """Add weighted tiles (False: each pixel is written by one tile)."""
    staged: bool
    """``buffer`` is on the CPU, apart from the device the tiles run on."""
    pending: tuple[torch.Tensor, torch.cuda.Event | None, list[tuple[int, slice, slice]]] | None = None

    @classmethod
    def allocate(cls, shape: tuple[int, ...], device: torch.device, *, blend: bool) -> _Output:
        make = torch.zeros if blend else torch.empty
        if _output_fits(4 * torch.Size(shape).numel(), device):
            try:
                return cls(make(shape, dtype=torch.float32, device=device), blend, staged=False)
            except RuntimeError as exc:
                if not _is_oom(exc):
                    raise
        log.debug("output %s accumulated on the CPU", tuple(shape))
        return cls(make(shape, dtype=torch.float32), blend, staged=True)

    def put(self, y: torch.Tensor, regions: list[tuple[int, slice, slice]],
            weights: list[torch.Tensor] | None) -> None:
        """Add (or write) tile outputs ``y`` (float32) weighted by ``weights`` into ``regions``."""
        if not self.staged:
            for j, (i, rs, cs) in enumerate(regions):
                if weights is None:
                    self.buffer[i, :, rs, cs].copy_(y[j])
                else:
                    self.buffer[i, :, rs, cs].addcmul_(y[j], weights[j])
            return
        if weights is not None:
            for j, wt in enumerate(weights):
                y[j].mul_(wt)
        staging = torch.empty(y.shape, dtype=torch.float32, pin_memory=y.is_cuda)
        staging.copy_(y, non_blocking=True)
        event = None
        if y.is_cuda:
            event = torch.cuda.Event()
            event.record()
        self._flush()  # the previous batch, while this one is copied and the next one runs
        self.pending = (staging, event, regions)

    def _flush(self) -> None:
        if self.pending is None:
            return
        staging, event, regions = self.pending
        self.pending = None
        if event is not None:
            event.synchronize()
        for j, (i, rs, cs) in enumerate(regions):
            region = self.buffer[i, :, rs, cs]
            region.add_(staging[j]) if self.blend else region.copy_(staging[j])

    def result(self) -> torch.Tensor:
        self._flush()
        return self.buffer
