"""Speed and peak memory of tiled ``ttasr.enhance`` against the bare model call.

    .venv/bin/python benchmarks/speed_enhance.py [--model span-x4] [--size 256 | --size 480x640]
        [--tile 128] [--overlap 32] [--tile-batch N] [--repeats 3] [--device cuda]
        [--dtype fp16] [--channels-last | --no-channels-last] [--memory-size 1080x1920]
        [--bare-memory] [--no-memory]

Uses ``ttasr.load_model("span-x4")`` when it loads, else a tiny Compact x4 network.

Input: a natural photo (scikit-image's astronaut, mirrored to the size asked for), since SR
networks fed uniform noise give wild outputs (SPAN: about -500..+800) that make output
differences meaningless; smoothed noise when scikit-image is absent.

Time: median wall-clock seconds of ``repeats`` runs after one warm-up each, bare and tiled
runs interleaved so that load from other processes hits both alike. The input already sits
on ``device``, and both results stay there (a CUDA input gives a CUDA result), so only the
work on the device is compared, up to a final synchronisation. The bare call is
``SRModel.__call__`` of a copy of the network in ``dtype`` (channels-last where enhance
would use it) on the whole image (no padding, tiling, blending or clamping), its output
converted to float32; the tiled call is :func:`ttasr.inference.enhance_tensor` with
``clamp=False`` on the model as given (its cast copy made in the warm-up).

Memory: each measurement runs in a fresh *spawned* process, so that no memory the allocator
kept from earlier work hides new growth (a script calling :func:`peak_memory_tiled` needs
the ``if __name__ == "__main__":`` guard). There, with the model loaded and the input made, we
record the resident set size (RSS), run the call while a thread samples RSS every 2 ms, and
report ``peak RSS - RSS before``, taking the larger of the sampled peak and ``ru_maxrss``
when the latter grew during the call. This counts everything the call allocates on the
CPU: the output, the tiles, the activations, allocator overhead; a spike shorter than 2 ms
that ``ru_maxrss`` misses could be under-counted. On CUDA devices the peak of
``torch.cuda.max_memory_allocated`` is reported too.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from queue import Empty
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ttasr
from ttasr.inference import enhance_tensor, tile_starts
from ttasr.inference.tiling import tile_size

__all__ = ["default_model", "peak_memory_tiled", "sample_photo", "time_tiled_vs_bare"]


def default_model(name: str = "span-x4") -> ttasr.SRModel:
    """``name`` if it loads (offline), else a tiny Compact x4 network with random weights."""
    try:
        return ttasr.load_model(name)
    except ttasr.TTASRError as exc:
        print(f"# {name} unavailable ({exc}); using a tiny Compact x4 instead")
        from spandrel.architectures.Compact import Compact

        torch.manual_seed(0)
        return ttasr.load_model(Compact(num_in_ch=3, num_out_ch=3, num_feat=32, num_conv=8, upscale=4))


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def sample_photo(height: int, width: int) -> torch.Tensor:
    """A ``1x3xHxW`` natural photo in [0, 1] (astronaut, mirror-tiled), or smoothed noise."""
    try:
        from skimage import data

        base = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    except ImportError:
        gen = torch.Generator().manual_seed(0)
        noise = torch.rand(1, 3, 64, 64, generator=gen)
        base = torch.nn.functional.interpolate(noise, size=(512, 512), mode="bicubic").clamp(0, 1)
    while base.shape[-2] < height or base.shape[-1] < width:
        base = torch.cat([base, base.flip(-2)], -2) if base.shape[-2] < height else base
        base = torch.cat([base, base.flip(-1)], -1) if base.shape[-1] < width else base
    return base[..., :height, :width].contiguous()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _layout(h: int, w: int, tile: int | None, overlap: int, multiple_of: int = 1) -> tuple[int, int, int]:
    """Tiles per image and the LR pixels they cover, as enhance cuts them."""
    t = tile if tile else max(h, w)
    ov = min(overlap, t // 2) if t < max(h, w) else 0
    rows, cols = tile_starts(h, t, ov, multiple_of), tile_starts(w, t, ov, multiple_of)
    pixels = len(rows) * tile_size(h, t, ov, multiple_of) * len(cols) * tile_size(w, t, ov, multiple_of)
    return len(rows) * len(cols), pixels, ov


def _parse_hw(text: str) -> tuple[int, int]:
    parts = [int(v) for v in text.lower().split("x")]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def time_tiled_vs_bare(
    model: ttasr.SRModel,
    size: int | tuple[int, int] = 256,
    tile: int | None = 128,
    repeats: int = 3,
    *,
    overlap: int = 32,
    device: str | None = None,
    dtype: str | None = None,
    channels_last: bool | None = None,
    tile_batch: int | None = None,
) -> dict[str, Any]:
    """Median seconds of the bare model call and of tiled enhance on one natural photo.

    Also the number of tiles, the compute ratio those tiles imply (tiled LR pixels / image
    pixels), and the largest absolute difference between the two outputs.
    """
    from ttasr.inference import resolve_dtype

    h, w = _hw(size)
    dev = torch.device(device) if device else model.device
    run_dtype = resolve_dtype(model, dtype, dev)
    cl = dev.type == "cuda" if channels_last is None else channels_last
    layout = torch.channels_last if cl else torch.contiguous_format
    bare_model = model.with_weights(model.trainable_copy())
    bare_model.module.requires_grad_(False)
    bare_model.module.to(device=dev, dtype=run_dtype)
    bare_model.module.to(memory_format=layout)
    x = sample_photo(h, w).to(dev)
    x_bare = x.to(run_dtype).contiguous(memory_format=layout)

    def bare() -> torch.Tensor:
        out = bare_model(x_bare).float()
        _sync(dev)
        return out

    def tiled() -> torch.Tensor:
        out = enhance_tensor(model, x, tile=tile, overlap=overlap, clamp=False, progress=False, device=dev,
                             dtype=dtype, channels_last=channels_last, tile_batch=tile_batch)
        _sync(dev)
        return out

    runs = {"bare": bare, "tiled": tiled}
    times: dict[str, list[float]] = {"bare": [], "tiled": []}
    outs: dict[str, torch.Tensor] = {}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t0)
    tiles, tiled_pixels, ov = _layout(h, w, tile, overlap, model.size_requirements.multiple_of)
    bare_s, tiled_s = statistics.median(times["bare"]), statistics.median(times["tiled"])
    return {
        "size": f"{h}x{w}",
        "scale": model.scale,
        "tile": tile,
        "overlap": ov,
        "tiles": tiles,
        "tile_batch": tile_batch,
        "dtype": str(run_dtype).removeprefix("torch."),
        "channels_last": cl,
        "compute_ratio": round(tiled_pixels / (h * w), 3),
        "bare_s": round(bare_s, 4),
        "tiled_s": round(tiled_s, 4),
        "overhead_pct": round(100 * (tiled_s / bare_s - 1), 1),
        "max_abs_diff": float((outs["tiled"] - outs["bare"]).abs().max()),
        "mean_abs_diff": float((outs["tiled"] - outs["bare"]).abs().mean()),
        "output_device": str(outs["tiled"].device),
        "device": str(dev),
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------------------- memory
def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        import psutil

        return int(psutil.Process().memory_info().rss)


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _measure_child(model: ttasr.SRModel, hw: tuple[int, int], tile: int | None, overlap: int,
                   device: str | None, threads: int, queue: Any) -> None:
    try:
        torch.set_num_threads(threads)
        dev = torch.device(device) if device else torch.device("cpu")
        model = model.to(dev)
        x = sample_photo(*hw)
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        rss0, maxrss0 = _rss_bytes(), _maxrss_bytes()
        peak = [rss0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss_bytes())
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        if tile == -1:  # the bare model call on the whole image
            out = model(x).float().cpu()
        else:
            out = enhance_tensor(model, x, tile=tile, overlap=overlap, clamp=False, progress=False)
        _sync(dev)
        seconds = time.perf_counter() - t0
        stop.set()
        sampler.join()
        maxrss1 = _maxrss_bytes()
        top = max(peak[0], maxrss1 if maxrss1 > maxrss0 else 0)
        result = {
            "peak_rss_increase_mb": round((top - rss0) / 2**20, 1),
            "rss_before_mb": round(rss0 / 2**20, 1),
            "seconds": round(seconds, 2),
            "output_mb": round(out.numel() * out.element_size() / 2**20, 1),
        }
        if dev.type == "cuda":
            result["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        queue.put(result)
    except BaseException as exc:  # noqa: BLE001 - report, do not hang the parent
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _run_child(model: ttasr.SRModel, hw: tuple[int, int], tile: int | None, overlap: int,
               device: str | None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    cpu_model = model.with_weights(model.trainable_copy()).to("cpu") if model.device.type != "cpu" else model
    proc = ctx.Process(target=_measure_child,
                       args=(cpu_model, hw, tile, overlap, device, torch.get_num_threads(), queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except Empty:
            if not proc.is_alive():  # killed (out of memory, say) before reporting
                result = {"error": f"measuring process died with exit code {proc.exitcode}"}
                break
    proc.join()
    return result


def peak_memory_tiled(
    model: ttasr.SRModel,
    size_hw: tuple[int, int] = (1080, 1920),
    tile: int = 512,
    overlap: int = 32,
    *,
    device: str | None = None,
    include_bare: bool = False,
) -> dict[str, Any]:
    """Peak CPU memory growth (MiB) of tiled enhance on an ``size_hw`` LR image.

    Measured in a fresh spawned process (see the module docstring). ``include_bare`` also
    measures the bare whole-image model call, which may need several GiB.
    """
    h, w = size_hw
    s = model.scale
    result: dict[str, Any] = {
        "lr": f"{h}x{w}",
        "hr": f"{h * s}x{w * s}",
        "tile": tile,
        "overlap": overlap,
        "tiles": _layout(h, w, tile, overlap, model.size_requirements.multiple_of)[0],
        "hr_float32_mb": round(3 * h * s * w * s * 4 / 2**20, 1),
        "tiled": _run_child(model, size_hw, tile, overlap, device),
    }
    if include_bare:
        result["bare"] = _run_child(model, size_hw, -1, overlap, device)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="span-x4")
    ap.add_argument("--size", default="256", help="LR size for the timing: 256 (square) or HxW")
    ap.add_argument("--tile", type=int, default=128, help="0: the whole image")
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--tile-batch", type=int, default=None, help="tiles per model call (default: enhance's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-size", default="1080x1920", help="LR HxW for the memory figure")
    ap.add_argument("--memory-tile", type=int, default=512)
    ap.add_argument("--bare-memory", action="store_true", help="also measure the bare whole-image call")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory figure")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None, help="fp32, fp16 or bf16 (default: enhance's)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="default: enhance's (on for CUDA)")
    args = ap.parse_args()
    model = default_model(args.model)
    size = _parse_hw(args.size)
    opts = {"device": args.device, "dtype": args.dtype, "channels_last": args.channels_last,
            "tile_batch": args.tile_batch}
    print(f"# {model.architecture} x{model.scale}, {model.num_parameters / 1e6:.2f} M params, "
          f"torch threads {torch.get_num_threads()}")
    print("single tile (machinery overhead):")
    print(time_tiled_vs_bare(model, size, tile=max(size), repeats=args.repeats, **opts))
    print(f"tiled {args.tile}/{args.overlap}:")
    print(time_tiled_vs_bare(model, size, tile=args.tile or None, repeats=args.repeats, overlap=args.overlap,
                             **opts))
    if args.no_memory:
        return
    mh, mw = _parse_hw(args.memory_size)
    print(f"peak memory, {mh}x{mw} LR:")
    print(peak_memory_tiled(model, (mh, mw), args.memory_tile, args.overlap, device=args.device,
                            include_bare=args.bare_memory))


if __name__ == "__main__":
    main()
