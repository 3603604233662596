"""Each proxy camera's kernel measured on a photo of the printed chart (no photo pairs).

    .venv/bin/python benchmarks/chart_kernel.py [--presets camera,...] [--seeds 0,1,2,3]
        [--sizes 512,1024] [--dark 0.25 --light 0.75] [--out outputs/chart] [--tone]

For every preset and seed (one camera each, as in ``selection.py``: seed 0 is the camera of the
proxy tables) the chart of ``ttasr chart`` (:func:`ttasr.pairs.chart_image`, a hexagon turned
5°) is drawn at each ``--sizes`` HR px, degraded by that camera to x``--scale``, and measured
by :func:`ttasr.pairs.calibrate_chart` (JPEG read from the pixels, as ``ttasr kernel --chart``
does with a PNG) and, for the presets with JPEG, by the plain fit too. Each cell gives the
kernel found and its error: the largest difference over all directions between the found and
the true Gaussian's width (HR px), or whether bicubic was recognised. ``<out>/<preset>.npy``
keeps the seed-0 kernel of the largest size, for ``selection.py --candidate
kernel_estimator=given --candidate kernel=<out>/<preset>.npy``.

``--tone`` prints instead what a camera's tone curve does to the measurement: the chart (at
several contrasts) is blurred in linear light (a 2.2 gamma undone, an isotropic Gaussian of
each ``--tone-sigmas``, subsampled) and encoded again, 8-bit, no noise; the kernel found is a
blur of the encoded values, as the pairs of SR training and of AdaSSR are.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from ttasr.degradations import degrade
from ttasr.degradations.kernels import (
    alignment_shift,
    degrade_with_kernel,
    gaussian_kernel,
    kernel_size_for,
)
from ttasr.pairs import calibrate_chart, chart_image, save_kernel

PRESETS = ("bicubic-clean", "optical-blur", "camera", "sensor-noise", "jpeg-heavy")


def width_error(found: dict, true: dict) -> float:
    """Largest ``|sigma_found(u) - sigma_true(u)|`` over unit directions ``u`` (HR px)."""

    def cov(sx: float, sy: float, th: float) -> torch.Tensor:
        r = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]], dtype=torch.float64)
        return r @ torch.diag(torch.tensor([sx * sx, sy * sy], dtype=torch.float64)) @ r.T

    a = cov(found["sigma_x"], found["sigma_y"], found["theta"])
    b = cov(true["sigma_x"], true["sigma_y"], true.get("theta", 0.0))
    t = torch.linspace(0, math.pi, 181, dtype=torch.float64)
    u = torch.stack([t.cos(), t.sin()], 1)
    wa = torch.einsum("ni,ij,nj->n", u, a, u).sqrt()
    wb = torch.einsum("ni,ij,nj->n", u, b, u).sqrt()
    return float((wa - wb).abs().max())


def cell(estimate, degraded) -> str:
    p = estimate.params
    if degraded.kernel is None:  # bicubic camera
        return "bicubic ✓" if p["family"] == "bicubic" else f"{p['sigma_x']:.2f}/{p['sigma_y']:.2f} ✗"
    if p["family"] == "bicubic":
        return "bicubic ✗"
    return f"{p['sigma_x']:.2f}/{p['sigma_y']:.2f} ±{width_error(p, degraded.params):.2f}"


def tone(args: argparse.Namespace) -> None:
    levels = [(0.4, 0.8), (args.dark, args.light), (0.1, 0.9)]
    sigmas = [float(v) for v in args.tone_sigmas.split(",")]
    shift = alignment_shift(args.scale)
    print("# gamma 2.2, blur in linear light; cells: sigma found (HR px; mean of the two axes) for the true one")
    print(f"{'dark/light (encoded)':<22}{'linear ratio':>13}" + "".join(f"{f'σ {v}':>9}" for v in sigmas))
    for dark, light in levels:
        hr = chart_image(max(int(v) for v in args.sizes.split(",")), dark=dark, light=light)
        cells = ""
        for sigma in sigmas:
            kernel = gaussian_kernel(kernel_size_for(sigma, shift), sigma, shift=shift).float()
            linear = degrade_with_kernel(hr**2.2, kernel, args.scale).clamp(0, 1)
            lr = (linear ** (1 / 2.2) * 255).round() / 255
            p = calibrate_chart([lr], args.scale, jpeg=None).params
            cells += f"{(p['sigma_x'] + p['sigma_y']) / 2:>9.3f}" if p["family"] == "gaussian" else f"{'bicubic':>9}"
        print(f"{f'{dark}/{light}':<22}{(light / dark) ** 2.2:>13.1f}{cells}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--sizes", default="512,1024", help="chart sizes in HR px (LR: size / scale)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--dark", type=float, default=0.25, help="the chart's polygon grey (ttasr chart's default)")
    ap.add_argument("--light", type=float, default=0.75, help="the chart's ground grey (ttasr chart's default)")
    ap.add_argument("--tone", action="store_true", help="the tone-curve table instead (see the docstring)")
    ap.add_argument("--tone-sigmas", default="0.8,1.2,1.6")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("outputs/chart"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.tone:
        tone(args)
        return
    sizes = [int(v) for v in args.sizes.split(",")]
    seeds = [int(v) for v in args.seeds.split(",")]
    charts = {size: chart_image(size, dark=args.dark, light=args.light) for size in sizes}
    print(f"# chart: hexagon at 5°, half the frame across, greys {args.dark}/{args.light}; x{args.scale}; cells: kernel found (σx/σy HR px) "
          "±largest width error over directions (HR px)")
    print(f"{'preset':<14}{'seed':>5}{'true':>14}{'JPEG q':>7}" + "".join(
        f"{f'{s} px: chart':>22}" + (f"{'plain fit':>18}") for s in sizes) + f"{'s/chart':>9}")
    for preset in [p for p in args.presets.split(",") if p]:
        for seed in seeds:
            row, seconds = "", 0.0
            for size in sizes:
                d = degrade(charts[size], args.scale, preset, seed=seed)
                t0 = time.perf_counter()
                found = calibrate_chart([d.lr], args.scale, jpeg="auto")
                seconds = time.perf_counter() - t0
                plain = calibrate_chart([d.lr], args.scale, jpeg=None) if d.params["jpeg_quality"] else None
                row += f"{cell(found, d):>22}" + f"{cell(plain, d) if plain else '':>18}"
                if seed == seeds[0] and size == sizes[-1]:
                    assert found.kernel is not None
                    save_kernel(args.out / f"{preset}.npy", found.kernel)
            t = d.params
            true = "bicubic" if d.kernel is None else f"{t['sigma_x']:.2f}/{t['sigma_y']:.2f}"
            print(f"{preset:<14}{seed:>5}{true:>14}{int(t['jpeg_quality']) or '-':>7}{row}{seconds:>9.1f}", flush=True)
    print(f"# kernels of seed {seeds[0]}, {sizes[-1]} px: {args.out}/<preset>.npy")


if __name__ == "__main__":
    main()
