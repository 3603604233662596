"""Blending the outputs per pixel: the blind JPEG pick with a flat-region map, offline.

    .venv/bin/python benchmarks/flat_blend.py outputs/sp-*/ [--sigmas 1,2,4,8] [--taus 2,3,5,8,12] [--caps 0.5,1]

Reads ``benchmarks/selection.py --keep-outputs`` folders (multi-image runs without a kernel; each
keeps the SR output of every evaluation, the LR and the HR). For each group where JPEG shows, it
takes the step the blind default picks (the held-out rule, ``heldout+gain``) and scores:

* **what ships**: half of that pick's output, ``0.5 N_pick(y) + 0.5 N_0(y)`` (from the records);
* **the flat map** ``(sigma, tau, cap)`` (claim F): ``N_0 + cap·W ⊙ (N_pick − N_0)``, with ``W``
  from :func:`flat_region_weights` of the unadapted output ``N_0`` (the adapted output where
  ``N_0`` is flat, the unadapted one where it is textured);
* **the flat gate** ``(t)`` (claim T): the whole pick's output where every image of the group has
  a mean flat weight ``m`` (the map's mean, ``sigma`` 4, ``tau`` 5, on ``N_0``) of at least ``t``,
  else what ships;
* **means over the trajectory** (``--means``; an ensemble of the fit's snapshots, not a blend
  with a fraction): the uniform mean of the outputs at evaluations ``0 … pick`` (the start
  included), at ``0 … last``, and half of the mean at ``1 … last`` with ``N_0``;
* the whole pick, and the HR's best step and blend of the records (for scale).

PSNR-Y is measured as ``selection.py`` does (quantised, the scale as border); a column
recomputes half the pick from the kept float16 outputs, which checks them against the records.
The last table gives, per setting, the mean gain over every photo, the worst photo, the worst
run mean, and whether it keeps the issue's no-harm bounds (no photo below −0.1 dB, no run mean
below −0.05 dB). Neither F nor T was adopted (benchmarks/RESULTS.md, 'Flat photos, whole outputs');
nor are the means (benchmarks/RESULTS.md, 'Budgets, three new degradations, and the fit's snapshots averaged').
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from selection import candidates, replay_records, with_hr
from ttasr.degradations import gaussian_blur
from ttasr.metrics import psnr_y
from ttasr.pairs.augment import _gray


def flat_region_weights(image: torch.Tensor, sigma: float = 4.0, tau: float = 5.0) -> torch.Tensor:
    """Per-pixel ``τ² / (τ² + v)`` of a Bx3xHxW image in [0, 1], shape ``Bx1xHxW``: ``v`` is the
    local variance of the luma (BT.601) in 8-bit levels, in a Gaussian window of ``sigma`` px.
    Near 1 on flat ground, near 0 on texture; a local standard deviation of ``tau`` levels gives 1/2."""
    x = image.float().clamp(0.0, 1.0)  # float32: the difference of squares cancels in float16
    luma = _gray(x) * 255.0
    mean = gaussian_blur(luma, sigma)
    variance = (gaussian_blur(luma * luma, sigma) - mean * mean).clamp_min(0.0)
    return tau * tau / (tau * tau + variance)


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def kept_groups(folders: list[Path]):
    """``(label, records row, kept-outputs folder, eval interval)`` of every multi-image preset run in ``folders``."""
    for folder in folders:
        results = json.loads((folder / "results.json").read_text())
        if results.get("mode", "multi") != "multi":
            raise SystemExit(f"{folder}: single-image runs; this script reads multi-image ones")
        for preset, rows in results.items():
            if isinstance(rows, dict) and "trajectory" in rows:
                kept = folder / "outputs" / preset / "all"
                if not kept.is_dir():
                    raise SystemExit(f"{folder}: no kept outputs for {preset}; run selection.py with --keep-outputs")
                label = folder.name if folder.name.endswith(preset) else f"{folder.name}:{preset}"
                yield label, rows, kept, results.get("eval_every", 50)


def score_group(rows: dict, kept: Path, settings: list[tuple[float, float, float]], gates: list[float],
                scale: int = 4, means: bool = False) -> dict:
    """Gains (dB per photo) of each blend of the group's held-out pick; empty where no JPEG shows."""
    records = rows["trajectory"]["records"]
    if not any(rows["jpeg"]):
        return {}
    k = replay_records(candidates()["heldout+gain"], "heldout+gain", records)
    base = np.array(rows["unadapted"])
    n = len(base)
    hr = [torch.load(kept / f"hr_img{i}.pt") for i in range(n)]
    start = [torch.load(kept / f"eval000_img{i}.pt").float() for i in range(n)]
    pick = [torch.load(kept / f"eval{k:03d}_img{i}.pt").float() for i in range(n)]

    def gains(weights, towards: list[torch.Tensor] = pick) -> np.ndarray:
        """Per photo, ``N_0 + w ⊙ (T − N_0)`` for the outputs ``towards`` (``T``, the pick's by default)."""
        return np.array([psnr_y((s + w * (p - s)).clamp(0, 1), h, scale)
                         for s, p, h, w in zip(start, towards, hr, weights)]) - base

    out = {"step": k, "what ships": np.array(records[k]["mix"]["0.5"]) - base,
           "half, recomputed": gains([0.5] * n), "whole pick": np.array(records[k]["psnr"]) - base,
           "HR: best step and blend": np.array(with_hr(records, "any")) - base}
    maps = {}
    for sigma, tau, cap in settings:
        if (sigma, tau) not in maps:
            maps[sigma, tau] = [flat_region_weights(s.clamp(0, 1), sigma, tau) for s in start]
        out[f"flat σ{sigma:g} τ{tau:g} ×{cap:g}"] = gains([cap * w for w in maps[sigma, tau]])
    gate = maps.get(GATE_MAP) or [flat_region_weights(s.clamp(0, 1), *GATE_MAP) for s in start]
    flatness = [float(w.mean()) for w in gate]
    out["m"] = flatness
    for t in gates:
        out[f"whole if every m ≥ {t:g}"] = out["whole pick"] if k and min(flatness) >= t else out["what ships"]
    if means:
        def mean_of(steps: range) -> list[torch.Tensor]:
            return [sum(torch.load(kept / f"eval{e:03d}_img{i}.pt").float() for e in steps) / len(steps)
                    for i in range(n)]

        last = len(records)
        out["mean of 0 … pick"] = gains([1.0] * n, mean_of(range(k + 1)))
        out["mean of 0 … last"] = gains([1.0] * n, mean_of(range(last)))
        out["½ mean of 1 … last"] = gains([0.5] * n, mean_of(range(1, last)))
    return out


