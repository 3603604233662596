"""Cost of the default selection rule's evaluations against the fit they select from.

    .venv/bin/python benchmarks/selection_cost.py [--images 4 --size 768 --steps 100 --eval-every 100]

Times a plain AdaSSR fit with ``stopping="fixed"`` and the same fit with the default
``heldout`` rule (held-out pairs scored every ``--eval-every`` steps, the start included), on
the proxy photos with the ``camera`` preset, and prints the overhead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import ttasr  # noqa: E402
from adassr_proxy import load_photos  # noqa: E402
from ttasr.degradations import degrade  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=100)
    args = ap.parse_args()
    model = ttasr.load_model("span-x4")
    lows = [degrade(hr, 4, "camera", seed=0).lr for _, hr in load_photos(args.images, args.size)]
    cfg = dict(max_steps=args.steps, eval_every=args.eval_every, progress=False, kernel_estimator="bicubic",
               attention="none")
    times = {}
    for rule in ("fixed", "heldout"):
        t = time.perf_counter()
        a = ttasr.AdaSSR(model, stopping=rule, **cfg).fit(lows)
        times[rule] = time.perf_counter() - t
        evals = sum(1 for h in a.results[0].history if "score" in h)
        print(f"{rule:<8} {times[rule]:7.1f} s  ({evals} evaluations)", flush=True)
    print(f"overhead of heldout: {100 * (times['heldout'] / times['fixed'] - 1):+.1f} % "
          f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
