"""Measure each proxy camera's kernel on (HR, LR) pairs of photos that are not evaluated.

    .venv/bin/python benchmarks/calibrate_proxy.py [--photos Kite,FallenLeaf] [--size 512]
        [--presets camera,...] [--plain | --pixels] [--out outputs/calib]

For every preset (one camera: seed ``--seed``, as in ``selection.py``) this degrades the
calibration photos, runs :func:`ttasr.pairs.calibrate_kernel` on their pairs (through the
preset's JPEG where it has one, as ``ttasr kernel`` does with JPEG files; ``--plain`` fits
without the JPEG model, to show its bias; ``--pixels`` reads the JPEG settings from the LR's
pixels, as ``ttasr kernel`` does with an LR saved losslessly after JPEG, and prints what it read) and writes ``<out>/<preset>.npy`` for
``selection.py --candidate kernel_estimator=given --candidate kernel=<out>/<preset>.npy``. It
prints the kernel found next to the true one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from adassr_proxy import load_photos  # noqa: E402
from ttasr.degradations import degrade  # noqa: E402
from ttasr.pairs import calibrate_kernel, detect_jpeg, save_kernel  # noqa: E402

PRESETS = ("bicubic-clean", "optical-blur", "camera", "sensor-noise", "jpeg-heavy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", default="Kite,FallenLeaf", help="calibration photos (never evaluated)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--plain", action="store_true", help="fit without modelling the presets' JPEG")
    mode.add_argument("--pixels", action="store_true",
                      help="read the JPEG settings from the LR pixels (jpeg='auto') instead of the preset")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("outputs/calib"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    photos = load_photos(0, args.size, names=[p for p in args.photos.split(",") if p])
    print(f"# calibration on {', '.join(n for n, _ in photos)} ({args.size} px), x{args.scale}, seed {args.seed}"
          f"{', plain fit' if args.plain else ''}{', JPEG read from the pixels' if args.pixels else ''}")
    print(f"{'preset':<14}{'true σ':>12}{'found':>22}{'RMSE Gauss':>11}{'RMSE bic':>9}"
          + ("   JPEG quality: true -> read from the pixels" if args.pixels else ""))
    for preset in [p for p in args.presets.split(",") if p]:
        degraded = [degrade(hr, args.scale, preset, seed=args.seed) for _, hr in photos]
        quality = [int(d.params["jpeg_quality"]) or None for d in degraded]
        jpeg = None if args.plain else "auto" if args.pixels else quality
        estimate = calibrate_kernel([(hr, d.lr) for (_, hr), d in zip(photos, degraded)], args.scale, jpeg=jpeg)
        read = ""
        if args.pixels:
            traces = [detect_jpeg(d.lr) for d in degraded]
            read = "   " + ", ".join(f"{q or 'none'} -> " + ("none" if t is None else str(t.quality or "own table"))
                                    for q, t in zip(quality, traces))
        assert estimate.kernel is not None
        path = save_kernel(args.out / f"{preset}.npy", estimate.kernel)
        p, t = estimate.params, degraded[0].params
        true = "bicubic" if degraded[0].kernel is None else f"{t['sigma_x']:.2f}/{t['sigma_y']:.2f}"
        found = "bicubic" if p["family"] == "bicubic" else f"{p['sigma_x']:.2f}/{p['sigma_y']:.2f}"
        print(f"{preset:<14}{true:>12}{found + (' (JPEG)' if p['jpeg'] else ''):>22}"
              f"{p['rmse_gaussian']:>11.3f}{p['rmse_bicubic']:>9.3f}{read}   {path}", flush=True)


if __name__ == "__main__":
    main()
