"""Does AdaSSR's kernel estimate follow the degradation? Estimated vs true blur per proxy preset.

    .venv/bin/python benchmarks/kernel_estimates.py [--model span-x4] [--images 4] [--size 768]

AdaSSR's default pairs ``y_d = D_k̂(y)`` use :class:`ttasr.pairs.ConsistencyKernelEstimator`,
the Gaussian ``k̂`` minimising ``‖D_k(N(y)) − y‖``. This script prints, for every preset of the
proxy benchmark (one camera per preset: seed ``--seed``, the photos of ``adassr_proxy.py``):

* **estimate**: ``k̂``'s geometric-mean sigma (HR pixels) on the real LR ``y``, next to the true one;
* **fit**: RMSE (8-bit levels) of ``D_k̂(N(y))`` against ``y`` on the estimator's crops, and of
  the model's own training degradation, MATLAB bicubic ``imresize(N(y), 1/s)``;
* **pair σ**: another model-based estimate, the sigma of the internal pairs the unadapted model
  already inverts best, ``argmin_σ ‖N(D_σ(y)) − y‖`` over ``--pair-grid`` (the step-0 loss of
  AdaSSR's pairs, L1 away from the borders), next to the same error for bicubic pairs;
* **cal. σ**: not blind: :func:`ttasr.pairs.calibrate_kernel` on the (HR, LR) pair itself,
  through the preset's JPEG where it has one (``ttasr kernel`` reads it from the file), the
  measurement a user with a few registered pairs of the camera can make; ``bic`` where bicubic
  downscaling fits better than every Gaussian;
* **calibration**: the estimate on LR images whose blur is known: the SR output of a 128-px
  textured region, blurred with sigma ``--grid`` and subsampled. An estimator that measures the
  image's blur must rise along that row.

Results also go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import ttasr  # noqa: E402
from adassr_proxy import load_photos, save  # noqa: E402
from ttasr.degradations import degrade  # noqa: E402
from ttasr.degradations.kernels import alignment_shift, degrade_with_kernel, gaussian_kernel, imresize, kernel_size_for  # noqa: E402
from ttasr.pairs import ConsistencyKernelEstimator, calibrate_kernel  # noqa: E402
from ttasr.pairs.estimation import select_textured_crops  # noqa: E402

PRESETS = ("bicubic-clean", "optical-blur", "camera", "sensor-noise", "jpeg-heavy")


def geometric_sigma(params: dict) -> float:
    return math.sqrt(params["sigma_x"] * params["sigma_y"])


def gaussian(sigma: float, scale: int) -> torch.Tensor:
    shift = alignment_shift(scale)
    return gaussian_kernel(kernel_size_for(sigma, shift), sigma, shift=shift)


def crop_rmse(y: torch.Tensor, sr_fn, degrade_fn, estimator: ConsistencyKernelEstimator) -> float:
    """RMSE in 8-bit levels of ``degrade_fn(N(crop))`` against the crop, on the estimator's crops."""
    m, size, errors = estimator.margin, estimator.crop_size, []
    for top, left in select_textured_crops(y, size, estimator.crops):
        crop = y[..., top:top + size, left:left + size]
        with torch.no_grad():
            back = degrade_fn(sr_fn(crop))
        errors.append(float((back - crop)[..., m:-m, m:-m].square().mean()))
    return 255 * math.sqrt(sum(errors) / len(errors))


