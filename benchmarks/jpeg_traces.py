"""Can the JPEG an LR went through be read from its pixels? ``detect_jpeg`` on the proxy photos.

    .venv/bin/python benchmarks/jpeg_traces.py [--images 8] [--size 512] [--qualities 30,50,75,90,95]

``ttasr kernel`` models the LR's JPEG in its fit; a JPEG file gives its tables, but an LR saved
losslessly after compression (PNG) gives only its pixels. For every photo of the proxy set
(``--images``, centre crops of ``--size`` px, LR at x``--scale``), this prints what
:func:`ttasr.pairs.detect_jpeg` reads:

* on each proxy preset's LR (seed ``--seed``): ``bicubic-clean``, ``optical-blur`` and
  ``sensor-noise`` are uncompressed (any reading is a false positive), ``camera`` is JPEG 95,
  ``jpeg-heavy`` 40-60;
* on the bicubic LR compressed at each of ``--qualities``, then cropped by (3, 5) px, so that
  the 8-px grid has to be found too.

Each cell is the quality read (``own`` when the steps read match no libjpeg table, ``-`` when
nothing was read), then the number of the 64 luma steps read. The last lines count the exact
readings and the false positives.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from adassr_proxy import load_photos  # noqa: E402
from ttasr.degradations import degrade, imresize  # noqa: E402
from ttasr.degradations.jpeg_codec import jpeg_roundtrip  # noqa: E402
from ttasr.pairs import detect_jpeg  # noqa: E402

PRESETS = ("bicubic-clean", "optical-blur", "sensor-noise", "camera", "jpeg-heavy")


def cell(trace) -> str:
    if trace is None:
        return "-"
    return f"{trace.quality or 'own'}/{sum(1 for q in trace.steps if q)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--qualities", default="30,50,75,90,95")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    qualities = [int(q) for q in args.qualities.split(",") if q]
    columns = [*PRESETS, *(f"q{q} crop" for q in qualities)]
    print(f"# detect_jpeg on {args.images} photos, {args.size} px HR, LR x{args.scale} "
          f"({args.size // args.scale} px); cell: quality read / luma steps read")
    print(f"{'photo':<14}" + "".join(f"{c:>15}" for c in columns))
    exact = total = false_pos = clean = 0
    seconds = []
    for name, hr in load_photos(args.images, args.size):
        row = []
        for preset in PRESETS:
            d = degrade(hr, args.scale, preset, seed=args.seed)
            start = time.perf_counter()
            trace = detect_jpeg(d.lr, name=f"{name} {preset}")
            seconds.append(time.perf_counter() - start)
            true = int(d.params.get("jpeg_quality") or 0)
            if true:
                total += 1
                exact += trace is not None and trace.quality == true
            else:
                clean += 1
                false_pos += trace is not None
            row.append(cell(trace) + (f" ({true})" if true else ""))
        lr = (imresize(hr, 1 / args.scale).clamp(0, 1) * 255).round() / 255
        for q in qualities:
            trace = detect_jpeg(jpeg_roundtrip(lr, q)[..., 3:, 5:], name=f"{name} q{q}")
            total += 1
            exact += trace is not None and trace.quality == q and trace.offset == (5, 3)
            row.append(cell(trace))
        print(f"{name[:13]:<14}" + "".join(f"{c:>15}" for c in row), flush=True)
    print(f"\nexact quality (and grid) read: {exact} of {total} compressed LR; "
          f"false positives: {false_pos} of {clean} uncompressed LR; "
          f"{1000 * sum(seconds) / len(seconds):.0f} ms per {args.size // args.scale}-px LR")


if __name__ == "__main__":
    main()
