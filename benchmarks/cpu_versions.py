"""CPU speed of two versions of ttasr, side by side in one run (issue 13: "CPU figures stay
within 5 % of today's, or get better").

    .venv/bin/python benchmarks/cpu_versions.py [--base 918f0ea] [--rounds 3] [--threads 1]

``--base`` is checked out into a temporary git worktree; the working tree is the other side.
Each round runs one fresh process per version, alternating which goes first, so that load
from other processes hits both alike; each figure is the median over the rounds. A process
measures, with SPAN x4 (``--model``) on a photo (scikit-image's astronaut):

* ``enhance`` of a 128-px LR image (one tile) and of a 256-px one with ``tile=128`` (tiles
  blended), seconds per call, the median of 3 after a warm-up;
* one adaptation step of ``InternalLearning`` and of ``AdaSSR`` (bicubic pairs, feature
  attention, EMA, proximal term, fixed budget), seconds per step: the difference between
  fits of ``--steps`` and 10 steps on a 128-px LR image, divided by the step difference, so
  that set-up costs cancel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, statistics, sys, time
import numpy as np, torch
import ttasr
torch.set_num_threads(int(sys.argv[1]))
steps = int(sys.argv[3])
model = ttasr.load_model(sys.argv[2])
from skimage import data
photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
lr128 = torch.nn.functional.interpolate(photo, size=(128, 128), mode="area")
lr256 = torch.nn.functional.interpolate(photo, size=(256, 256), mode="area")

def timed(fn, repeats=3):
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter(); fn(); out.append(time.perf_counter() - t)
    return statistics.median(out)

def per_step(factory):
    t = {}
    for n in (10, steps):
        start = time.perf_counter(); factory(n).fit([lr128]); t[n] = time.perf_counter() - start
    return (t[steps] - t[10]) / (steps - 10)

common = dict(progress=False, seed=0)
res = {
    "enhance 128 px (1 tile), s": timed(lambda: ttasr.enhance(model, lr128)),
    "enhance 256 px (tile 128), s": timed(lambda: ttasr.enhance(model, lr256, tile=128)),
    "InternalLearning step, s": per_step(lambda n: ttasr.InternalLearning(model, max_steps=n, **common)),
    "AdaSSR step, s": per_step(lambda n: ttasr.AdaSSR(model, max_steps=n, stopping="fixed",
                                                     kernel_estimator="bicubic", attention="features", **common)),
}
print("RESULT " + json.dumps(res))
"""


def run_side(src: Path, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run([sys.executable, "-c", CHILD, str(args.threads), args.model, str(args.steps)],
                         cwd=src, env=env, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit(f"the measurement failed in {src}:\n{out.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="918f0ea", help="git revision to compare with (default: before issue 13)")
    ap.add_argument("--model", default="span-x4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_dir), args.base], cwd=ROOT, check=True)
        try:
            runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
            for r in range(args.rounds):
                order = [("base", base_dir), ("head", ROOT)]
                for side, src in order if r % 2 == 0 else order[::-1]:
                    runs[side].append(run_side(src, args))
                    print(f"# round {r + 1}/{args.rounds}: {side} done", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_dir)], cwd=ROOT, check=False)
    print(f"CPU, {args.threads} thread(s), {args.model}, median of {args.rounds} rounds")
    print(f"| figure | {args.base} (base) | {head} (working tree) | ratio |")
    print("|---|---|---|---|")
    for key in runs["base"][0]:
        b = statistics.median(r[key] for r in runs["base"])
        h = statistics.median(r[key] for r in runs["head"])
        print(f"| {key} | {b:.4f} | {h:.4f} | {h / b:.3f} |")


if __name__ == "__main__":
    main()
