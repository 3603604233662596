"""Can the LR images alone tell the proxy presets apart? Noise and JPEG detectors per photo.

    .venv/bin/python benchmarks/degradation_detectors.py [--size 512] [--photos BytheWater,...]

A default that adapts only where the LR shows a degradation the model was not trained on
(noise, JPEG) needs detectors that separate ``camera`` from ``bicubic-clean`` on *any* photo,
not only on the same photo. For each photo (centre crop of ``--size`` HR px) and preset (seed
0, one camera), it prints:

* ``haar``: :func:`ttasr.degradations.noise.estimate_noise_level` (diagonal Haar detail in
  the flattest tiles), 8-bit levels;
* ``pca``: the noise level from the eigenvalues of the covariance of 7x7 patches: the tail of
  the sorted eigenvalues whose mean no longer exceeds its median is taken as noise (the idea
  of Chen, Zhu and Heng, ICCV 2015; texture lives in the leading components), per channel,
  then the mean, in 8-bit levels;
* ``dc``: the JPEG quantisation step of the luma DC coefficient, if one is found: for every
  8x8 grid offset, ``DC = 8 * block mean`` of the luma is quantised to multiples of ``q`` after
  JPEG, so ``|mean exp(2 pi i DC / q)|`` is near 1 at the true ``q`` (and its divisors) and near
  0 for a smooth DC distribution. The largest ``q`` in 2..40 whose value passes 0.5 is shown
  (``-``: none). Quality 95 has ``q = 2``, 90: 3, 85: 5, 50: 16. Steps of 2 to 4 (quality 80
  and up) are often missed: the decoder's rounding and clipping blur the lattice.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import ttasr  # noqa: E402
from ttasr.bench.proxy import DEFAULT_PHOTOS, wallpaper_photos  # noqa: E402
from ttasr.degradations import degrade  # noqa: E402
from ttasr.degradations.noise import estimate_noise_level  # noqa: E402

PRESETS = ("bicubic-clean", "optical-blur", "camera", "sensor-noise", "jpeg-heavy", "jpeg")


def pca_noise_level(img: torch.Tensor, patch: int = 7, stride: int = 3) -> float:
    """Noise std. dev. in 8-bit levels of ``img`` (1x3xHxW in [0, 1]) from patch eigenvalues."""
    levels = []
    for channel in (img[0].double() * 255.0):
        p = torch.nn.functional.unfold(channel[None, None], patch, stride=1)[0][:, ::stride]
        p = p - p.mean(1, keepdim=True)
        eig = torch.linalg.eigvalsh(p @ p.T / p.shape[1]).flip(0).clamp_min(0)
        var = eig[-1]
        for i in range(eig.numel()):
            tail = eig[i:]
            if tail.mean() <= tail.median():
                var = tail.mean()
                break
        levels.append(float(var.sqrt()))
    return sum(levels) / len(levels)


def jpeg_dc_step(img: torch.Tensor, steps: range = range(2, 41), threshold: float = 0.5) -> int | None:
    """The largest luma DC quantisation step with a periodicity above ``threshold``, or None."""
    r, g, b = img[0].double() * 255.0
    luma = (0.299 * r + 0.587 * g + 0.114 * b)[None, None]
    found = None
    for dy in range(8):
        for dx in range(8):
            dc = torch.nn.functional.avg_pool2d(luma[..., dy:, dx:], 8).flatten() * 8
            for q in steps:
                if torch.exp(2j * math.pi * dc / q).mean().abs().item() > threshold and (found is None or q > found):
                    found = q
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--photos", default=",".join(DEFAULT_PHOTOS))
    ap.add_argument("--scale", type=int, default=4)
    args = ap.parse_args()
    photos = wallpaper_photos(args.photos.split(","))
    print(f"{'photo':<13}" + "".join(f"{p:>24}" for p in PRESETS))
    print(f"{'':<13}" + f"{'haar   pca   dc':>24}" * len(PRESETS))
    for name, path in photos.items():
        rgb = ttasr.load_images(path).records[0].rgb
        h, w = rgb.shape[-2:]
        if min(h, w) < args.size:
            continue
        top, left = (h - args.size) // 2, (w - args.size) // 2
        hr = rgb[..., top:top + args.size, left:left + args.size].contiguous()
        cells = []
        for preset in PRESETS:
            lr = degrade(hr, args.scale, preset, seed=0).lr
            step = jpeg_dc_step(lr)
            cells.append(f"{estimate_noise_level(lr):5.2f} {pca_noise_level(lr):5.2f} {step or '-':>4}")
        print(f"{name[:12]:<13}" + "".join(f"{c:>24}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
