"""Speed and memory of ttasr against bare PyTorch, side by side in one run.

    .venv/bin/python benchmarks/speed.py [--model span-x4] [--steps 20] [--device cpu]

(a) one adaptation step of ttasr (InternalLearning; and with EMA + proximal term as AdaSSR
    uses them) against a bare forward/backward/Adam step of the same model and batch;
    target: within 15 %.
(b) tiled ``ttasr.enhance`` against the bare model call on an image both can handle;
    target: within 10 %.
(c) peak memory of tiled enhance on a 2K image (1080x1920 LR... see speed_enhance.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ttasr  # noqa: E402
from ttasr import Callback, InternalLearning  # noqa: E402
from ttasr.models import forward  # noqa: E402


def _model(name: str) -> ttasr.SRModel:
    try:
        return ttasr.load_model(name)
    except ttasr.TTASRError as exc:
        print(f"# {name} unavailable ({exc}); using a tiny Compact x4 instead")
        from spandrel.architectures.Compact import Compact

        return ttasr.load_model(Compact(num_in_ch=3, num_out_ch=3, num_feat=32, num_conv=8, upscale=4))


class _StepTimer(Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_step(self, adapter, step, loss):
        self.stamps.append(time.perf_counter())


def time_adapter_step(model: ttasr.SRModel, image: torch.Tensor, steps: int, device: str, **cfg) -> float:
    """Median seconds per ttasr adaptation step (sampling, loss, backward, Adam, EMA)."""
    timer = _StepTimer()
    InternalLearning(model, max_steps=steps + 3, device=device, progress=False, eval_every=10_000,
                     **cfg).fit(image, callbacks=[timer])
    gaps = [b - a for a, b in zip(timer.stamps, timer.stamps[1:])][2:]  # skip warm-up
    return statistics.median(gaps)


def time_bare_step(model: ttasr.SRModel, batch: int, patch: int, steps: int, device: str) -> float:
    """Median seconds of a bare forward/backward/Adam step on a fixed random batch."""
    net = model.trainable_copy().to(device)
    opt = torch.optim.Adam([p for p in net.parameters()], lr=1e-4)
    x = torch.rand(batch, 3, patch, patch, device=device)
    y = torch.rand(batch, 3, patch * model.scale, patch * model.scale, device=device)
    times = []
    for _ in range(steps + 3):
        t = time.perf_counter()
        loss = (forward(net, x) - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times[3:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="span-x4")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--skip-enhance", action="store_true", help="only part (a)")
    ap.add_argument("--no-bare", action="store_true", help="(c) without the bare whole-image call (~9 GiB)")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = _model(args.model)
    print(f"# model {model.architecture} x{model.scale} ({model.num_parameters / 1e6:.2f} M params), "
          f"device {args.device}, torch threads {torch.get_num_threads()}")
    from skimage import data

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    batch, patch = 4, 48
    bare = time_bare_step(model, batch, patch, args.steps, args.device)
    ours = time_adapter_step(model, img, args.steps, args.device, batch_size=batch, patch_size=patch,
                             ema_decay=None)
    ours_ema = time_adapter_step(model, img, args.steps, args.device, batch_size=batch, patch_size=patch,
                                 ema_decay=0.999, proximal_weight=1e-4)
    print("\n(a) adaptation step, batch 4 of 48x48 LR patches (median seconds per step)")
    print(f"{'bare fwd/bwd/Adam':<34}{bare:>10.4f}")
    print(f"{'ttasr InternalLearning':<34}{ours:>10.4f}   {100 * (ours / bare - 1):+6.1f} %  (target <= +15 %)")
    print(f"{'ttasr + EMA + proximal (AdaSSR)':<34}{ours_ema:>10.4f}   {100 * (ours_ema / bare - 1):+6.1f} %")
    if args.skip_enhance:
        return
    import speed_enhance

    print("\n(b) ttasr.enhance vs the bare model call (median seconds; same image, same model)")
    print(f"{'case':<40}{'bare':>9}{'enhance':>9}{'overhead':>10}{'max |diff|':>12}")
    for label, size, tile, overlap in (("256x256, one tile (machinery only)", 256, 512, 32),
                                       ("384x384, 4 tiles of 256, overlap 32", 384, 256, 32)):
        r = speed_enhance.time_tiled_vs_bare(model, size=size, tile=tile, overlap=overlap, repeats=3)
        print(f"{label:<40}{r['bare_s']:>9.3f}{r['tiled_s']:>9.3f}{r['overhead_pct']:>+9.1f}%"
              f"{r['max_abs_diff']:>12.1e}   (tiles cover {r['compute_ratio']}x the pixels)")
    print("  target: one-tile overhead within 10 %")
    print("\n(c) peak CPU memory growth (MiB), 2K LR image 1080x1920 -> 4320x7680 output")
    m = speed_enhance.peak_memory_tiled(model, (1080, 1920), tile=512, overlap=32, include_bare=not args.no_bare)
    print(f"output buffer alone: {m['hr_float32_mb']} MiB float32")
    for name in ("tiled", "bare"):
        if name in m:
            r = m[name]
            print(f"{name:<8} peak +{r.get('peak_rss_increase_mb', r)} MiB, {r.get('seconds', '?')} s")


if __name__ == "__main__":
    main()
