"""Where JPEG shows without a kernel: the whole output of step 300 where it settles (claim D), offline.

    .venv/bin/python benchmarks/jpeg_drift.py outputs/sp-*/ outputs/spv-*/ [--drift 0.4] [--detail 0.12]

Reads ``benchmarks/selection.py --keep-outputs`` folders (multi-image runs without a kernel). For each
image where JPEG shows it reads, from the kept SR outputs ``N_0`` (the start), ``N_s`` (step ``--step``)
and ``N_last`` (the run's last evaluation), two numbers no HR is needed for:

* **drift**: ``mean((N_last − N_s)²) / mean((N_s − N_0)²)`` of the luma (an 8-px border cut): how far
  the output still moves after step ``s``, against how far it moved before;
* **detail**: the high-frequency energy of ``N_s`` over ``N_0``'s (the luma minus its Gaussian blur,
  σ 1 HR px): near 0 where the adaptation has smoothed the photo flat.

Claim D returns the whole output of step ``s`` for an image where drift < ``--drift`` and detail >
``--detail``, what ships elsewhere (``selection.py`` row ``blind K + Z5 + Y3``); D2 reads the same at the
step that ships (the held-out pick, or step ``s`` where claim K keeps the start) and returns that step's
whole output. The table gives, over every photo: what ships, half and whole of step ``s`` where JPEG
shows, D, D2, and the HR's best step and blend (one fraction per group, for scale); then each photo's
readings. D was withdrawn after its second validation, D2 not pursued (benchmarks/RESULTS.md, 'The
held-out error through JPEG', 'Claim D on photos that need its guard').
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from flat_blend import kept_groups
from selection import SUMMARY_RULES, candidates, replay_records, summary_pick, with_hr

from ttasr.degradations import gaussian_blur
from ttasr.pairs.augment import _gray

SHIPPED = "blind K + Z5 + Y3"
BORDER = 8


def luma(kept: Path, evaluation: int, image: int) -> torch.Tensor:
    """The luma (8-bit levels) of a kept SR output, clamped to [0, 1] first."""
    return _gray(torch.load(kept / f"eval{evaluation:03d}_img{image}.pt").float().clamp(0, 1)) * 255


def inner(x: torch.Tensor) -> torch.Tensor:
    return x[..., BORDER:-BORDER, BORDER:-BORDER]


def drift(start: torch.Tensor, step: torch.Tensor, last: torch.Tensor) -> float:
    """How far the output moves after the step, against how far it moved up to it."""
    return float(inner(last - step).square().mean() / inner(step - start).square().mean().clamp_min(1e-12))


def detail(start: torch.Tensor, step: torch.Tensor) -> float:
    """The high-frequency energy (luma minus its Gaussian blur, σ 1 px) of ``step`` over ``start``'s."""
    def energy(x: torch.Tensor) -> float:
        return float(inner(x - gaussian_blur(x, 1.0)).square().mean())
    return energy(step) / max(energy(start), 1e-12)


def score_group(rows: dict, kept: Path, every: int, step: int, max_drift: float, min_detail: float) -> dict:
    """Gains (dB per photo) of each row, and the readings, of one group."""
    records = rows["trajectory"]["records"]
    base = np.array(rows["unadapted"])
    k, last = min(step // every, len(records) - 1), len(records) - 1
    shipped = np.array(summary_pick(rows, *SUMMARY_RULES[SHIPPED], every)) - base
    out: dict[str, list[float]] = collections.defaultdict(list)
    # D2: the same readings at the step that ships (the held-out pick, or step s where K keeps the start)
    pick = replay_records(candidates()["heldout+gain"], "heldout+gain", records) or k
    for i, compressed in enumerate(rows["jpeg"]):
        n0, ns, nl = luma(kept, 0, i), luma(kept, k, i), luma(kept, last, i)
        d, f = drift(n0, ns, nl), detail(n0, ns)
        half = records[k]["mix"]["0.5"][i] - base[i] if compressed else shipped[i]
        whole = records[k]["psnr"][i] - base[i] if compressed else shipped[i]
        settled = compressed and d < max_drift and f > min_detail
        n_pick = luma(kept, pick, i)
        d2, f2 = drift(n0, n_pick, nl), detail(n0, n_pick)
        whole2 = records[pick]["psnr"][i] - base[i] if compressed and d2 < max_drift and f2 > min_detail else shipped[i]
        for key, value in (("what ships", shipped[i]), (f"half of step {step}", half), (f"whole of step {step}", whole),
                           ("D", whole if settled else shipped[i]), ("D2: whole of shipped step", whole2),
                           ("drift", d), ("detail", f), ("settled", float(settled)), ("pick", pick * every),
                           ("drift2", d2), ("detail2", f2)):
            out[key].append(float(value))
    out["HR: best step and blend"] = list(np.array(with_hr(records, "any")) - base)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--step", type=int, default=300, help="the step whose output D returns whole")
    ap.add_argument("--drift", type=float, default=0.4, help="D: the largest drift after the step")
    ap.add_argument("--detail", type=float, default=0.12, help="D: the smallest share of fine detail kept")
    args = ap.parse_args()
    torch.set_num_threads(1)
    groups = [(label, score_group(rows, kept, every, args.step, args.drift, args.detail))
              for label, rows, kept, every in kept_groups(args.folders)]
    rows = [name for name in groups[0][1] if name not in ("drift", "detail", "settled", "pick", "drift2", "detail2")]
    hr = float(np.mean([np.mean(g["HR: best step and blend"]) for _, g in groups]))
    print(f"{len(groups)} runs, {sum(len(g['D']) for _, g in groups)} photos (dB): mean gain, share of the HR's best "
          "step and blend, worst photo, worst run mean")
    for name in rows:
        means = [float(np.mean(g[name])) for _, g in groups]
        worst = min(min(g[name]) for _, g in groups)
        print(f"{name:26s} {np.mean(means):+.3f} {np.mean(means) / hr * 100:4.0f} % {worst:+.2f} {min(means):+.2f}")
    print("\nphoto: drift, detail, D whole?, whole of the step, what ships | the step that ships, its drift, "
          "its detail, D2")
    for label, g in groups:
        for i, (d, f, settled) in enumerate(zip(g["drift"], g["detail"], g["settled"])):
            print(f"{label} image {i}: {d:.3f} {f:.3f} {'whole' if settled else '-'} "
                  f"{g[f'whole of step {args.step}'][i]:+.2f} {g['what ships'][i]:+.2f} | step {g['pick'][i]:.0f} "
                  f"{g['drift2'][i]:.3f} {g['detail2'][i]:.3f} {g['D2: whole of shipped step'][i]:+.2f}")


if __name__ == "__main__":
    main()
