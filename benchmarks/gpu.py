"""GPU speed of ttasr against the bare model, side by side in one run (issue: fast on the GPU).

    python benchmarks/gpu.py [--models realesrgan-x4plus,span-x4] [--weights-dir .gpuw]
        [--images 8] [--workers 8] [--out outputs/gpu] [--compile]
    python benchmarks/gpu.py --smoke          # CPU, tiny models, seconds (the test suite runs it)

Prints one table per section and writes ``<out>/results.json`` after every figure (atomic):

* **enhance**: the bare model (weights cast to the dtype once, channels_last on CUDA, no
  padding, tiling, blending or clamping, output left on the device) against
  :func:`ttasr.inference.enhance_tensor` at the default tile (512) and whole-image, on a
  480x640 LR photo, per dtype. Median of repeated runs after warm-up, synchronised.
* **step**: a bare forward/backward/Adam step on a fixed batch (4 crops of 48² LR) against an
  AdaSSR step of the same model and batch size (pair sampling and augmentation, attention
  weights, EMA, proximal term), per setting (fp32 / bf16 autocast, channels_last). The
  AdaSSR step is ``(t(n2) - t(n1)) / (n2 - n1)`` from two fits of n1 and n2 steps (fixed
  budget, no evaluation), so warm-up and preparation cancel.
* **images**: seconds per image for 1,500 AdaSSR steps, one at a time (in this process) and
  ``--workers`` at a time (``workers_per_gpu``), from one fit of n2 steps per image: the
  loops' own clocks give the amortised step, the rest of the wall time is per-image
  overhead, and ``per image = overhead + 1500 x amortised step``. The 1,500-step figure is a
  projection from those measurements, not a 1,500-step run (which would not fit the five
  minutes).
* peak memory (``torch.cuda.max_memory_allocated`` of this process; worker processes are not
  included) per row.

Weights: ``--weights-dir`` holds ``<name>.fp16.safetensors`` files (an fp16 copy travels to a
GPU machine under the 64 MiB limit; they are cast back to float32 here); otherwise
``ttasr.load_model(name)``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ttasr  # noqa: E402
from ttasr._fs import atomic_write_bytes  # noqa: E402
from ttasr.inference import enhance_tensor  # noqa: E402
from ttasr.models import forward  # noqa: E402

RESULTS: dict[str, Any] = {"rows": []}


# ------------------------------------------------------------------------------ helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn`` over ``repeats`` synchronised runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def record(out: Path, section: str, **row: Any) -> None:
    row = {"section": section, **row}
    RESULTS["rows"].append(row)
    atomic_write_bytes(out / "results.json", json.dumps(RESULTS, indent=1).encode())
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
    print(json.dumps(shown), flush=True)


def photo(h: int, w: int) -> torch.Tensor:
    """A natural photo (scikit-image's coffee) resized to ``h x w``, 1x3xHxW in [0, 1]."""
    from skimage import data

    img = torch.from_numpy(data.coffee()).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(img, size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def load(name: str, weights_dir: Path | None) -> ttasr.SRModel:
    if name.startswith("tiny-"):
        return tiny(name)
    path = weights_dir / f"{name}.fp16.safetensors" if weights_dir else None
    model = ttasr.load_model(str(path) if path is not None and path.exists() else name)
    model.module.float()
    return model


def tiny(name: str) -> ttasr.SRModel:
    """Small random networks for --smoke (no weights needed)."""
    torch.manual_seed(0)
    if name == "tiny-compact":
        from spandrel.architectures.Compact import Compact

        return ttasr.load_model(Compact(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=4))
    from spandrel.architectures.SPAN import SPAN

    return ttasr.load_model(SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=4))


# ------------------------------------------------------------------------------ sections
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def bench_enhance(model: ttasr.SRModel, name: str, device: torch.device, size: tuple[int, int], repeats: int,
                  out: Path) -> None:
    x = photo(*size).to(device)
    cl = device.type == "cuda"
    for label, dtype in DTYPES.items():
        if not model.supports(dtype) or (device.type == "cpu" and dtype != torch.float32):
            continue
        bare_net = model.with_weights(model.trainable_copy()).module.to(device, dtype).eval().requires_grad_(False)
        if cl:
            bare_net = bare_net.to(memory_format=torch.channels_last)
        xd = x.to(dtype).contiguous(memory_format=torch.channels_last) if cl else x.to(dtype)

        def bare() -> torch.Tensor:
            with torch.inference_mode():
                return forward(bare_net, xd)

        peak_reset(device)
        t_bare = timed(bare, device, repeats)
        row: dict[str, Any] = {"model": name, "dtype": label, "lr": f"{size[0]}x{size[1]}", "bare_s": t_bare,
                               "bare_peak_gib": peak_gib(device)}
        del bare_net
        placed = model.with_weights(model.trainable_copy())
        placed.module.to(device).requires_grad_(False)
        for tile_label, tile in (("tile512", 512), ("whole", None)):
            peak_reset(device)
            t = timed(lambda tile=tile: enhance_tensor(placed, x, tile=tile, dtype=dtype, clamp=False), device,
                      repeats)
            row[f"enhance_{tile_label}_s"] = t
            row[f"enhance_{tile_label}_vs_bare"] = t_bare / t
            row[f"enhance_{tile_label}_peak_gib"] = peak_gib(device)
        record(out, "enhance", **row)
        del placed
        if device.type == "cuda":
            torch.cuda.empty_cache()


def bare_step_seconds(model: ttasr.SRModel, device: torch.device, amp: bool, cl: bool, steps: int,
                      batch: int = 4, patch: int = 48) -> float:
    """Seconds of a bare Adam step: forward, L1, backward, step, on one fixed batch."""
    net = model.trainable_copy().to(device)
    if cl:
        net = net.to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4, fused=device.type == "cuda" or None)
    s = model.scale
    img = photo(patch * s * 2, patch * s * 2).to(device)
    y = torch.cat([img[..., :patch * s, :patch * s], img[..., patch * s:, patch * s:]] * (batch // 2))
    x = F.interpolate(y, scale_factor=1 / s, mode="bicubic", antialias=True, align_corners=False)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = (forward(net, x) - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t0) / steps


PATCH = 48
"""LR patch side of the step and images sections (--smoke makes it small)."""
SMOKE_CFG: dict[str, Any] = {}
"""AdaSSR settings --smoke adds: bicubic pairs (the kernel estimate costs seconds on a CPU)."""


def adassr(model: ttasr.SRModel, device: torch.device, steps: int, **cfg: Any) -> ttasr.AdaSSR:
    base = dict(max_steps=steps, stopping="fixed", eval_every=10**6, progress=False, device=str(device),
                attention="features", seed=0, patch_size=PATCH, **SMOKE_CFG)
    return ttasr.AdaSSR(model, **{**base, **cfg})


def adassr_step_seconds(model: ttasr.SRModel, device: torch.device, image: torch.Tensor, n1: int, n2: int,
                        fits: int = 1, **cfg: Any) -> tuple[float, float]:
    """(seconds per AdaSSR step, seconds of a whole n1-step fit) from fits of n1 and n2 steps;
    with ``fits`` > 1, the fastest of that many fits of each length (load from other
    processes only ever adds time)."""
    times = []
    for n in (n1, n2):
        runs = []
        for _ in range(fits):
            t0 = time.perf_counter()
            ad = adassr(model, device, n, **cfg).fit(image)
            sync(device)
            runs.append((time.perf_counter() - t0, ad.results[0].seconds))
        times.append((min(w for w, _ in runs), min(loop for _, loop in runs)))
    step = (times[1][1] - times[0][1]) / (n2 - n1)
    return step, times[0][0]


def bench_step(model: ttasr.SRModel, name: str, device: torch.device, n1: int, n2: int, compile_too: bool,
               out: Path, fits: int = 1) -> dict[str, float]:
    """Bare step vs AdaSSR step per setting; returns the AdaSSR step of each setting."""
    image = photo(4 * PATCH, 4 * PATCH)
    settings = [("fp32", False, False, False)]
    if device.type == "cuda":
        settings = [("fp32", False, False, False), ("fp32+cl", False, True, False), ("bf16+cl", True, True, False)]
        if compile_too:
            settings.append(("bf16+cl+compile", True, True, True))
    found = {}
    for label, amp, cl, comp in settings:
        peak_reset(device)
        bare = bare_step_seconds(model, device, amp, cl, steps=max(10, n2 - n1), patch=PATCH)
        cfg = dict(amp="bf16" if amp else "off", channels_last=cl, compile=comp)
        step, fit_n1 = adassr_step_seconds(model, device, image, n1, n2, fits=fits, **cfg)
        found[label] = step
        record(out, "step", model=name, setting=label, bare_step_s=bare, adassr_step_s=step,
               ratio=step / bare, adassr_fit_s_at_n1=fit_n1, n1=n1, n2=n2, peak_gib=peak_gib(device))
    return found


def bench_images(model: ttasr.SRModel, name: str, device: torch.device, images: int, workers: list[int],
                 steps: int, setting: dict[str, Any], out: Path) -> None:
    """Seconds per image at 1,500 steps, one at a time and with workers.

    From one fit of ``steps`` steps per image: the training loops' own clocks give the
    step rate (one at a time: the sum of the loops' seconds; with workers: from the first
    loop's start to the last loop's end, which counts staggered starts against the
    workers); everything else in the wall time (process start, model copies, kernel and
    attention estimation) is the per-image overhead. Projection: overhead + 1,500 steps."""
    photos = [photo(4 * PATCH, 4 * PATCH).roll(17 * i, dims=-1) for i in range(images)]
    for k in workers:
        count = min(images, 2) if k == 1 else images  # one at a time: two images give the rate
        t0 = time.perf_counter()
        ad = adassr(model, device, steps, mode="single", workers_per_gpu=k, **setting).fit(photos[:count])
        sync(device)
        wall = time.perf_counter() - t0
        results = ad.results
        if k == 1:
            busy = sum(r.seconds for r in results)
        else:
            busy = max(r.started + r.seconds for r in results) - min(r.started for r in results)
        step = busy / (count * steps)
        overhead = (wall - busy) / count
        record(out, "images", model=name, workers=k, images=count, setting=json.dumps(setting), steps=steps,
               wall_s=wall, training_s=busy, amortised_step_s=step, per_image_overhead_s=overhead,
               s_per_image_1500=overhead + 1500 * step)


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny models, a few steps (for the tests)")
    ap.add_argument("--models", default="realesrgan-x4plus,span-x4")
    ap.add_argument("--weights-dir", type=Path, default=Path(".gpuw"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--workers", default="1,8", help="worker counts for the images section")
    ap.add_argument("--steps", default="20,100", help="n1,n2: the step section times fits of n1 and n2 steps; "
                    "the images section fits n2 steps per image")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sections", default="enhance,step,images")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile in the step section")
    ap.add_argument("--out", type=Path, default=Path("outputs/gpu"))
    a = ap.parse_args(argv)
    global PATCH
    if a.smoke:
        PATCH = 16
        SMOKE_CFG["kernel_estimator"] = "bicubic"
        a.device, a.models, a.images, a.workers, a.steps, a.repeats = "cpu", "tiny-span", 2, "1,2", "2,8", 1
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n1, n2 = (int(v) for v in a.steps.split(","))
    sections = [sec for sec in a.sections.split(",") if sec]
    if unknown := set(sections) - {"enhance", "step", "images"}:
        ap.error(f"unknown sections {sorted(unknown)}: use enhance, step, images")
    a.out.mkdir(parents=True, exist_ok=True)
    RESULTS["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    RESULTS["torch"] = torch.__version__
    RESULTS["args"] = {k: str(v) for k, v in vars(a).items()}
    print(f"# device: {RESULTS['device']}, torch {torch.__version__}", flush=True)
    size = (48, 64) if a.smoke else (480, 640)
    failures = 0
    for name in a.models.split(","):
        try:
            model = load(name, a.weights_dir)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next model
            record(a.out, "error", model=name, error=f"load: {exc}")
            failures += 1
            continue
        steps: dict[str, float] = {}

        def images_job() -> None:
            best = min(steps, key=steps.__getitem__) if steps else "fp32"
            setting = {"amp": "bf16" if "bf16" in best else "off", "channels_last": "cl" in best}
            bench_images(model, name, device, a.images, [int(k) for k in a.workers.split(",")], n2, setting,
                         a.out)

        known: dict[str, Callable[[], Any]] = {
            "enhance": lambda: bench_enhance(model, name, device, size, a.repeats, a.out),
            "step": lambda: steps.update(bench_step(model, name, device, n1, n2, a.compile, a.out,
                                                    fits=3 if a.smoke else 1)),
            "images": images_job,
        }
        jobs = [(sec, known[sec]) for sec in sections]
        for section, job in jobs:
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - one failing figure must not lose the others
                import traceback

                traceback.print_exc()
                record(a.out, "error", model=name, error=f"{section}: {type(exc).__name__}: {exc}")
                failures += 1
        del model
    print_tables(RESULTS)
    return 1 if failures else 0


def print_tables(results: dict[str, Any]) -> None:
    rows = results["rows"]
    print(f"\n## GPU benchmark on {results['device']} (torch {results['torch']})\n")
    en = [r for r in rows if r["section"] == "enhance"]
    if en:
        print("| model | dtype | bare s | enhance tile 512 s (x bare throughput) | whole s (x) | peak GiB |")
        print("|---|---|---|---|---|---|")
        for r in en:
            peak = r.get("enhance_tile512_peak_gib")
            print(f"| {r['model']} | {r['dtype']} | {r['bare_s']:.4f} | {r['enhance_tile512_s']:.4f} "
                  f"({r['enhance_tile512_vs_bare']:.2f}) | {r['enhance_whole_s']:.4f} "
                  f"({r['enhance_whole_vs_bare']:.2f}) | {peak if peak is None else round(peak, 2)} |")
    st = [r for r in rows if r["section"] == "step"]
    if st:
        print("\n| model | setting | bare step s | AdaSSR step s | ratio | peak GiB |")
        print("|---|---|---|---|---|---|")
        for r in st:
            peak = r["peak_gib"]
            print(f"| {r['model']} | {r['setting']} | {r['bare_step_s']:.4f} | {r['adassr_step_s']:.4f} | "
                  f"{r['ratio']:.2f} | {peak if peak is None else round(peak, 2)} |")
    im = [r for r in rows if r["section"] == "images"]
    if im:
        print("\n| model | workers | images | steps | wall s | amortised step s | overhead s/image | "
              "s/image at 1,500 steps |")
        print("|---|---|---|---|---|---|---|---|")
        for r in im:
            print(f"| {r['model']} | {r['workers']} | {r['images']} | {r['steps']} | {r['wall_s']:.1f} | "
                  f"{r['amortised_step_s']:.4f} | {r['per_image_overhead_s']:.2f} | {r['s_per_image_1500']:.1f} |")
    for r in rows:
        if r["section"] == "error":
            print(f"\nERROR {r['model']}: {r['error']}")


if __name__ == "__main__":
    raise SystemExit(main())
