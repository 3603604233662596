"""Compare adaptation methods on images with known ground truth (a small proxy benchmark).

    python examples/compare_methods.py --preset camera --steps 100

Degrades a few real photos with a camera-like preset, adapts the model with each method,
and prints PSNR-Y / SSIM against the ground truth. benchmarks/adassr_proxy.py is the full
version (more photos, presets, the oracle and the ablation).
"""

from __future__ import annotations

import argparse

import ttasr
from ttasr.degradations import degrade
from ttasr.demo import demo_photos
from ttasr.metrics import psnr_y, ssim_y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="span-x4")
    ap.add_argument("--preset", default="camera", help="optical-blur, sensor-noise, jpeg, camera")
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()

    model = ttasr.load_model(args.model)
    s = model.scale
    photos = [hr for _, hr in demo_photos(3, 384)]
    lows = [degrade(hr, s, args.preset, seed=0).lr for hr in photos]
    candidates = {
        "unadapted": None,
        "internal": ttasr.create_adapter("internal", model, max_steps=args.steps, progress=False),
        "adassr": ttasr.create_adapter("adassr", model, max_steps=args.steps, eval_every=max(args.steps // 3, 1),
                                       ema_decay=0.99, progress=False),
    }
    for name, adapter in candidates.items():
        net = model if adapter is None else adapter.fit(lows).adapted_model()
        srs = [ttasr.enhance(net, lr) for lr in lows]
        p = sum(psnr_y(sr, hr, s) for sr, hr in zip(srs, photos)) / len(photos)
        q = sum(ssim_y(sr, hr, s) for sr, hr in zip(srs, photos)) / len(photos)
        print(f"{name:<10} PSNR-Y {p:6.2f} dB   SSIM {q:.4f}")


if __name__ == "__main__":
    main()
