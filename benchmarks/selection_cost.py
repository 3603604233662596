"""Cost of a selection rule's evaluations against the fit they select from.

    .venv/bin/python benchmarks/selection_cost.py [--rules niqe-plateau,heldout] [--images 4 --size 768]
        [--steps 200 --eval-every 100 --threads 1]

Runs one AdaSSR fit per rule with the default configuration (the rule and the budget
excepted) on the proxy photos with the ``camera`` preset. Each rule is wrapped so that the
time spent in its ``score`` calls is measured directly, and so that it never stops early
(every fit runs the whole budget). It prints, per rule, the fit's time, the evaluations'
time and their share; then the share extrapolated to the default budget (``max_steps`` of
``AdaSSRConfig``, an evaluation every ``eval_every`` steps, the start included) from the
per-step and per-evaluation times of this run and the setup time of a fit of 0 steps
(kernel estimation, attention maps, model copies). For ``guarded-fallback`` it also times one
held-out evaluation of the unadapted weights after the fit: AdaSSR's blend check makes two to
four of them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
import ttasr  # noqa: E402
from adassr_proxy import load_photos  # noqa: E402
from ttasr.adapters import ImageGroup  # noqa: E402
from ttasr.adapters.stopping import GuardedFallback, HeldOutPairs, Stopping, stopping_from_config  # noqa: E402
from ttasr.degradations import degrade  # noqa: E402
from ttasr.models import OutputBlend  # noqa: E402


class Timed(Stopping):
    """``rule``'s scores and choices, with the time of each ``score`` call kept; never stops."""

    def __init__(self, rule: Stopping) -> None:
        self.rule, self.seconds, self.calls = rule, 0.0, 0
        self.name = rule.name  # type: ignore[misc]
        self.scores_start = rule.scores_start  # type: ignore[misc]

    def prepare(self, adapter: Any, group: Any) -> None:
        self.rule.prepare(adapter, group)

    def begin(self, adapter: Any, network: Any, group: Any) -> None:
        """The rule's look at the starting weights (the guarded rule's back-projection), timed."""
        t = time.perf_counter()
        self.rule.begin(adapter, network, group)
        self.seconds += time.perf_counter() - t

    def score(self, adapter: Any, network: Any, group: Any) -> float | None:
        t = time.perf_counter()
        s = self.rule.score(adapter, network, group)
        self.seconds += time.perf_counter() - t
        self.calls += s is not None
        return s

    def improves(self, score: float, best: float, scores: Any) -> bool:
        return self.rule.improves(score, best, scores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", default="niqe-plateau,heldout")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = ttasr.load_model("span-x4")
    lows = [degrade(hr, 4, "camera", seed=0).lr for _, hr in load_photos(args.images, args.size)]
    default = ttasr.AdaSSRConfig()
    print(f"# span-x4, {len(lows)} photos of {args.size} px (camera), {args.steps} steps, an evaluation every "
          f"{args.eval_every}, {torch.get_num_threads()} threads")
    t = time.perf_counter()
    ttasr.AdaSSR(model, default.replace(stopping="fixed", max_steps=0, progress=False)).fit(lows)
    setup = time.perf_counter() - t
    print(f"# setup (a fit of 0 steps): {setup:.1f} s")
    print(f"{'rule':<16}{'fit s':>9}{'evals':>7}{'eval s':>9}{'share':>8}{'s/eval':>9}{'s/step':>9}"
          f"{f'share at {default.max_steps} steps':>24}")
    checks: list[tuple[str, float, float]] = []
    for name in [r for r in args.rules.split(",") if r]:
        config = default.replace(stopping=name, max_steps=args.steps, eval_every=args.eval_every, progress=False)
        timed = Timed(stopping_from_config(config))
        t = time.perf_counter()
        fit = ttasr.AdaSSR(model, config, stopping=timed).fit(lows)
        total = time.perf_counter() - t
        steps = fit.results[0].steps
        per_eval = timed.seconds / max(timed.calls, 1)
        per_step = max(total - timed.seconds - setup, 0.0) / max(steps, 1)
        n_default = default.max_steps // default.eval_every + int(timed.scores_start)
        long_evals = n_default * per_eval
        share = long_evals / (setup + default.max_steps * per_step + long_evals)
        print(f"{name:<16}{total:9.1f}{timed.calls:7d}{timed.seconds:9.1f}{100 * timed.seconds / total:7.1f}%"
              f"{per_eval:9.2f}{per_step:9.3f}{100 * share:23.1f}%", flush=True)
        if isinstance(timed.rule, GuardedFallback):  # the rule AdaSSR checks the blend after
            net = fit.model.module.to(fit.device).eval()
            checks.append((name, held_out_seconds(fit, timed.rule, net),
                           held_out_seconds(fit, timed.rule, OutputBlend(net, net, 0.5))))
    for name, start, blend in checks:  # AdaSSR's blend check: the start and 1-3 blends on the held-out pairs
        print(f"# {name}: one held-out evaluation {start:.2f} s, {blend:.2f} s of an output blend (two networks); "
              f"AdaSSR's blend check (blend_check) makes the start's and 1 to 3 blends' after the fit: "
              f"{2 * start:.2f}-{4 * start:.2f} s in weight space, {start + blend:.2f}-{start + 3 * blend:.2f} s in "
              f"output space (the default with guarded-fallback)")


def held_out_seconds(fit: Any, rule: HeldOutPairs, net: torch.nn.Module) -> float:
    """Seconds of one held-out evaluation of ``net`` on the fit's images (the unit of AdaSSR's
    blend check), the best of three."""
    group = ImageGroup(fit.records, list(range(len(fit.records))), [r.rgb for r in fit.records])
    times = []
    for _ in range(3):
        t = time.perf_counter()
        HeldOutPairs.score(rule, fit, net, group)
        times.append(time.perf_counter() - t)
    return min(times)


if __name__ == "__main__":
    main()
