"""Which part of AdaSSR's training harms a clean input? One photo, one configuration per row.

    .venv/bin/python benchmarks/clean_harm.py [--photo 3] [--preset bicubic-clean] [--steps 150]
        [--rows bicubic/none,bicubic/paper] [--threads 1]

On an input degraded as the model was trained (``bicubic-clean``) full adaptation loses up to
2 dB (benchmarks/RESULTS.md, *Selection rules*). This script adapts one proxy photo alone for ``--steps``
steps with each row's pair maker (``bicubic`` pairs, the ``estimated`` kernel, the preset's
``true`` kernel, or a Gaussian of a set width, ``gauss:1.4``) and
augmentations (``none``; ``paper``: the paper's, without USM and noise unless the row says
``+usm+noise``; ``-affine``: without the random scale; ``-photometric``: without the colour
ops), keeps the final weights, and prints PSNR-Y against the HR next to the unadapted model,
with the radial power spectrum of the output's luma in five bands as a fraction of the HR's (does the adapted model sharpen or smooth?). Rows differ in one setting
at a time so that each cause can be read off.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import ttasr  # noqa: E402
from adassr_proxy import load_photos  # noqa: E402
from ttasr.degradations import alignment_shift, degrade, gaussian_kernel, kernel_size_for  # noqa: E402
from ttasr.inference import enhance_tensor  # noqa: E402
from ttasr.metrics import psnr_y, rgb_to_y  # noqa: E402
from ttasr.pairs import AugmentConfig  # noqa: E402

PAIRS = ("bicubic", "estimated", "true", "gauss:SIGMA")
AUGMENTS: dict[str, dict[str, Any]] = {
    "none": dict(noise_augment="never", augment=False),
    "paper": dict(noise_augment="never", augment_config=AugmentConfig(usm_p=0.0)),
    "paper-affine": dict(noise_augment="never", augment_config=AugmentConfig(usm_p=0.0, affine_p=0.0)),
    "paper-photometric": dict(noise_augment="never", augment_config=AugmentConfig(usm_p=0.0, photometric_p=0.0)),
    "paper+usm+noise": dict(noise_augment="always"),
}
DEFAULT_ROWS = ("bicubic/none", "bicubic/paper", "bicubic/paper-affine", "bicubic/paper-photometric",
                "estimated/none", "estimated/paper+usm+noise")


def row_settings(row: str, true_kernel: torch.Tensor | None, scale: int) -> dict[str, Any]:
    """AdaSSR settings of a row ``<pairs>/<augmentations>``: pairs from ``bicubic`` resizing, the
    ``estimated`` kernel, the preset's ``true`` kernel or an isotropic ``gauss:SIGMA`` (HR px)."""
    pairs, _, aug = row.partition("/")
    if aug not in AUGMENTS:
        raise SystemExit(f"row {row!r}: augmentations must be one of {list(AUGMENTS)}")
    settings = dict(AUGMENTS[aug])
    if pairs == "bicubic":
        settings["kernel_estimator"] = "bicubic"
    elif pairs == "true":
        if true_kernel is None:
            raise SystemExit(f"row {row!r}: this preset has no kernel (bicubic resizing); use bicubic/...")
        settings.update(kernel_estimator="given", kernel=true_kernel.tolist())
    elif pairs.startswith("gauss:"):
        sigma = float(pairs.split(":", 1)[1])
        shift = alignment_shift(scale)
        kernel = gaussian_kernel(kernel_size_for(sigma, shift), sigma, shift=shift)
        settings.update(kernel_estimator="given", kernel=kernel.tolist())
    elif pairs != "estimated":
        raise SystemExit(f"row {row!r}: pairs must be one of {PAIRS}")
    return settings


BANDS = ((0.0, 0.125), (0.125, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.01))


def band_energy(image: torch.Tensor) -> list[float]:
    """Power of the luma's spectrum in radial ``BANDS`` (fractions of the Nyquist radius)."""
    luma = rgb_to_y(image)[0, 0] * 255
    power = torch.fft.fftshift(torch.fft.fft2(luma - luma.mean())).abs() ** 2
    h, w = power.shape
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    radius = (yy**2 + xx**2).sqrt() / (min(h, w) / 2)
    return [power[(radius >= lo) & (radius < hi)].sum().item() for lo, hi in BANDS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="span-x4")
    ap.add_argument("--photo", type=int, default=3, help="which proxy photo (1-based; 3: ColorfulCups)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--preset", default="bicubic-clean")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                    help=f"comma-separated <pairs>/<augmentations>: pairs {', '.join(PAIRS)}; "
                         f"augmentations {', '.join(AUGMENTS)}")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = ttasr.load_model(args.model)
    name, hr = load_photos(args.photo, args.size)[args.photo - 1]
    degraded = degrade(hr, model.scale, args.preset, seed=args.seed)
    lr = degraded.lr
    rows = {r: row_settings(r, degraded.kernel, model.scale) for r in args.rows.split(",") if r}  # bad rows fail first
    reference = band_energy(hr)
    print(f"# {args.model}, {name} ({args.size} px), {args.preset}, {args.steps} steps, final weights, "
          f"EMA 0.99, threads {args.threads}")
    print(f"{'':28s} PSNR-Y   gain   spectrum / HR's, bands {' '.join(f'{lo:g}-{min(hi, 1):g}' for lo, hi in BANDS)}")

    def show(tag: str, output: torch.Tensor, start: float | None) -> float:
        value = psnr_y(output, hr, model.scale)
        gain = "" if start is None else f"{value - start:+.2f}"
        bands = " ".join(f"{b / r:5.2f}" for b, r in zip(band_energy(output), reference))
        print(f"{tag:28s} {value:6.2f} {gain:>6s}   {bands}", flush=True)
        return value

    start = show("unadapted", enhance_tensor(model, lr), None)
    for tag in rows:
        adapter = ttasr.AdaSSR(model, max_steps=args.steps, eval_every=args.steps, stopping="fixed", blend=1.0,
                               ema_decay=0.99, progress=False, seed=args.seed, **rows[tag]).fit([lr])
        show(tag, enhance_tensor(adapter.adapted_model(), lr), start)


if __name__ == "__main__":
    main()
