"""Adapt a model to a folder of LR images from one camera, save the results and the weights.

    python examples/adapt_folder.py photos/ --model span-x4 --out adapted/
    python examples/adapt_folder.py photos/ --kernel camera.npy    # a kernel from `ttasr kernel`

No ground truth is needed. AdaSSR estimates the camera's blur kernel from the images, adapts
once over the whole set (multi-image mode), keeps the weights with the lowest error on held-out
internal pairs and returns a tenth of their change (the default, safe on clean inputs). With a
kernel measured on a few registered (HR, LR) pairs of the camera (``ttasr kernel --hr HR/ --lr
LR/ -o camera.npy``) or on a photo of the printed chart of ``ttasr chart`` (``ttasr kernel --chart
photo.jpg --scale 4 -o camera.npy``) it trains on that kernel and, by itself, selects with the
held-out rule guarded by back-projection through that kernel and returns half of the change, or
a fifth of the held-out pick where the guard accepts nothing (``stopping="auto"``,
``blend="auto"``; one adaptation for the whole folder). On the proxy's noisy
and compressed presets that kept 68–72 % of the oracle's gain at 1,500 steps, against 35–42 % for
the earlier fifth (benchmarks/RESULTS.md, *A guard from back-projection*). If the measured kernel is bicubic
downscaling's and the images show no JPEG, they carry the degradation a bicubic-trained model
already knows and AdaSSR keeps the model as it is (a warning says so; benchmarks/RESULTS.md, *No gap, no
adaptation*).
It writes the super-resolved images and a checkpoint that spandrel (and tools built on it) loads.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import ttasr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", help="folder, glob or file of LR images")
    ap.add_argument("--model", default="span-x4", help="checkpoint path or registered name")
    ap.add_argument("--out", type=Path, default=Path("adapted"))
    ap.add_argument("--steps", type=int, default=300, help="optimiser steps (paper: up to 1,500)")
    ap.add_argument("--kernel", type=Path, default=None, help="the camera's kernel (.npy from `ttasr kernel`)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    model = ttasr.load_model(args.model)
    images = ttasr.load_images(args.images)
    measured = {"kernel": str(args.kernel)} if args.kernel else {}  # a set kernel is used, and blend follows
    adapter = ttasr.AdaSSR(model, max_steps=args.steps, attention_dir=str(args.out / "attention"), **measured)
    outputs = adapter.fit(images).enhance()

    args.out.mkdir(parents=True, exist_ok=True)
    for record, image in zip(images, outputs):
        ttasr.save_image(image, args.out / f"{Path(record.name).stem}_x{model.scale}.png")
    adapter.save(args.out / "adapted.safetensors")
    print(adapter.state)


if __name__ == "__main__":
    main()
