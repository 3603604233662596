"""Why HR-aware finetuning loses PSNR on the proxy benchmark: diagnostics and short runs (CPU).

    .venv/bin/python benchmarks/hraware_sweep.py diag [--presets camera] [--images 2] [--size 512]
    .venv/bin/python benchmarks/hraware_sweep.py run --preset camera --steps 300 --eval-every 100 \
        [--method hraware|lway] [--lr 2e-5] [--set far_weight=0.1 --set controller=false ...] [--tag NAME]
    .venv/bin/python benchmarks/hraware_sweep.py table        # the recorded runs as a Markdown table

* **diag**: how well the frozen LR reconstruction network reproduces the real LR ``y`` of a
  preset, ``PSNR(R(x, c ⊙ E_d(y), E_i(x)), y)`` in dB (RGB) for the true HR ``x``, the
  unadapted SR output ``x̂₀``, ``Up(y)`` and simple downsamplings, with ``c`` = 1, HQI (the
  finetuning controller) and 1 − HQI (the pretraining form); the fine-tuning loss along the
  line ``x̂₀ + t·(x − x̂₀)`` (where is it lowest: toward the HR, t > 0, or away from it?); and the
  cosine between the loss's descent direction at ``x̂₀`` and ``x − x̂₀``.
* **run**: one finetuning of ``--model`` on ``--images`` photos of the proxy benchmark (the KDE
  wallpapers of ``adassr_proxy.py``, centre crops of ``--size`` px) degraded by one preset (one
  camera: seed ``--seed``), PSNR-Y / SSIM-Y of the weights the loop would return, the unadapted
  ones included, every ``--eval-every`` steps, and of the weights the adapter finally keeps
  (``--stopping`` selects them). Each run is appended to ``<out>/runs.jsonl``.
  ``--reconstructor true-kernel`` replaces the reconstruction network by the preset's own blur
  and subsampling (noise and JPEG left out): the loss is ``ℓ1(D_k(x̂), y)`` with the true
  ``k``, what a perfect, noise-free reconstructor would give (an upper bound of the paradigm;
  not for ``bicubic-clean``, which has no kernel).

Everything runs on the CPU; ``--threads`` sets torch's threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ttasr
from ttasr.adapters.base import Callback
from ttasr.adapters.stopping import Stopping, stopping_from_config
from ttasr.adapters.training import weighted_l1
from ttasr.degradations import degrade, degrade_with_kernel
from ttasr.degradations.realesrgan import usm_sharpen
from ttasr.inference import enhance_tensor
from ttasr.methods.hraware.hqi import high_resolution_quality_indicator, upsample_lr
from ttasr.metrics import psnr_y, ssim_y
from ttasr.models.model import forward

from adassr_proxy import load_photos as photos  # noqa: E402 - the proxy photos, in its order

def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a.clamp(0, 1) - b.clamp(0, 1)).square().mean())
    return 10 * math.log10(1 / max(mse, 1e-12))


# ------------------------------------------------------------------------------ diag
def diag(args: argparse.Namespace) -> None:
    model = ttasr.load_model(args.model)
    s = model.scale
    a = ttasr.HRAware(model, reconstructor=args.reconstructor, progress=False, device="cpu")
    nets = a.frozen_networks()
    for m in nets.values():
        m.eval().requires_grad_(False)
    net = a.reconstructor
    dist = a.distance
    d = net.config.embed_dim
    print(f"# reconstructor: {a._network_where}; HQI distance: {dist.description if dist else None}; "
          f"final pretraining l1: {net.metadata.get('final_l1')}")
    pics = photos(args.images, args.size)
    out: dict[str, Any] = {}
    for preset in args.presets.split(","):
        rows: dict[str, list[float]] = {}
        lines: dict[str, list[float]] = {}
        cosines: list[float] = []
        usm_l1: list[float] = []
        for _, hr in pics:
            y = degrade(hr, s, preset, seed=args.seed).lr
            with torch.no_grad():
                sr0 = enhance_tensor(model, y, device="cpu").clamp(0, 1)
                up = upsample_lr(y, tuple(hr.shape[-2:]))
                usm = usm_sharpen(hr).clamp(0, 1)
                cands = {"HR x": hr, "USM(HR)": usm, "SR0 (unadapted)": sr0, "Up(y) bicubic": up}
                hqis = {k: float(high_resolution_quality_indicator(v, y, dist.distance))
                        for k, v in cands.items() if v is not None} if dist else {}
                for name, x in cands.items():
                    if x is None:
                        continue
                    for cname in ("1", "HQI", "1-HQI", "0", "0.05", "0.1", "0.2", "0.4"):
                        if cname in ("HQI", "1-HQI") and not dist:
                            continue
                        h = hqis.get(name, 1.0)
                        c = h if cname == "HQI" else (1 - h if cname == "1-HQI" else float(cname))
                        r = net(x, y, torch.full((1, d), c))
                        rows.setdefault(f"R({name}), c={cname}", []).append(psnr(r, y))
                    rows.setdefault(f"HQI({name})", []).append(hqis.get(name, float("nan")))
                # simple baselines: the LR made from the HR by area / bicubic downsampling
                rows.setdefault("area-down(HR) vs y", []).append(psnr(F.avg_pool2d(hr, s), y))
                rows.setdefault("bicubic-down(HR) vs y", []).append(
                    psnr(F.interpolate(hr, scale_factor=1 / s, mode="bicubic", antialias=True), y))
                rows.setdefault("area-down(SR0) vs y", []).append(psnr(F.avg_pool2d(sr0, s), y))
                rows.setdefault("PSNR-Y(SR0, HR)", []).append(psnr_y(sr0, hr, s))
                rows.setdefault("PSNR-Y(USM(HR), HR)", []).append(psnr_y(usm, hr, s))
                # the finetuning loss (controller as in finetuning, no noise) along SR0 -> HR
                for t in (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25):
                    xt = (sr0 + t * (hr - sr0)).clamp(0, 1)
                    c = float(high_resolution_quality_indicator(xt, y, dist.distance)) if dist else 1.0
                    for cname, cv in (("c=HQI", c), ("c=1", 1.0), ("c=0.1", 0.1), ("c=1-HQI", 1 - c)):
                        r = net(xt, y, torch.full((1, d), cv))
                        lines.setdefault(f"l1 {cname} t={t:+.2f}", []).append(float((r - y).abs().mean()))
                    far = a.regularizer(xt, net.image_encoder(xt))
                    if far is not None:
                        lines.setdefault(f"lambda*FAR t={t:+.2f}", []).append(float(far))
                cu = float(high_resolution_quality_indicator(usm, y, dist.distance)) if dist else 1.0
                usm_l1.append(float((net(usm, y, torch.full((1, d), cu)) - y).abs().mean()))
            # descent direction of the l1 reconstruction loss at SR0 vs the direction to the HR
            x = sr0.clone().requires_grad_(True)
            with torch.no_grad():
                c = float(high_resolution_quality_indicator(sr0, y, dist.distance)) if dist else 1.0
            loss = (net(x, y, torch.full((1, d), c)) - y).abs().mean()
            (g,) = torch.autograd.grad(loss, x)
            cosines.append(float(F.cosine_similarity((-g).flatten(), (hr - sr0).flatten(), dim=0)))
        print(f"\n## preset {preset}: PSNR (RGB, dB) against the real LR y, mean over {len(pics)} photos")
        for k, v in rows.items():
            print(f"{k:<48}{np.mean(v):8.3f}   " + " ".join(f"{x:.3f}" for x in v))
        print("finetuning l1 loss along x_t = SR0 + t (HR - SR0) (c = HQI(x_t), no noise); t = 1 is the HR:")
        groups: dict[str, dict[str, float]] = {}
        for k, v in lines.items():
            what, t_ = k.rsplit(" t=", 1)
            groups.setdefault(what, {})[t_] = float(np.mean(v))
        ts = list(next(iter(groups.values())))
        print(f"  {'t':<16}" + "".join(f"{t_:>10}" for t_ in ts) + f"{'argmin t':>10}")
        for what, vals in groups.items():
            best = min(vals, key=vals.__getitem__)
            print(f"  {what:<16}" + "".join(f"{vals[t_]:>10.5f}" for t_ in ts) + f"{best:>10}")
        print(f"l1 of R(USM(HR)) at c=HQI: {np.mean(usm_l1):.5f} (HR: {np.mean(lines['l1 c=HQI t=+1.00']):.5f})")
        print(f"cos(-grad L at SR0, HR - SR0): {np.mean(cosines):+.4f}   " + " ".join(f"{c:+.4f}" for c in cosines))
        out[preset] = {"rows": {k: list(map(float, v)) for k, v in rows.items()},
                       "line": {k: list(map(float, v)) for k, v in lines.items()}, "cos": cosines}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "diag.json").write_text(json.dumps(out, indent=1))


# ------------------------------------------------------------------------------ run
class Recorder(Stopping, Callback):
    """Wraps a stopping rule: records PSNR-Y / SSIM-Y of the evaluated weights (and the mean
    loss since the last evaluation), then returns the rule's own score."""

    name = "recorder"
    scores_start = True

    def __init__(self, inner: Stopping, highs: list[torch.Tensor]) -> None:
        self.inner, self.highs = inner, highs
        self.records: list[dict[str, Any]] = []
        self.eval_seconds = 0.0
        self._losses: list[float] = []

    def prepare(self, adapter: Any, group: Any) -> None:
        self.inner.prepare(adapter, group)

    def score(self, adapter: Any, network: torch.nn.Module, group: Any) -> float | None:
        t = time.perf_counter()
        current = adapter.model.with_weights(network)
        srs = [enhance_tensor(current, y, device=adapter.device, progress=False) for y in group.tensors]
        s = adapter.model.scale
        rec = {"psnr": [psnr_y(sr, hr, s) for sr, hr in zip(srs, self.highs)],
               "ssim": [ssim_y(sr, hr, s) for sr, hr in zip(srs, self.highs)],
               "loss": float(np.mean(self._losses)) if self._losses else None}
        self._losses = []
        rule = self.inner.score(adapter, network, group)
        rec["rule_score"] = rule
        self.records.append(rec)
        self.eval_seconds += time.perf_counter() - t
        return rule

    def should_stop(self, scores: Any) -> bool:
        return self.inner.should_stop(scores)

    def improves(self, score: float, best: float, scores: Any) -> bool:
        return self.inner.improves(score, best, scores)

    def on_step(self, adapter: Any, step: int, loss: float) -> None:
        self._losses.append(loss)