def pair_sigma(y: torch.Tensor, sr_fn, scale: int, grid: list[float],
               margin: int = 8) -> tuple[float, float, float]:
    """``(argmin σ, its error, bicubic pairs' error)`` of ``‖N(D_σ(y)) − y‖₁`` in 8-bit levels."""
    h, w = y.shape[-2] // scale * scale, y.shape[-1] // scale * scale
    y = y[..., :h, :w]

    def error(inp: torch.Tensor) -> float:
        with torch.no_grad():
            out = sr_fn(inp)
        return 255 * float((out - y)[..., margin:-margin, margin:-margin].abs().mean())

    errors = [error(degrade_with_kernel(y, gaussian(g, scale), scale)) for g in grid]
    k = min(range(len(grid)), key=errors.__getitem__)
    return grid[k], errors[k], error(imresize(y, size=(h // scale, w // scale)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="span-x4")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--grid", default="0.6,0.9,1.2,1.5,1.8,2.2", help="calibration sigmas, HR pixels")
    ap.add_argument("--pair-grid", default="0.6,0.8,1.0,1.2,1.4,1.6,1.8,2.0,2.4",
                    help="pair σ: sigmas of the internal pairs tried, HR pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("outputs/kernel_estimates.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = ttasr.load_model(args.model)
    s = model.scale
    sr_fn = lambda t: model(t).clamp(0, 1)  # noqa: E731
    estimator = ConsistencyKernelEstimator(sr_fn=sr_fn)
    grid = [float(v) for v in args.grid.split(",")]
    pair_grid = [float(v) for v in args.pair_grid.split(",")]
    photos = load_photos(args.images, args.size)
    results: dict = {"model": args.model, "grid": grid, "presets": {}}
    print(f"{'preset':<14}{'photo':<14}{'true σ':>7}{'est. σ':>8}{'cal. σ':>8}{'RMSE k̂':>8}{'RMSE bic':>9}"
          f"{'pair σ':>8}{'L1 σ':>7}{'L1 bic':>7}"
          f"   estimate on the SR output blurred with σ = {', '.join(map(str, grid))}")
    for preset in [p for p in args.presets.split(",") if p]:
        rows = results["presets"].setdefault(preset, [])
        for name, hr in photos:
            d = degrade(hr, s, preset, seed=args.seed)
            est = estimator.estimate(d.lr, s)
            assert est.kernel is not None
            (top, left), = select_textured_crops(d.lr, 128, 1)
            with torch.no_grad():
                pseudo_hr = sr_fn(d.lr[..., top:top + 128, left:left + 128])
            calibration = [geometric_sigma(estimator.estimate(
                degrade_with_kernel(pseudo_hr, gaussian(g, s), s).clamp(0, 1), s).params) for g in grid]
            row = {
                "photo": name,
                "true_sigma": None if d.kernel is None else geometric_sigma(d.params),
                "estimated_sigma": geometric_sigma(est.params),
                "rmse_estimate": crop_rmse(d.lr, sr_fn, lambda x: degrade_with_kernel(x, est.kernel, s), estimator),
                "rmse_bicubic": crop_rmse(d.lr, sr_fn, lambda x: imresize(x, 1.0 / s), estimator),
                "calibration": calibration,
            }
            row["pair_sigma"], row["pair_l1"], row["pair_l1_bicubic"] = pair_sigma(d.lr, sr_fn, s, pair_grid)
            cal = calibrate_kernel([(hr, d.lr)], s, jpeg=int(d.params["jpeg_quality"]) or None).params
            row["calibrated_sigma"] = None if cal["family"] == "bicubic" else geometric_sigma(cal)
            calibrated = "bic" if row["calibrated_sigma"] is None else f"{row['calibrated_sigma']:.2f}"
            rows.append(row)
            true = "bic" if row["true_sigma"] is None else f"{row['true_sigma']:.2f}"
            print(f"{preset:<14}{name[:13]:<14}{true:>7}{row['estimated_sigma']:>8.2f}{calibrated:>8}"
                  f"{row['rmse_estimate']:>8.2f}"
                  f"{row['rmse_bicubic']:>9.2f}{row['pair_sigma']:>8.2f}{row['pair_l1']:>7.2f}"
                  f"{row['pair_l1_bicubic']:>7.2f}   " + " ".join(f"{c:.2f}" for c in calibration), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save(args.out, results)
    print("\nmean estimated σ per preset: " + ", ".join(
        f"{p} {sum(r['estimated_sigma'] for r in rows) / len(rows):.2f}" for p, rows in results["presets"].items()))
    print("mean pair σ per preset: " + ", ".join(
        f"{p} {sum(r['pair_sigma'] for r in rows) / len(rows):.2f}" for p, rows in results["presets"].items()))


if __name__ == "__main__":
    main()
