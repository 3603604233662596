"""Where JPEG shows without a kernel (several images): what each fraction of the output would return (claim L).

    .venv/bin/python benchmarks/jpeg_fraction.py outputs/w15-*/ outputs/k15-*/ [--fractions 0.5,0.6,0.7,1]

Reads ``benchmarks/selection.py`` multi-image runs without a kernel (``--runs trajectory``). On a group where
JPEG shows in an image, AdaSSR returns a fraction of the output of the held-out pick, or of step 300 where
the held-out rule keeps the start (claim K), for every image of the group (``AdaSSR.blind_compressed_blend``).
The records hold the PSNR-Y of the start's output, of half and of the whole of each step's: an output blend's
error is quadratic in the fraction, so those three give every fraction (``selection.blend_psnr``; up to the
clamping of the blend to [0, 1]). ``--check`` compares the quadratic with direct blends of the kept outputs
(``--keep-outputs``) and prints the largest difference.

Prints, per fraction: the mean gain over the runs' photos, its share of the HR's best step and blend, the worst
photo and run, and the photos below -0.05 dB. Groups without JPEG return what the default returns there and
count as such. ``K + Z5 + Y3 (0.5)``: the default before claim L (``selection.py`` row ``blind K + Z5 + Y3``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from selection import (
    SUMMARY_RULES,
    blend_psnr,
    candidates,
    output_mix,
    replay_records,
    summary_pick,
    with_hr,
)

import ttasr

SHIPPED = "blind K + Z5 + Y3"
BEFORE = "K + Z5 + Y3 (0.5)"


def shipped_step(records: list[dict], every: int) -> int:
    """The evaluation whose output the default blends where JPEG shows: the held-out pick, or step
    ``AdaSSR.start_kept_step`` where the pick is the start (claim K)."""
    picked = replay_records(candidates()["heldout+gain"], "heldout+gain", records)
    return picked or min(ttasr.AdaSSR.start_kept_step // every, len(records) - 1)  # type: ignore[operator]


def score_group(rows: dict, every: int, fractions: list[float]) -> dict[str, list[float]]:
    """Gains (dB per photo) of what ships, of each fraction, and of the HR's best step and blend."""
    records = rows["trajectory"]["records"]
    base = np.array(rows["unadapted"])
    shipped = np.array(summary_pick(rows, *SUMMARY_RULES[SHIPPED], every)) - base
    out = {BEFORE: list(shipped), "HR: best step and blend": list(np.array(with_hr(records, "any")) - base)}
    k = shipped_step(records, every)
    for f in fractions:
        if not any(rows["jpeg"]):
            out[f"{f:g}"] = list(shipped)
            continue
        out[f"{f:g}"] = list(np.array(output_mix(records, records[k], f"{f:g}")) - base)
    return out


def check_against_kept(folder: Path, preset: str, rows: dict, every: int, fraction: float) -> float:
    """The largest difference (dB) between :func:`blend_psnr` and the PSNR-Y of the blend of the kept outputs."""
    import torch

    from ttasr.metrics import psnr_y

    kept = folder / "outputs" / preset / "all"
    records = rows["trajectory"]["records"]
    k = shipped_step(records, every)
    worst = 0.0
    for i in range(len(rows["unadapted"])):
        hr = torch.load(kept / f"hr_img{i}.pt").float()
        n0, nk = (torch.load(kept / f"eval{e:03d}_img{i}.pt").float() for e in (0, k))
        direct = psnr_y((fraction * nk + (1 - fraction) * n0).clamp(0, 1), hr, 4)
        quadratic = blend_psnr(records[0]["psnr"][i], records[k]["mix"]["0.5"][i], records[k]["psnr"][i], fraction)
        worst = max(worst, abs(direct - quadratic))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--fractions", default="0.5,0.55,0.6,0.65,0.7,1", help="fractions of the output to replay")
    ap.add_argument("--check", type=float, default=None, metavar="F",
                    help="compare the replay of fraction F with direct blends of the kept outputs")
    args = ap.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    groups = []
    for folder in args.folders:
        results = json.loads((folder / "results.json").read_text())
        if results.get("mode") != "multi" or "kernel" in results.get("candidate", {}):
            raise SystemExit(f"{folder}: not a multi-image run without a kernel")
        every = results.get("eval_every", 50)
        for preset, rows in results.items():
            if not isinstance(rows, dict) or "trajectory" not in rows:
                continue
            groups.append((f"{folder.name}:{preset}", score_group(rows, every, fractions)))
            if args.check is not None:
                print(f"{folder.name} {preset}: fraction {args.check:g}, replay against kept outputs: "
                      f"{check_against_kept(folder, preset, rows, every, args.check):.4f} dB at most")
    hr = float(np.mean([np.mean(g["HR: best step and blend"]) for _, g in groups]))
    print(f"{len(groups)} runs, {sum(len(g[BEFORE]) for _, g in groups)} photos (dB): mean gain, share of the "
          "HR's best step and blend, worst photo, worst run mean; photos below -0.05 dB")
    for name in [BEFORE, *[f"{f:g}" for f in fractions], "HR: best step and blend"]:
        means = [float(np.mean(g[name])) for _, g in groups]
        worst = min(min(g[name]) for _, g in groups)
        below = [f"{label} image {i} {v:+.2f}" for label, g in groups for i, v in enumerate(g[name]) if v < -0.05]
        print(f"{name:24s} {np.mean(means):+.3f} {np.mean(means) / hr * 100:5.1f} % {worst:+.3f} {min(means):+.3f}  "
              + "; ".join(below))


if __name__ == "__main__":
    main()