def parse_value(v: str) -> Any:
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v)
    except ValueError:
        return v


def run(args: argparse.Namespace) -> None:
    model = ttasr.load_model(args.model)
    s = model.scale
    pics = photos(args.images, args.size)
    highs = [hr for _, hr in pics]
    lows = [degrade(hr, s, args.preset, seed=args.seed).lr for hr in highs]
    overrides: dict[str, Any] = dict(kv.split("=", 1) for kv in args.set)
    overrides = {k: parse_value(v) for k, v in overrides.items()}
    cfg: dict[str, Any] = {"progress": False, "device": "cpu", "seed": args.seed, "eval_every": args.eval_every}
    if args.steps is not None:
        cfg["max_steps"] = args.steps
    if args.lr is not None:
        cfg["lr"] = args.lr
    cfg.update(overrides)
    true_kernel = args.reconstructor == "true-kernel"
    adapter = ttasr.create_adapter(args.method, model, reconstructor=None if true_kernel else args.reconstructor,
                                   **cfg)
    if true_kernel:
        kernel = degrade(highs[0], s, args.preset, seed=args.seed).kernel
        if kernel is None:
            raise SystemExit(f"--reconstructor true-kernel: the preset {args.preset} has no blur kernel")

        def true_kernel_loss(student: torch.nn.Module, batch: Any) -> torch.Tensor:
            sr = forward(student, batch.inputs)
            return weighted_l1(degrade_with_kernel(sr, kernel, s), batch.targets, batch.weights)

        adapter.compute_loss = true_kernel_loss  # type: ignore[method-assign]
    rule = stopping_from_config(adapter.config)
    rec = Recorder(rule, highs)
    adapter.stopping = rec
    t = time.perf_counter()
    adapter.fit(list(lows), callbacks=[rec])
    seconds = time.perf_counter() - t
    res = adapter.results[0]
    kept_model = adapter.adapted_model()
    kept = [psnr_y(enhance_tensor(kept_model, y, device="cpu", progress=False), hr, s) for y, hr in zip(lows, highs)]
    steps = [0] + [min(k * args.eval_every, res.steps) for k in range(1, len(rec.records))]
    row = {"tag": args.tag, "method": args.method, "reconstructor": args.reconstructor, "preset": args.preset,
           "images": args.images, "size": args.size, "seed": args.seed,
           "config": {k: v for k, v in cfg.items() if k not in ("progress", "device")},
           "lr": getattr(adapter, "learning_rate", None), "describe": {k: v for k, v in adapter.describe().items()
                                                                      if "sha256" not in k},
           "stopping": rule.name, "steps": steps, "psnr": [float(np.mean(r["psnr"])) for r in rec.records],
           "psnr_each": [r["psnr"] for r in rec.records], "ssim": [float(np.mean(r["ssim"])) for r in rec.records],
           "loss": [r["loss"] for r in rec.records], "rule_score": [r["rule_score"] for r in rec.records],
           "best_step": res.best_step if hasattr(res, "best_step") else None,
           "kept_psnr": float(np.mean(kept)), "seconds": round(seconds, 1),
           "eval_seconds": round(rec.eval_seconds, 1), "threads": torch.get_num_threads()}
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "runs.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("tag", "preset", "lr", "stopping", "steps", "psnr", "kept_psnr",
                                          "best_step", "seconds")}))


def table(args: argparse.Namespace) -> None:
    path = args.out / "runs.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print("| tag | method | preset | lr | settings | stopping | PSNR-Y by step | kept | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = {k: v for k, v in r["config"].items() if k not in ("seed", "eval_every", "max_steps", "lr")}
        traj = " / ".join(f"{st}: {p:.3f}" for st, p in zip(r["steps"], r["psnr"]))
        print(f"| {r['tag']} | {r['method']} | {r['preset']} | {r['lr']:g} | {extra or ''} | {r['stopping']} | "
              f"{traj} | {r['kept_psnr']:.3f} | {r['seconds']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("diag", "run", "table"))
    ap.add_argument("--model", default="span-x4")
    ap.add_argument("--reconstructor", default=None, help="a reconstructor file (default: the cached default), "
                    "or, for run, 'true-kernel' (see above)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--presets", default="camera", help="diag: presets, comma-separated")
    ap.add_argument("--preset", default="camera", help="run: the preset")
    ap.add_argument("--method", default="hraware")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--set", action="append", default=[], help="config field=value, repeatable")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path, default=Path("outputs/hraware_sweep"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    {"diag": diag, "run": run, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
