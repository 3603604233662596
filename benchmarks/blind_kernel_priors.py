"""Two blind blur estimators from image priors alone (no SR model): do they follow the blur?

    .venv/bin/python benchmarks/blind_kernel_priors.py [--images 8] [--size 512] [--sigmas 0.8,1.0,1.2,1.4,1.6,2.0]

The consistency estimate of AdaSSR's pairs reads the model, not the camera (benchmarks/RESULTS.md,
*Selection rules*). An estimator that sees the blur needs an image prior. Two classic ones,
each returning one isotropic width, are tried here on LR images of known blur (each proxy
photo, ``--size`` px, blurred with an isotropic Gaussian of each ``--sigmas`` HR px and
subsampled x``--scale``, no noise) and on the proxy presets' LR (seed ``--seed``):

* **spectrum**: the luma's radially averaged power spectrum (Welch, 64-px Hann tiles) fitted
  on ``[0.06, 0.36]`` cycles/px by ``A f^-beta exp(-4 pi^2 s^2 f^2) + N`` (a power-law scene
  through a Gaussian, plus white noise); prints ``s`` in HR px (``scale * s``). A scene whose
  spectrum bends reads as blur.
* **recurrence** (cross-scale patch recurrence, after Michaeli and Irani, ICCV 2013): the
  width ``t`` (LR px) of the Gaussian that, before a x2 subsampling, makes the most textured
  5x5 patches of the LR (top ``--top`` by variance, mean removed, 3,000 of them) recur best in
  the subsampled image (lowest RMS distance to their nearest neighbour). If the scene is
  self-similar across scales, ``t = sqrt(3) s / scale``: about ``0.43 s`` for x4.

An estimator usable for AdaSSR's pairs must rise with ``s`` on every photo, with an offset that
does not depend on the photo (the pairs' kernel has to be right to about 0.2 HR px; benchmarks/RESULTS.md,
*The kernel decides*). The last lines give, per ``s``, the range over the photos.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from adassr_proxy import load_photos  # noqa: E402
from ttasr.degradations import degrade  # noqa: E402
from ttasr.degradations.kernels import alignment_shift, degrade_with_kernel, gaussian_kernel, kernel_size_for  # noqa: E402
from ttasr.pairs.augment import _gray  # noqa: E402

PRESETS = ("bicubic-clean", "optical-blur", "camera", "sensor-noise", "jpeg-heavy")


def gaussian(sigma: float, scale: int) -> torch.Tensor:
    shift = alignment_shift(scale)
    return gaussian_kernel(kernel_size_for(sigma, shift), sigma, shift=shift)


def radial_spectrum(y: np.ndarray, tile: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Welch estimate of the radially averaged power spectrum of ``y`` (HxW), per 1/tile band."""
    window = np.outer(np.hanning(tile), np.hanning(tile))
    power, count = np.zeros((tile, tile)), 0
    for i in range(0, y.shape[0] - tile + 1, tile // 2):
        for j in range(0, y.shape[1] - tile + 1, tile // 2):
            t = y[i:i + tile, j:j + tile]
            power += np.abs(np.fft.fft2((t - t.mean()) * window)) ** 2
            count += 1
    power /= count
    f = np.fft.fftfreq(tile)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    bands = np.arange(1, tile // 2 + 1) / tile
    return bands, np.array([power[np.abs(radius - b) < 0.5 / tile].mean() for b in bands])


def spectrum_width(y: np.ndarray, lo: float = 0.06, hi: float = 0.36) -> float:
    """``s`` (LR px) of the best ``A f^-beta exp(-4 pi^2 s^2 f^2) + N`` fit of the spectrum."""
    bands, power = radial_spectrum(y)
    keep = (bands >= lo) & (bands <= hi)
    f, p = bands[keep], power[keep]
    design = np.stack([np.ones_like(f), np.log(f)], 1)
    best, width = math.inf, 0.0
    for noise in [0.0, *(p.min() * r for r in np.linspace(0.02, 0.95, 30))]:
        signal = p - noise
        if (signal <= 0).any():
            continue
        for s in np.arange(0.0, 0.8, 0.005):
            target = np.log(signal) + 4 * math.pi ** 2 * s * s * f * f
            coef, *_ = np.linalg.lstsq(design, target, rcond=None)
            err = float(((design @ coef - target) ** 2).sum())
            if err < best:
                best, width = err, float(s)
    return width


def recurrence_width(y: torch.Tensor, taus: np.ndarray, top: float, patches: int = 3000,
                     seed: int = 0) -> float:
    """``t`` (LR px) whose x2 downscaling makes the textured patches of ``y`` recur best."""
    def unfold(img: torch.Tensor) -> torch.Tensor:
        p = F.unfold(img, 5)[0].T
        return p - p.mean(1, keepdim=True)

    raw = F.unfold(y, 5)[0].T
    order = torch.argsort(raw.var(1), descending=True)[: max(1, int(len(raw) * top))]
    pick = order[torch.randperm(len(order), generator=torch.Generator().manual_seed(seed))[:patches]]
    queries = unfold(y)[pick]
    scores = []
    for t in taus:
        small = degrade_with_kernel(y, gaussian(float(t), 2), 2)
        scores.append(float(torch.cdist(queries, unfold(small)).min(1).values.square().mean().sqrt()))
    return float(taus[int(np.argmin(scores))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--sigmas", default="0.8,1.0,1.2,1.4,1.6,2.0")
    ap.add_argument("--top", type=float, default=0.2, help="recurrence: fraction of most textured patches")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s = args.scale
    sigmas = [float(v) for v in args.sigmas.split(",")]
    taus = np.round(np.arange(0.1, 1.55, 0.1), 2)
    print(f"# {args.images} photos, {args.size} px, x{s}. spectrum: s in HR px (fit grid 0-{4 * 0.795:.2f}); "
          f"recurrence: t in LR px (grid {taus[0]}-{taus[-1]}; self-similar expectation {math.sqrt(3) / s:.2f} s)")
    header = "".join(f"{v:>6}" for v in sigmas) + "  | " + " ".join(f"{p[:9]:>9}" for p in PRESETS)
    print(f"{'photo':<14}{'estimator':<12}{header}")
    sweep: dict[str, list[list[float]]] = {"spectrum": [], "recurrence": []}
    for name, hr in load_photos(args.images, args.size):
        rows: dict[str, list[float]] = {"spectrum": [], "recurrence": []}
        presets: dict[str, list[str]] = {"spectrum": [], "recurrence": []}
        for sigma in sigmas:
            lr = degrade_with_kernel(hr, gaussian(sigma, s), s).clamp(0, 1)
            rows["spectrum"].append(s * spectrum_width(_gray(lr)[0, 0].double().numpy() * 255))
            rows["recurrence"].append(recurrence_width(_gray(lr) * 255, taus, args.top, seed=args.seed))
        for preset in PRESETS:
            d = degrade(hr, s, preset, seed=args.seed)
            true = "bic" if d.kernel is None else f"{math.sqrt(d.params['sigma_x'] * d.params['sigma_y']):.2f}"
            presets["spectrum"].append(f"{s * spectrum_width(_gray(d.lr)[0, 0].double().numpy() * 255):.2f}/{true}")
            presets["recurrence"].append(f"{recurrence_width(_gray(d.lr) * 255, taus, args.top, seed=args.seed):.1f}/{true}")
        for key in rows:
            sweep[key].append(rows[key])
            print(f"{name[:13]:<14}{key:<12}" + "".join(f"{v:>6.2f}" for v in rows[key]) + "  | "
                  + " ".join(f"{v:>9}" for v in presets[key]), flush=True)
    for key, table in sweep.items():
        arr = np.array(table)
        rising = int(sum(all(b >= a for a, b in zip(r, r[1:])) and r[-1] > r[0] for r in arr))
        print(f"\n{key}: range over the photos per s: " + ", ".join(
            f"{sg}: {arr[:, i].min():.2f}-{arr[:, i].max():.2f}" for i, sg in enumerate(sigmas))
            + f"; rises with s on {rising} of {len(arr)} photos")


if __name__ == "__main__":
    main()