GATE_MAP = (4.0, 5.0)
"""``(sigma, tau)`` of the map whose mean is the flat gate's ``m``."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--sigmas", type=floats, default=[1.0, 2.0, 4.0, 8.0], help="windows of the map (HR px)")
    ap.add_argument("--taus", type=floats, default=[2.0, 3.0, 5.0, 8.0, 12.0], help="8-bit levels where W is 1/2")
    ap.add_argument("--caps", type=floats, default=[0.5, 1.0], help="the map times this fraction")
    ap.add_argument("--gates", type=floats, default=[0.7], help="thresholds t of the flat gate (claim T)")
    ap.add_argument("--means", action="store_true", help="also the means of the outputs over the trajectory")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = list(itertools.product(args.sigmas, args.taus, args.caps))
    scored = {}
    for label, rows, kept, every in kept_groups(args.folders):
        got = score_group(rows, kept, settings, args.gates, means=args.means)
        if not got:
            print(f"{label}: no JPEG shows; the blind default does not blend outputs there")
            continue
        scored[label] = got
        print(f"{label}: pick step {got['step'] * every}; per photo: what ships "
              f"{np.round(got['what ships'], 3)} (recomputed {np.round(got['half, recomputed'], 3)}), whole pick "
              f"{np.round(got['whole pick'], 3)}, HR best {np.round(got['HR: best step and blend'], 3)}; "
              f"m {np.round(got['m'], 2)}", flush=True)
    if not scored:
        raise SystemExit("no group where JPEG shows")
    names = [key for key in next(iter(scored.values())) if key not in ("step", "m")]
    print(f"\n{len(scored)} runs, {sum(len(g['what ships']) for g in scored.values())} photos")
    print(f"{'blend of the pick':<28}{'mean':>8}{'worst':>8}{'worst run':>11}  bounds")
    for name in names:
        per_run = [g[name] for g in scored.values()]
        every = np.concatenate(per_run)
        worst_run = min(float(g.mean()) for g in per_run)
        within = every.min() >= -0.1 and worst_run >= -0.05
        print(f"{name:<28}{every.mean():+8.3f}{every.min():+8.3f}{worst_run:+11.3f}  {'kept' if within else 'BROKEN'}")


if __name__ == "__main__":
    main()
