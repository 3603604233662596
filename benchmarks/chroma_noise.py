"""Does the chroma-noise detector tell noise from texture? Every photo, preset and seed, no training.

    .venv/bin/python benchmarks/chroma_noise.py [--photos A,B] [--seeds 0,1,2,3] [--threshold 2.5]

With a measured kernel, AdaSSR returns half of its final weights' change where every LR image
shows noise drawn independently in each colour channel (``noisy_final``):
:func:`ttasr.degradations.estimate_chroma_noise` at or above ``chroma_noise_threshold``. A false alarm on a noise-free photo would return training
that can only smooth it, so this script degrades each photo (centre crop of ``--size`` HR px,
x4) with every proxy preset at each seed (one seed, one camera: its blur, noise levels and
JPEG quality) and prints, per preset and seed, the detector's smallest, median and largest
value, the photos at or above the threshold, and the preset's noise settings. Photos as in
``selection.py --photos`` (wallpaper names, ``skimage:<name>``, image paths); default: the
proxy set. ``--estimator`` compares the level estimators that see noise shared by the channels
(luminance noise, which the chroma detector cannot see): ``haar``
(:func:`ttasr.degradations.noise.estimate_noise_level`, the flattest tiles) and ``pca`` (patch
eigenvalues, ``benchmarks/degradation_detectors.py``); the largest values are then clean textured
photos as often as noisy ones (benchmarks/RESULTS.md, 'Budgets, three new degradations'); ``share``
(:func:`ttasr.degradations.white_noise_share`, AdaSSR's ``noise_share_threshold`` 0.3 where
``--threshold`` is not given) sees luminance noise and leaves texture alone ('Noise in the brightness');
``share-channels``: the same, one channel at a time ('Whole where the noise is white').
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from adassr_proxy import load_photos, photo_files
from degradation_detectors import pca_noise_level

from ttasr import AdaSSRConfig
from ttasr.degradations import PRESETS, degrade, estimate_chroma_noise, white_noise_share
from ttasr.degradations.noise import estimate_noise_level

ESTIMATORS = {"chroma": estimate_chroma_noise, "haar": estimate_noise_level, "pca": pca_noise_level,
              "share": white_noise_share, "share-channels": partial(white_noise_share, per_channel=True)}
"""``--estimator``: each maps a 1x3xHxW LR image in [0, 1] to a noise level in 8-bit levels
(``share``: to the share of its tiles that look like white noise, 0 to 1)."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=lambda v: [x for x in v.split(",") if x], default=None, metavar="A,B")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threshold", type=float, default=None,
                    help="AdaSSR's chroma_noise_threshold (noise_share_threshold with --estimator share)")
    ap.add_argument("--estimator", choices=sorted(ESTIMATORS), default="chroma",
                    help="chroma, share: AdaSSR's detectors; haar, pca: levels of noise shared by the channels too")
    args = ap.parse_args()
    if args.threshold is None:
        c = AdaSSRConfig()
        args.threshold = c.noise_share_threshold if args.estimator.startswith("share") else c.chroma_noise_threshold
    estimate = ESTIMATORS[args.estimator]
    names = args.photos or list(photo_files(None))
    photos = [p for name in names for p in load_photos(1, args.size, [name])]
    unit = "share of white-noise tiles" if args.estimator.startswith("share") else "noise in 8-bit levels"
    print(f"# {len(photos)} photos, {args.size} px HR, x{args.scale}; {args.estimator}: {unit} of the LR; "
          f"flagged: >= {args.threshold}")
    print(f"{'preset':<14}{'seed':>5}{'noise σ/shot':>14}{'min':>7}{'median':>8}{'max':>7}{'flagged':>9}  "
          "largest (flagged first)")
    for preset in [p for p in args.presets.split(",") if p]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            levels, settings = {}, {}
            for name, hr in photos:
                d = degrade(hr, args.scale, preset, seed=seed)
                levels[name] = estimate(d.lr)
                settings = d.params
            v = np.array(list(levels.values()))
            flagged = sum(level >= args.threshold for level in levels.values())
            top = sorted(levels.items(), key=lambda kv: -kv[1])[:3]
            noise = f"{settings.get('gaussian_noise', 0):.2f}/{settings.get('poisson_scale', 0):.2f}"
            print(f"{preset:<14}{seed:>5}{noise:>14}{v.min():7.2f}{np.median(v):8.2f}{v.max():7.2f}"
                  f"{f'{flagged}/{len(v)}':>9}  " + ", ".join(f"{n[:14]} {lv:.2f}" for n, lv in top), flush=True)


if __name__ == "__main__":
    main()
