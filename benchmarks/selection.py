"""Which weights should AdaSSR return without ground truth? Selection rules side by side.

    .venv/bin/python benchmarks/selection.py [--steps 300] [--presets ...] [--images 4 --size 768] \
        [--candidate kernel_estimator=bicubic --candidate noise_augment=always ...]

For each preset (one camera: one multi-image adaptation over all images; with ``--mode single``
one adaptation per image, and each rule selects per image) it runs:

* the **candidate trajectory**: AdaSSR with the candidate configuration ``CANDIDATE``
  (noise augmentation only on noisy inputs, EMA 0.99), ``--steps`` and ``--eval-every``,
  held-out squares active, run for the whole budget; at
  every evaluation it records each candidate rule's score and, for the table only, PSNR-Y
  against the HR images. Each rule's selection (and early stop) is then replayed on those
  records with the rule's own ``improves``/``should_stop``, so every rule is judged on the
  same trajectory;
* the **oracle**: the same adaptation with pairs made by the true kernel (bicubic pairs for
  ``bicubic-clean``), the best evaluated step chosen with the HR images (when the candidate
  already trains on the true pairs, its trajectory is the oracle's);
* the **paper preset**: ``AdaSSRConfig.paper()`` (NIQE rule, EMA 0.999, noise augmentation
  always) at the same budget, selection live;
* with ``--default-row``, the **default**: ``ttasr.AdaSSR(model)`` with its own budget, rule
  and blend, live (only the seed is set); the report labels it with the rule and blend it ran
  with (``live <stopping> ×<blend>``).

Candidates: ``final`` (fixed budget), ``niqe-plateau`` (the paper), ``consistency``
(back-projection ``‖D_k̂(N(y)) − y‖``), ``heldout`` (error on held-out internal pairs),
``heldout+gain`` (a new best must gain 1 % of the start's held-out error), ``guarded+gain``
(the same, where weights whose back-projection error exceeds the start's cannot win:
``stopping="heldout-guarded"``), and two that
are scored here only: ``trust-region`` (the lowest back-projection error plus the output's
mean distance to the unadapted output, both L1 on [0, 1]: a step must gain more consistency
than it moves the output) and ``ema-agreement`` (the evaluation after the start where the
EMA and the raw weights' outputs differ least). With ``--shrink 0.2,0.5`` each evaluation also
scores the weights pulled back towards the start, ``θ0 + λ(θ − θ0)``, so the report adds the
rows ``final ×λ``, ``heldout+gain ×λ``, ``consistency ×λ`` and ``guarded+gain ×λ``: the
rule's pick, shrunk; the records also hold each blend's back-projection error per image and
its held-out error, what a rule without the HR could check the returned weights by; the same for
each blend of the outputs, ``λ N_θ(y) + (1 − λ) N_θ0(y)`` (``mix``; report row ``outputs,
checked``: AdaSSR's default with a given kernel in multi-image mode), and the held-out error in
L2 (``heldout_l2``; rules ``heldout-l2+gain``, ``guarded-fallback-l2``), and through JPEG where it shows
in an image (``heldout_jpeg``: the prediction compressed like the image; ``heldout_jpeg_in``: its input
too; each per image and per output blend; rules ``heldout-jpeg+gain``, ``heldout-jpeg-in+gain``, rows
``blind Q…``, ``blind Q2…``; benchmarks/RESULTS.md, 'The held-out error through JPEG'). Results are
appended to --out/results.json as each run ends (atomic), and --resume skips finished runs;
``--report --merge DIR`` prints one table over several folders (presets run in parallel), and
``--summary DIR ...`` judges the blend rules over every preset run in many folders (other
photos, either mode): mean gain, worst photo, and the runs that break the no-harm bounds.
``--keep-outputs`` also writes the trajectory's SR output at every evaluation (float16, with the
LR and HR images) under --out/outputs/<preset>/<group>/, so that blends the records do not hold
can be scored offline (``benchmarks/flat_blend.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import ttasr  # noqa: E402
from ttasr._config import PlainConfig  # noqa: E402
from adassr_proxy import load_photos, save  # noqa: E402
from ttasr.adapters.stopping import (  # noqa: E402
    BackProjection, FixedBudget, GuardedFallback, GuardedHeldOut, HeldOutPairs, NIQEPlateau, Stopping)
from ttasr.adapters.training import blend_weights  # noqa: E402
from ttasr.cli.options import overrides_from  # noqa: E402
from ttasr.degradations import degrade, estimate_chroma_noise, gaussian_blur, white_noise_share  # noqa: E402
from ttasr.inference import enhance_tensor  # noqa: E402
from ttasr.metrics import NIQE, psnr_y  # noqa: E402
from ttasr.pairs.jpeg_trace import jpeg_trace_of
from ttasr.models import OutputBlend  # noqa: E402

PRESETS = ("bicubic-clean", "optical-blur", "camera", "sensor-noise", "jpeg-heavy")
CANDIDATE: dict[str, object] = dict(noise_augment="auto", ema_decay=0.99)
"""The training configuration the rules select from (the stopping rule itself is replayed)."""


def candidate_overrides(items: list[str]) -> dict[str, object]:
    """``--candidate KEY=VALUE`` items as AdaSSR config values, converted like ``ttasr adapt --set``."""
    try:
        return overrides_from(argparse.Namespace(), ttasr.AdaSSRConfig, None, items)
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"--candidate: {exc}") from None


def recorded(candidate: dict[str, object]) -> dict[str, object]:
    """``candidate`` as it is stored in ``results.json`` and compared with it: nested configs
    (``augment_config.usm_p=0``) as plain dicts, tuples as lists."""
    def plain(value: object) -> object:
        if isinstance(value, PlainConfig):
            return value.to_dict()
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    return json.loads(json.dumps(candidate, default=plain))


def candidates() -> dict[str, Stopping]:
    return {
        "final": FixedBudget(),
        "niqe-plateau": NIQEPlateau(),
        "consistency": BackProjection(),
        "heldout": HeldOutPairs(),
        "heldout+gain": HeldOutPairs(min_gain=0.01),
        "guarded+gain": GuardedHeldOut(min_gain=0.01),
        "guarded-s1+gain": GuardedHeldOut(min_gain=0.01),
        "guarded-fallback": GuardedFallback(min_gain=0.01),
        "heldout-l2+gain": HeldOutPairs(min_gain=0.01, norm="l2"),
        "guarded-fallback-l2": GuardedFallback(min_gain=0.01, norm="l2"),
        "heldout-jpeg+gain": HeldOutPairs(min_gain=0.01),
        "heldout-jpeg-in+gain": HeldOutPairs(min_gain=0.01),
    }


RECORDED_AS = {"guarded+gain": "heldout", "guarded-s1+gain": "heldout", "guarded-fallback": "heldout",
               "heldout-l2+gain": "heldout_l2", "guarded-fallback-l2": "heldout_l2",
               "heldout-jpeg+gain": "heldout_jpeg", "heldout-jpeg-in+gain": "heldout_jpeg_in"}
"""Rules whose score is recorded under another rule's name (the guards read ``GUARD_ERRORS``)."""

GUARD_ERRORS = {"guarded-s1+gain": ("consistency_smoothed", "1.0")}
"""The recorded error a guarded rule vetoes by, where it is not ``consistency``: the record key
and its sub-key (``guarded-s1+gain``: the residual smoothed with a Gaussian of 1 LR px)."""


def guard_errors(name: str, records: list[dict]) -> list[float] | None:
    """The back-projection errors that rule ``name`` is guarded by, or ``None`` if not recorded."""
    key, sub = GUARD_ERRORS.get(name, ("consistency", None))
    if not all(key in r for r in records):
        return None if name in GUARD_ERRORS else [0.0] * len(records)
    return [r[key] if sub is None else r[key][sub] for r in records]


SMOOTHED = (0.5, 1.0, 2.0)
"""Gaussian sigmas (LR px) of the smoothed back-projection residuals recorded beside ``consistency``
(white noise in the LR shrinks under the blur, errors of the SR output's structure much less)."""


class Recorder(Stopping):
    """Scores every candidate and PSNR-Y against the HR at each evaluation; selects nothing."""

    name = "recorder"
    scores_start = True

    def __init__(self, highs: list[torch.Tensor], rules: dict[str, Stopping], niqe: NIQE,
                 shrink: tuple[float, ...] = (), keep: Path | None = None) -> None:
        self.highs, self.rules, self.niqe, self.shrink, self.keep = highs, rules, niqe, shrink, keep
        self.records: list[dict] = []
        self.start: list[torch.Tensor] | None = None
        self.start_weights: dict[str, torch.Tensor] | None = None
        self.scratch: torch.nn.Module | None = None
        self.start_network: torch.nn.Module | None = None
        self.start_residuals: list[torch.Tensor] | None = None

    def prepare(self, adapter, group) -> None:
        HELDOUT_JPEG.prepare(adapter, group)  # the same squares as the held-out rule's
        for rule in self.rules.values():
            if not isinstance(rule, NIQEPlateau):  # NIQE is computed here from the shared SR output
                rule.prepare(adapter, group)

    def score(self, adapter, network, group):
        s = adapter.model.scale
        current = adapter.model.with_weights(network)
        srs = [enhance_tensor(current, y, device=adapter.device, progress=False) for y in group.tensors]
        rec = {"psnr": [psnr_y(sr, hr, s) for sr, hr in zip(srs, self.highs)],
               "niqe-plateau": float(np.mean([self.niqe(sr) for sr in srs]))}
        residuals = back_projection_residuals(adapter, group, srs)
        back = [float(r.abs().mean()) for r in residuals]
        rec["consistency"] = float(np.mean(back))
        rec["consistency_images"] = back
        rec["consistency_smoothed"] = {str(sigma): float(np.mean([gaussian_blur(r, sigma).abs().mean()
                                                                  for r in residuals])) for sigma in SMOOTHED}
        if self.start is None:
            self.start = srs
        if self.keep is not None:
            keep_outputs(self.keep, len(self.records), srs, group.tensors, self.highs)
        rec["change"] = float(np.mean([(sr - s0).abs().mean() for sr, s0 in zip(srs, self.start)]))
        raw = getattr(adapter, "raw_network", None)
        if raw is not None and raw is not network:
            raw_model = adapter.model.with_weights(raw)
            raws = [enhance_tensor(raw_model, y, device=adapter.device, progress=False) for y in group.tensors]
            rec["ema_gap"] = float(np.mean([(r - sr).abs().mean() for r, sr in zip(raws, srs)]))
        rec["heldout"] = rec["heldout+gain"] = self.rules["heldout"].score(adapter, network, group)
        rec["heldout_l2"] = HELDOUT_L2.score(adapter, network, group)
        rec["heldout_jpeg_images"] = HELDOUT_JPEG.image_errors(adapter, network, group)
        rec["heldout_jpeg"] = float(np.mean(rec["heldout_jpeg_images"]))
        rec["heldout_jpeg_in_images"] = heldout_jpeg_inputs(adapter, network, group)
        rec["heldout_jpeg_in"] = float(np.mean(rec["heldout_jpeg_in_images"]))
        if self.shrink:
            self.record_shrunk(rec, adapter, network, group)
            self.record_mixed(rec, adapter, network, group, srs, residuals)
        self.records.append(rec)
        return None

    def record_mixed(self, rec: dict, adapter, network, group, srs, residuals) -> None:
        """For each ``λ`` of ``self.shrink``, the output blend ``λ N_θ(y) + (1 − λ) N_θ0(y)``:
        PSNR-Y per image (``mix``), its back-projection error per image (``mix_consistency``, the
        same blend of the residuals) and its held-out error (``mix_heldout``)."""
        if self.start_residuals is None:
            self.start_residuals = residuals
            self.start_network = copy.deepcopy(network)
        assert self.start is not None and self.start_network is not None
        s = adapter.model.scale
        rec["mix"], rec["mix_consistency"], rec["mix_heldout"], rec["mix_heldout_jpeg"] = {}, {}, {}, {}
        for lam in (x for x in self.shrink if 0 <= x <= 1):  # outputs blend only between the ends
            key = str(lam)
            rec["mix"][key] = [psnr_y(lam * sr + (1 - lam) * s0, hr, s)
                               for sr, s0, hr in zip(srs, self.start, self.highs)]
            rec["mix_consistency"][key] = [float((lam * r + (1 - lam) * r0).abs().mean())
                                           for r, r0 in zip(residuals, self.start_residuals)]
            mixed = OutputBlend(self.start_network, network, lam)
            rec["mix_heldout"][key] = self.rules["heldout"].score(adapter, mixed, group)
            rec["mix_heldout_jpeg"][key] = HELDOUT_JPEG.image_errors(adapter, mixed, group)
            rec.setdefault("mix_heldout_jpeg_in", {})[key] = heldout_jpeg_inputs(adapter, mixed, group)

    def record_shrunk(self, rec: dict, adapter, network, group) -> None:
        """For each ``λ`` of ``self.shrink``, the weights ``θ0 + λ (θ − θ0)``: PSNR-Y per image
        (``shrink``), and what a rule without the HR could see of them: the back-projection error
        per image (``shrink_consistency``) and the held-out error (``shrink_heldout``)."""
        weights = {k: v.detach().clone() for k, v in network.state_dict().items()}
        if self.start_weights is None:
            self.start_weights = weights
            self.scratch = copy.deepcopy(network)
        assert self.scratch is not None
        rec["shrink"], rec["shrink_consistency"], rec["shrink_heldout"] = {}, {}, {}
        for lam, model in blended_models(adapter, self.scratch, self.start_weights, weights, self.shrink):
            srs = [enhance_tensor(model, y, device=adapter.device, progress=False) for y in group.tensors]
            rec["shrink"][lam] = [psnr_y(sr, hr, adapter.model.scale) for sr, hr in zip(srs, self.highs)]
            rec["shrink_consistency"][lam] = [float(r.abs().mean())
                                              for r in back_projection_residuals(adapter, group, srs)]
            rec["shrink_heldout"][lam] = self.rules["heldout"].score(adapter, self.scratch, group)
            rec.setdefault("shrink_heldout_l2", {})[lam] = HELDOUT_L2.score(adapter, self.scratch, group)


def keep_outputs(folder: Path, index: int, srs: list[torch.Tensor], lows: list[torch.Tensor],
                 highs: list[torch.Tensor]) -> None:
    """Write evaluation ``index``'s SR outputs to ``folder`` (``eval<index>_img<i>.pt``, float16),
    and at the first evaluation the LR and HR images too, for scoring blends offline."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, sr in enumerate(srs):
        torch.save(sr.detach().to(torch.float16).clone(), folder / f"eval{index:03d}_img{i}.pt")
        if index == 0:
            torch.save(lows[i].detach().clone(), folder / f"lr_img{i}.pt")
            torch.save(highs[i].detach().clone(), folder / f"hr_img{i}.pt")


HELDOUT_L2 = HeldOutPairs(norm="l2")
"""The held-out error as a mean squared error, recorded beside the L1 one (same squares: the
held-out rule's ``prepare`` has set them)."""
def heldout_jpeg_inputs(adapter, network, group) -> list[float]:
    """:data:`HELDOUT_JPEG`'s error of each image with the pair's input ``y_d`` compressed like the
    image was too, where JPEG shows in it: the network sees in the pairs what it sees in the real LR
    (the held-out inputs are otherwise clean: downscaling removes the blocks). The prediction is
    clamped to [0, 1], in every image. Development only ('The held-out error through JPEG')."""
    from ttasr.models.model import forward

    errors = []
    with torch.no_grad():
        for (inp, target, weights), trace in zip(adapter.validation_pairs(group), HELDOUT_JPEG.jpeg_traces):
            if trace is not None:
                inp = trace.settings.roundtrip(inp.clamp(0, 1)).to(inp)
            out = forward(network, inp.to(adapter.device)).float().cpu().clamp(0, 1)
            if trace is not None:
                out = trace.compress(out)
            w = weights.expand_as(target)
            errors.append(float(((out - target).abs() * w).sum() / w.sum().clamp_min(1)))
    return errors


HELDOUT_JPEG = HeldOutPairs(through_jpeg=True)
"""The held-out error with each prediction compressed like its image was where JPEG shows in it
(``heldout_jpeg``; claim Q of benchmarks/RESULTS.md, 'The held-out error through JPEG')."""


def back_projection_residuals(adapter, group, srs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``D(N(y)) − y`` of each image: its SR output degraded by the adapter's pair kernel, minus the LR."""
    out = []
    for i, (y, sr) in enumerate(zip(group.tensors, srs)):
        b = adapter.pair_degradation(group, i)(sr)
        out.append(b - y[..., : b.shape[-2], : b.shape[-1]])
    return out


def blended_models(adapter, scratch: torch.nn.Module, start: dict[str, torch.Tensor], now: dict[str, torch.Tensor],
                   lambdas):
    """``(str(λ), model)`` for each ``λ``: ``start + λ (now − start)`` loaded into ``scratch`` (a
    network of the same shape, overwritten each time) as ``adapter``'s model."""
    for lam in lambdas:
        scratch.load_state_dict(blend_weights(start, now, lam))
        yield str(lam), adapter.model.with_weights(scratch)


def blended_psnr(adapter, scratch: torch.nn.Module, start: dict[str, torch.Tensor], now: dict[str, torch.Tensor],
                 lambdas, group, highs: list[torch.Tensor]) -> dict[str, list[float]]:
    """PSNR-Y per image of ``start + λ (now − start)`` for each ``λ`` (key ``str(λ)``)."""
    return {lam: [psnr_y(enhance_tensor(model, y, device=adapter.device, progress=False), hr, adapter.model.scale)
                  for y, hr in zip(group.tensors, highs)]
            for lam, model in blended_models(adapter, scratch, start, now, lambdas)}


class RecordedAdaSSR(ttasr.AdaSSR):
    """AdaSSR that keeps a handle on the raw (non-EMA) network, for the EMA-agreement record,
    and trains where the default would not (``gap``: why not; the report says where)."""

    gap: str | None = None

    def training_gap(self, group, compressed=None) -> str | None:
        """``None``: a trajectory is recorded even where the default keeps the pretrained weights."""
        self.gap = super().training_gap(group, compressed)
        return None

    def prepare(self, group, student) -> None:
        self.raw_network = student
        super().prepare(group, student)


def trust_region(records: list[dict]) -> int:
    """The evaluation with the lowest back-projection error plus distance to the start's output."""
    return int(np.argmin([r["consistency"] + r["change"] for r in records]))


def ema_agreement(records: list[dict]) -> int:
    """The evaluation after the start where the EMA and raw outputs differ least."""
    gaps = [r.get("ema_gap") for r in records[1:]]
    if not gaps or any(g is None for g in gaps):
        return 0
    return 1 + int(np.argmin(gaps))


RECORD_RULES = {"trust-region": trust_region, "ema-agreement": ema_agreement}
"""Rules replayed from the records only (no Stopping object in the engine)."""


def replay(rule: Stopping, scores: list[float], errors: list[float] | None = None) -> tuple[int, int]:
    """On a recorded score sequence (``scores[0]``: the start), as the loop would: the index of
    the evaluation the rule selects, and the index at which it stops. A
    :class:`GuardedHeldOut` also needs the recorded back-projection errors (``errors``)."""
    if isinstance(rule, FixedBudget):
        return len(scores) - 1, len(scores) - 1
    fresh = type(rule)(**({"min_gain": rule.min_gain} if isinstance(rule, HeldOutPairs) else {}))
    if isinstance(fresh, GuardedHeldOut):
        if errors is None:
            raise ValueError("replaying the guarded rule needs the back-projection errors")
        fresh.limit = errors[0]
    if isinstance(fresh, GuardedFallback):  # its score says whether the guard accepted the weights
        scores = [s + (0.0 if e <= errors[0] else fresh.REJECTED) for s, e in zip(scores, errors)]
    best, pick = scores[0], 0
    for k in range(1, len(scores)):
        if isinstance(fresh, GuardedHeldOut):
            fresh.last_error = errors[k]  # type: ignore[index]
        if fresh.improves(scores[k], best, scores[: k + 1]):
            best, pick = scores[k], k
        if fresh.should_stop(scores[: k + 1]):
            return pick, k
    return pick, len(scores) - 1


def replay_records(rule: Stopping, name: str, records: list[dict]) -> int:
    """The evaluation that rule ``name`` selects on a trajectory's records."""
    scores = [r.get(RECORDED_AS.get(name, name), 0.0) for r in records]
    return replay(rule, scores, guard_errors(name, records))[0]


RUNS = ("trajectory", "oracle", "paper")
"""The runs of an adaptation group, in the order they are made."""


def merged(mine: dict, other: dict) -> dict:
    """``mine`` with what only ``other`` holds added, key by key down nested dicts: the same
    preset's runs made in different processes (``--runs``) form one group again."""
    out = dict(other)
    for key, value in mine.items():
        both = isinstance(value, dict) and isinstance(other.get(key), dict)
        out[key] = merged(value, other[key]) if both else value
    return out


def run_preset(model, preset, photos, args, niqe, results, store) -> None:
    """One preset: one multi-image adaptation (``--mode multi``), or one per photo (``single``)."""
    s = model.scale
    deg = [degrade(hr, s, preset, seed=args.seed) for _, hr in photos]
    if args.mode == "multi":
        groups = [("all", results.setdefault(preset, {}), deg, [hr for _, hr in photos])]
    else:
        per_image = results.setdefault(preset, {}).setdefault("images", {})
        groups = [(name, per_image.setdefault(name, {}), [d], [hr]) for (name, hr), d in zip(photos, deg)]
    for group_name, rows, group_deg, highs in groups:
        run_group(model, preset, group_deg, highs, rows, args, niqe, results, store, group_name)


def run_group(model, preset, deg, highs, rows, args, niqe, results, store, group_name: str = "all") -> None:
    """Candidate trajectory, oracle and paper preset on one adaptation group (records in ``rows``)."""
    s = model.scale
    lows = [d.lr for d in deg]
    base = dict(max_steps=args.steps, eval_every=args.eval_every, progress=False, seed=args.seed)
    what = f"{preset} ({len(lows)} image{'s' if len(lows) > 1 else ''})"
    if "unadapted" not in rows:
        rows["unadapted"] = [psnr_y(enhance_tensor(model, lr), hr, s) for lr, hr in zip(lows, highs)]
    if "jpeg" not in rows:  # whether JPEG shows in each LR image (the default returns whole outputs there)
        rows["jpeg"] = [jpeg_trace_of(lr, f"{preset} image {i}") is not None for i, lr in enumerate(lows)]
        save(store, results)
    if "chroma_noise" not in rows:  # each LR image's chroma noise (the default keeps the final weights where noisy)
        rows["chroma_noise"] = [estimate_chroma_noise(lr) for lr in lows]
        save(store, results)
    shares = {"noise_share": white_noise_share,  # its white-noise share (luminance noise counts too; claim Y)
              "noise_share_channels": partial(white_noise_share, per_channel=True)}  # one channel at a time (Z2)
    for key, share in shares.items():
        if key in rows:
            continue
        same = np.allclose([estimate_chroma_noise(lr) for lr in lows], rows["chroma_noise"], rtol=0, atol=1e-9)
        if not same:  # a run of other images resumed: its records are not these images'
            raise SystemExit(f"{store}: {what}: the images' chroma noise differs from the recorded one; resume with "
                             "the --photos, --size and --seed of the recorded runs")
        rows[key] = [share(lr) for lr in lows]
        save(store, results)
    if "default" not in rows and args.default_row:
        t = time.perf_counter()
        a = ttasr.AdaSSR(model, progress=False, seed=args.seed).fit(lows)
        nets = [a.adapted_model(i) for i in range(len(lows))]  # each image's blend where it has its own (Z5)
        rows["default"] = {"psnr": [psnr_y(enhance_tensor(net, lr), hr, s) for net, lr, hr in zip(nets, lows, highs)],
                           "best_step": a.results[0].best_step, "steps": a.results[0].steps,
                           "blend": a.results[0].blend, "image_blends": list(a.results[0].image_blends),
                           "config": {k: v for k, v in a.config.to_dict().items() if isinstance(v, (int, float, str))},
                           "seconds": time.perf_counter() - t}
        save(store, results)
        print(f"# {what}: default {rows['default']['seconds']:.0f} s", file=sys.stderr, flush=True)
    if "trajectory" not in rows and "trajectory" in args.runs:
        t = time.perf_counter()
        keep = args.out / "outputs" / preset / group_name if args.keep_outputs else None
        rec = Recorder(highs, candidates(), niqe, shrink=tuple(args.shrink), keep=keep)
        a = RecordedAdaSSR(model, stopping=rec, **base, **CANDIDATE).fit(lows)
        rows["trajectory"] = {"records": rec.records, "seconds": time.perf_counter() - t,
                              "noise_level": getattr(a, "noise_level", None), "not_adapted": a.gap,
                              "kernel": {k: v for k, v in a.kernel_estimates[0].params.items()
                                         if isinstance(v, (int, float, str))}}
        save(store, results)
        print(f"# {what}: candidate trajectory {rows['trajectory']['seconds']:.0f} s", file=sys.stderr, flush=True)
    if "oracle" not in rows and "oracle" in args.runs:
        t = time.perf_counter()
        rec = Recorder(highs, {"heldout": HeldOutPairs()}, niqe)
        truth = dict(kernel_estimator="bicubic", kernel=None) if deg[0].kernel is None else \
            dict(kernel_estimator="given", kernel=deg[0].kernel)
        config = {**CANDIDATE, **truth}
        if config == CANDIDATE:  # the candidate already trains on the true pairs: same run
            if "trajectory" not in rows:
                raise SystemExit(f"{what}: the oracle is the candidate's trajectory here; add it to --runs")
            records = rows["trajectory"]["records"]
        else:
            ttasr.AdaSSR(model, stopping=rec, **base, **config).fit(lows)
            records = rec.records
        rows["oracle"] = {"records": records, "seconds": time.perf_counter() - t}
        save(store, results)
        print(f"# {what}: oracle {rows['oracle']['seconds']:.0f} s", file=sys.stderr, flush=True)
    if "paper" not in rows and "paper" in args.runs:
        t = time.perf_counter()
        cfg = ttasr.AdaSSRConfig.paper().replace(**base)
        a = ttasr.AdaSSR(model, cfg).fit(lows)
        net = a.adapted_model()
        rows["paper"] = {"psnr": [psnr_y(enhance_tensor(net, lr), hr, s) for lr, hr in zip(lows, highs)],
                         "best_step": a.results[0].best_step, "steps": a.results[0].steps,
                         "seconds": time.perf_counter() - t}
        save(store, results)
        print(f"# {what}: paper {rows['paper']['seconds']:.0f} s", file=sys.stderr, flush=True)


def groups_of(rows: dict) -> list[dict]:
    """The adaptation groups of a preset's results: itself (multi-image) or one per photo (single)."""
    return list(rows["images"].values()) if "images" in rows else [rows]


SHRUNK_RULES = ("final", "heldout+gain", "consistency", "guarded+gain", "guarded-s1+gain")
"""Rules whose pick the report also shows pulled back towards the start (``--shrink``)."""


def blended_pick(records: list[dict], name: str, accepted: str, otherwise: str, space: str = "weights") -> list[float]:
    """PSNR-Y per image of the weights rule ``name`` selects on a trajectory's ``records``,
    returned as a blend (a recorded ``λ`` as a string; ``"1"``: whole): ``accepted`` where their
    back-projection error is no higher than the start's (the guard's verdict), else ``otherwise``.
    ``space``: ``"weights"`` blends the weights (``shrink``), ``"outputs"`` the outputs (``mix``)."""
    k = replay_records(candidates()[name], name, records)
    lam = accepted if records[k]["consistency"] <= records[0]["consistency"] else otherwise
    if lam == "1":
        return records[k]["psnr"]
    return output_mix(records, records[k], lam) if space == "outputs" else records[k][BLEND_RECORDS[space]][lam]


def blend_psnr(start: float, half: float, whole: float, fraction: float) -> float:
    """PSNR (dB, peak 1) of ``(1 − f)·N_0 + f·N`` from those of ``N_0`` (``start``), ``(N_0 + N)/2`` and ``N``:
    the mean squared error of an output blend is a quadratic in ``f`` through the three (up to the clamping
    of the blend to [0, 1]: within 0.02 dB of direct blends of kept outputs, benchmarks/jpeg_fraction.py)."""
    m0, m5, m1 = (10 ** (-p / 10) for p in (start, half, whole))
    a = 2 * m1 - 4 * m5 + 2 * m0
    b = m1 - m0 - a
    return float(-10 * np.log10(a * fraction ** 2 + b * fraction + m0))


def output_mix(records: list[dict], rec: dict, lam: str) -> list[float]:
    """PSNR-Y per image of ``lam`` (a fraction as a string) of a record's output blended with the start's: the
    recorded blend, or one that was not recorded from the start, half and whole (:func:`blend_psnr`)."""
    if lam in rec["mix"]:
        return rec["mix"][lam]
    return [blend_psnr(s, h, w, float(lam)) for s, h, w in zip(records[0]["psnr"], rec["mix"]["0.5"], rec["psnr"])]


BLEND_RECORDS = {"weights": "shrink", "outputs": "mix"}
"""Where a trajectory's records keep the PSNR-Y of each blend, by the space it blends in."""


def at_blend(rec: dict, space: str, lam: str) -> list[float]:
    """PSNR-Y per image of a record's weights blended by ``lam`` (a recorded λ as a string) in
    ``space``; the whole weights (``"1.0"``) are the record's own, recorded or not as a blend."""
    return rec["psnr"] if float(lam) == 1.0 else rec[BLEND_RECORDS[space]][lam]


def fallback_picks(groups: list[dict], eval_every: int, accepted: str = "0.5",
                   fallback: str = "0.2") -> list[tuple[list[float], int]]:
    """Each group's PSNR-Y of its ``guarded-fallback`` pick returned as AdaSSR's ``blend='auto'``
    returns it (``accepted`` of weights the guard accepted, ``fallback`` of a fallback pick), and
    the step."""
    rule = candidates()["guarded-fallback"]
    return [(blended_pick(g["trajectory"]["records"], "guarded-fallback", accepted, fallback),
             replay_records(rule, "guarded-fallback", g["trajectory"]["records"]) * eval_every) for g in groups]


def checked_picks(groups: list[dict], eval_every: int, space: str = "weights") -> list[tuple[list[float], int]]:
    """:func:`fallback_picks` as AdaSSR returns them with ``blend_check`` (:func:`checked_pick`),
    blended in ``space`` (AdaSSR's default: ``"outputs"``, whole where the group recorded JPEG)."""
    rule = candidates()["guarded-fallback"]
    return [(checked_pick(g["trajectory"]["records"], str(ttasr.AdaSSR.guarded_blend),
                          str(ttasr.AdaSSR.measured_blend), space, compressed=any(g.get("jpeg", ()))),
             replay_records(rule, "guarded-fallback", g["trajectory"]["records"]) * eval_every) for g in groups]


def checked_pick(records: list[dict], accepted: str, otherwise: str, space: str = "weights",
                 norm: str = "l1", compressed: bool = False) -> list[float]:
    """PSNR-Y per image of the ``guarded-fallback`` pick returned with AdaSSR's ``blend_check``:
    the largest blend of its ladder, up to the rule's (``accepted`` or ``otherwise``, as in
    :func:`blended_pick`), whose recorded held-out error (``shrink_heldout``, or ``mix_heldout``
    for blends of outputs) is no higher than the start's; the start if none is. ``norm="l2"``:
    the rule and the check on the held-out mean squared error (``heldout_l2``). ``compressed``
    (JPEG shows in an image of the group) with ``space="outputs"``: the whole output, checked
    first, as AdaSSR's ``compressed_blend``."""
    name, suffix = ("guarded-fallback", "") if norm == "l1" else ("guarded-fallback-l2", "_l2")
    k = replay_records(candidates()[name], name, records)
    chosen = float(accepted if records[k]["consistency"] <= records[0]["consistency"] else otherwise)
    if compressed and space == "outputs":
        chosen = ttasr.AdaSSR.compressed_blend
    key = BLEND_RECORDS[space]
    errors = records[k].get(f"{key}_heldout{suffix}", {}) if k else {}
    passed = [str(b) for b in ttasr.AdaSSR.blend_ladder
              if b <= chosen and errors.get(str(b), np.inf) <= records[0][f"heldout{suffix}"]]
    return records[k][key][passed[0]] if passed else records[0]["psnr"]


SUMMARY_RULES = {"guarded-fallback ×0.5|0.2": ("guarded-fallback", "0.5", "0.2", "weights"),
                 "checked ×0.5|0.2": ("checked", "0.5", "0.2", "weights"),
                 "guarded-fallback ×1|0.2": ("guarded-fallback", "1", "0.2", "weights"),
                 "guarded-fallback ×0.5|0.1": ("guarded-fallback", "0.5", "0.1", "weights"),
                 "guarded+gain ×1": ("guarded+gain", "1", "1", "weights"),
                 "guarded+gain ×0.5": ("guarded+gain", "0.5", "0.5", "weights"),
                 "heldout+gain ×0.2": ("heldout+gain", "0.2", "0.2", "weights"),
                 "heldout+gain ×0.1": ("heldout+gain", "0.1", "0.1", "weights"),
                 "L2: g-fallback ×0.5|0.2": ("guarded-fallback-l2", "0.5", "0.2", "weights"),
                 "L2: checked ×0.5|0.2": ("checked-l2", "0.5", "0.2", "weights"),
                 "L2: heldout+gain ×0.2": ("heldout-l2+gain", "0.2", "0.2", "weights"),
                 "outputs: g-fallback ×0.5|0.2": ("guarded-fallback", "0.5", "0.2", "outputs"),
                 "outputs: checked ×0.5|0.2": ("checked", "0.5", "0.2", "outputs"),
                 "default: ×1 JPEG, ×0.5|0.2": ("checked-jpeg", "0.5", "0.2", "outputs"),
                 "outputs: checked ×0.5|0.5": ("checked", "0.5", "0.5", "outputs"),
                 "outputs: g-fallback ×0.5|0.5": ("guarded-fallback", "0.5", "0.5", "outputs"),
                 "outputs: heldout+gain ×0.5": ("heldout+gain", "0.5", "0.5", "outputs"),
                 "outputs: heldout+gain ×0.2": ("heldout+gain", "0.2", "0.2", "outputs"),
                 "single: ×1 JPEG, ×0.2 (JS)": ("heldout+gain-jpeg", "1", "0.2", "weights"),
                 "single default: ×0.5 JPEG|0.2": ("heldout+gain-jpeg", "0.5", "0.2", "weights"),
                 "multi: + ½ final if noisy": ("checked-jpeg+noise", "0.5", "0.2", "outputs"),
                 "single default: + ½ final": ("heldout+gain-jpeg+noise", "0.5", "0.2", "weights"),
                 "blind: ½ out if JPEG|noise": ("heldout+gain-traces", "0.5", "0.1", "outputs"),
                 "blind: ×1 JPEG, ½ noise": ("heldout+gain-traces", "1", "0.1", "outputs"),
                 "blind: JPEG only": ("heldout+gain-blind", "0.5", "0.1", "outputs"),
                 "single: ½ at 300 if noisy": ("heldout+gain-jpeg+noise@300", "0.5", "0.2", "weights"),
                 "multi default: + ½ at 300": ("checked-jpeg+noise@300", "0.5", "0.2", "outputs"),
                 "blind default": ("heldout+gain-traces@300", "0.5", "0.1", "outputs"),
                 "blind: ×1 out if JPEG (W)": ("heldout+gain-traces@300", "1", "0.1", "outputs"),
                 "blind: + ½ at 300 if start (K)": ("heldout+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "blind single, chroma only": ("chroma|heldout+gain-traces@300", "0.5", "0.1", "outputs"),
                 "blind K, chroma only": ("chroma|heldout+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "multi: ½ at 300, chroma only": ("chroma|checked-jpeg+noise@300", "0.5", "0.2", "outputs"),
                 "single: ½ final, chroma only": ("chroma|heldout+gain-jpeg+noise", "0.5", "0.2", "weights"),
                 "noise rule forced @300": ("forced@300", "0.5", "0.5", "outputs"),
                 "blind K, every image (before Y2)": ("every|heldout+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "multi: ½ at 300, every image": ("every|checked-jpeg+noise@300", "0.5", "0.2", "outputs"),
                 "blind single + Z": ("white|heldout+gain-traces@300", "0.5", "0.1", "outputs"),
                 "blind K + Z": ("white|heldout+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "multi: ½ at 300 + Z": ("white|checked-jpeg+noise@300", "0.5", "0.2", "outputs"),
                 "single: ½ final + Z": ("white|heldout+gain-jpeg+noise", "0.5", "0.2", "weights"),
                 "blind single + Z2": ("white2|heldout+gain-traces@300", "0.5", "0.1", "outputs"),
                 "blind K + Z2": ("white2|heldout+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "multi: ½ at 300 + Z2": ("white2|checked-jpeg+noise@300", "0.5", "0.2", "outputs"),
                 "single: ½ final + Z2": ("white2|heldout+gain-jpeg+noise", "0.5", "0.2", "weights"),
                 "blind K + Z, ½ of images": ("whitehalf|heldout+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "multi: ½ at 300 + Z, ½ of images": ("whitehalf|checked-jpeg+noise@300", "0.5", "0.2", "outputs"),
                 "blind K + Z2, ½ of images": ("white2half|heldout+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "multi: ½ at 300 + Z2, ½ of images": ("white2half|checked-jpeg+noise@300", "0.5", "0.2", "outputs"),
                 "blind single + Z2 + Y3": ("y3|white2|heldout+gain-traces@300", "0.5", "0.1", "outputs"),
                 "blind K + Z + Y3": ("y3|white|heldout+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "multi: ½ at 300 + Z + Y3": ("y3|white|checked-jpeg+noise@300", "0.5", "0.2", "outputs"),
                 "single: ½ final + Z + Y3": ("y3|white|heldout+gain-jpeg+noise", "0.5", "0.2", "weights"),
                 "blind K + Z4 + Y3": ("y3|white2|heldout+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "multi: ½ at 300 + Z4 + Y3": ("y3|white2|checked-jpeg+noise@300", "0.5", "0.2", "outputs"),
                 "blind K + Z5 + Y3": ("y3|white5|heldout+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "blind L: K + Z5 + Y3": ("y3|white5|heldout+gain+start-traces@300", "0.6", "0.1", "outputs"),
                 "single: ½ final + Z2 + Y3": ("y3|white2|heldout+gain-jpeg+noise", "0.5", "0.2", "weights"),
                 "multi: ½ at 300 + Z5 + Y3": ("y3|white5|checked-jpeg+noise@300", "0.5", "0.2", "outputs"),
                 "blind Q: K + Z5 + Y3": ("y3|white5|heldout-jpeg+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "blind Q whole: K + Z5 + Y3": ("y3|white5|heldout-jpeg+gain+start-traces@300", "1.0", "0.1",
                                                "outputs"),
                 "blind Q2: K + Z5 + Y3": ("y3|white5|heldout-jpeg-in+gain+start-traces@300", "0.5", "0.1", "outputs"),
                 "blind Q2 whole: K + Z5 + Y3": ("y3|white5|heldout-jpeg-in+gain+start-traces@300", "1.0", "0.1",
                                                 "outputs")}
"""``--summary``'s rows: (recorded rule, blend of weights the guard accepts, blend otherwise,
the space blended in); rule ``checked``: the ``guarded-fallback`` pick with the blend check
(:func:`checked_pick`); ``checked-jpeg``: the same, whole outputs where the run recorded JPEG in
an image (``jpeg``); ``heldout+gain-jpeg``: the held-out pick, the first blend where JPEG shows in
the image (single-image mode: one image per group), the second otherwise; ``+noise``: the final
weights at AdaSSR's ``noisy_blend`` (in the row's space) where every image of the group shows
chroma noise and none JPEG (``noisy_final``), else the rule before it; ``-traces`` (the blind
rule, shown for runs with an estimated kernel): the final weights' ``noisy_blend`` of the outputs
where the group is noisy, else the first blend of the held-out pick's outputs where JPEG shows in
an image, else the second blend of its weights (claim B of 'Traces without a kernel'); ``-blind``
(row ``blind: JPEG only``, AdaSSR's blind default until claim C): the same without the noise part;
``@300``: the noise part at step 300 instead of the final step (training stops there where the
rule fires, ``AdaSSR.noisy_max_steps``; claim C, 'The noise rules capped at 300 steps': rows
``blind default`` and ``multi default: + ½ at 300`` are AdaSSR's defaults since, and
``single default: + ½ final`` stays the single-image one); rows ``(W)`` and ``(K)``: claims W
and K of 'Where JPEG shows without a kernel: the whole pick, and the start kept': the blind
default with the whole pick where JPEG shows (W, not adopted), and with ``+start`` (K): where JPEG
shows and the rule keeps the start, the blend of the outputs at the noise part's step (``@``)
instead of the start. K was adopted for multi-image mode in 'Budgets, three new degradations':
row ``(K)`` is AdaSSR's multi-image blind default since, ``blind default`` stays the single-image one.
Claim Y ('Noise in the brightness'): an image counts as noisy where its chroma noise or its
white-noise share (``noise_share``, :func:`ttasr.degradations.white_noise_share`) reaches its
threshold, in at least half of the images (claim Y2); the rows named ``chroma only`` (rule prefix
``chroma|``: chroma noise in every image) are the defaults before Y, those named ``every image``
(prefix ``every|``) before Y2, and
``noise rule forced`` returns the blind noise rule's output on every group, noisy or not: the cost
of a false alarm. Rows named ``+ Z`` (prefix ``white|``): claim Z of 'Whole where the noise is white', the
whole step where every image shows white noise (:func:`noise_blend`; ``Z, ½ of images``, prefix
``whitehalf|``: at least half of them, as registered); ``+ Z2`` (``white2|``, ``white2half|``): the same where
the share taken one channel at a time counts too (``noise_share_channels``; adopted, ``AdaSSR.white_per_channel``:
every cell since claim Z6, a measured kernel one image at a time included: row ``single: ½ final + Z2 + Y3``);
``+ Y3`` (``y3|``): that share also makes an image noisy (:func:`noisy`); ``+ Z4``: Z2 several images at a time;
``+ Z5`` (``white5|``): each image's output blended by its own reading, several images at a time. Rows that blend outputs, checked
rows and rows that need ``jpeg`` or ``chroma_noise`` are shown where every run recorded what they need."""


def noise_known(group: dict) -> bool:
    """Whether :func:`noisy` can tell for a group recorded before claim Y (no ``noise_share``):
    where JPEG shows or every image's chroma noise already reaches its threshold."""
    threshold = ttasr.AdaSSRConfig().chroma_noise_threshold
    return "noise_share" in group or any(group.get("jpeg", ())) or \
        all(level >= threshold for level in group.get("chroma_noise", [-1.0]))


def noisy(group: dict, luma: bool = True, every: bool = False, channels: bool = False) -> bool:
    """Whether AdaSSR's noise rule would return part of a group's last weights (``noisy_final``): the
    recorded chroma noise or white-noise share (``luma``; claim Y of 'Noise in the brightness'; with
    ``channels``, also the share taken one channel at a time, claim Y3 of 'Whole where the noise is
    white') of at least half of the images (``AdaSSR.noisy_share_of_images``, claim Y2; ``every``: of
    every image, the rule before Y2) reaches its threshold, and no image shows JPEG."""
    if any(group["jpeg"]):
        return False
    levels = group["chroma_noise"]
    shares = (group.get("noise_share") if luma else None) or [0.0] * len(levels)
    per_channel = (group.get("noise_share_channels") if channels else None) or [0.0] * len(levels)
    flagged = sum(map(ttasr.AdaSSRConfig().counts_as_noisy, levels, shares, per_channel))
    return flagged == len(levels) if every else ttasr.AdaSSR.noise_rule_fires(flagged, len(levels))


def noise_blend(group: dict, white: str) -> list[float]:
    """The blend of each image's output AdaSSR's noise rule returns on a group where it fires
    (:func:`noisy`): with ``white`` (claims of 'Whole where the noise is white': ``"Z"``, where every image's
    white-noise share reaches its threshold, ``AdaSSR.white_noise_fires``; ``"Z2"``, that share or the one
    taken a channel at a time; ``"½"`` appended: in at least half of the images, as registered; ``"Z5"``:
    the share or the one taken a channel at a time, image by image, ``AdaSSR.noise_image_blends``),
    ``AdaSSR.white_noise_blend`` there, else ``AdaSSR.noisy_blend``."""
    shares = group.get("noise_share", [])
    by_channel = white.startswith(("Z2", "Z5"))
    channels = group.get("noise_share_channels", [0.0] * len(shares)) if by_channel else [0.0] * len(shares)
    flags = list(map(ttasr.AdaSSRConfig().counts_as_white, shares, channels))
    if white == "Z5":
        return [ttasr.AdaSSR.white_noise_blend if f else ttasr.AdaSSR.noisy_blend for f in flags]
    enough = ttasr.AdaSSR.noise_rule_fires if white.endswith("½") else ttasr.AdaSSR.white_noise_fires
    whole = bool(white) and bool(shares) and enough(sum(flags), len(shares))
    images = len(shares or group.get("chroma_noise") or group.get("jpeg") or group["unadapted"])
    return [ttasr.AdaSSR.white_noise_blend if whole else ttasr.AdaSSR.noisy_blend] * images


def at_blends(rec: dict, space: str, lams: list[float]) -> list[float]:
    """PSNR-Y per image of a record's weights blended by each image's own ``lams`` (:func:`at_blend`)."""
    return [at_blend(rec, space, str(lam))[i] for i, lam in enumerate(lams)]


WHITE_PREFIXES = {"white|": "Z", "whitehalf|": "Z½", "white2|": "Z2", "white2half|": "Z2½", "white5|": "Z5"}
"""``--summary`` rule prefixes of claims Z and Z2 (:func:`noise_blend`)."""


def summary_pick(group: dict, rule: str, accepted: str, otherwise: str, space: str,
                 eval_every: int = 50) -> list[float]:
    """PSNR-Y per image of what a row of :data:`SUMMARY_RULES` returns on one adaptation group
    whose records were taken every ``eval_every`` steps."""
    records = group["trajectory"]["records"]
    flags = []
    while rule.partition("|")[0] + "|" in ("chroma|", "every|", "y3|", *WHITE_PREFIXES):
        head, _, rule = rule.partition("|")
        flags.append(head + "|")
    luma = "chroma|" not in flags  # the noise rule before claim Y: chroma noise only, every image
    every = "chroma|" in flags or "every|" in flags  # before claim Y2: every image noisy
    channels = "y3|" in flags  # claim Y3: the share one channel at a time counts as noise
    white = next((WHITE_PREFIXES[f] for f in flags if f in WHITE_PREFIXES), "")
    noise_lams = noise_blend(group, white)  # the noise rule's blend of each image (claims Z, Z2, Z5)
    rule, _, cap = rule.partition("@")
    last = records[min(len(records) - 1, int(cap) // eval_every)] if cap else records[-1]  # the noise rule's step
    if rule == "forced":  # the blind noise rule as if it fired on every group: what a false alarm returns
        return last["mix"][str(ttasr.AdaSSR.noisy_blend)]
    if rule.endswith(("-traces", "-blind")):
        picked = rule.rsplit("-", 1)[0]
        start, picked = picked.endswith("+start"), picked.removesuffix("+start")
        if rule.endswith("-traces") and noisy(group, luma, every, channels):  # the noise part: claims B and C only
            return at_blends(last, "outputs", noise_lams)
        if any(group["jpeg"]):
            if start and replay_records(candidates()[picked], picked, records) == 0:  # claim K
                return output_mix(records, last, accepted)
            return blended_pick(records, picked, accepted, accepted, "outputs")
        return blended_pick(records, picked, otherwise, otherwise, "weights")
    if rule.endswith("+noise"):
        if noisy(group, luma, every, channels):
            return at_blends(last, space, noise_lams)
        rule = rule.removesuffix("+noise")
    if rule == "checked":
        return checked_pick(records, accepted, otherwise, space)
    if rule == "checked-jpeg":
        return checked_pick(records, accepted, otherwise, space, compressed=any(group["jpeg"]))
    if rule == "checked-l2":
        return checked_pick(records, accepted, otherwise, space, norm="l2")
    if rule.endswith("-jpeg"):
        lam = accepted if any(group["jpeg"]) else otherwise
        return blended_pick(records, rule.removesuffix("-jpeg"), lam, lam, space)
    return blended_pick(records, rule, accepted, otherwise, space)


def with_hr(records: list[dict], steps: str) -> list[float]:
    """PSNR-Y per image of the blend of the outputs the HR images would choose, for comparison
    with the rules (one fraction for the whole group, the best mean; the start and the whole
    output count): at the step the default picks (``steps="pick"``, ``guarded-fallback``), or at
    the best recorded step (``"any"``); ``"each"``: the best step, each image with its own best fraction
    there (what a rule that blends image by image, claim Z5, could reach). It says whether the fraction
    or the step costs the gain."""
    if steps == "each":  # the best step for the group, each image's best fraction there
        per_step = [np.max([rec["psnr"], *rec.get("mix", {}).values()], axis=0).tolist() for rec in records[1:]]
        return max([records[0]["psnr"], *per_step], key=lambda psnr: float(np.mean(psnr)))
    picked = [replay_records(candidates()["guarded-fallback"], "guarded-fallback", records)]
    options = [records[0]["psnr"]]
    for rec in (records[k] for k in (picked if steps == "pick" else range(1, len(records)))):
        options += [rec["psnr"], *rec.get("mix", {}).values()]
    return max(options, key=lambda psnr: float(np.mean(psnr)))


HR_ROWS = {"HR: best blend at the pick": "pick", "HR: best step and blend": "any",
           "HR: step, blend per image": "each"}
"""``--summary``'s rows that choose with the HR images (:func:`with_hr`), shown where blends of the
outputs are recorded."""


def cut_at(groups: list[dict], budget: int, every: int) -> list[dict] | None:
    """``groups`` as a fit with ``max_steps=budget`` would have recorded them: the trajectory's
    (and the oracle's) records up to that step. AdaSSR's steps do not depend on ``max_steps`` (a
    longer budget resumes a shorter one), so the replayed rules return what such a fit returns.
    ``None`` where a trajectory ends before ``budget``."""
    keep = budget // every + 1
    if any(len(g["trajectory"]["records"]) < keep for g in groups):
        return None
    return [{**g, **{run: {**g[run], "records": g[run]["records"][:keep]}
                     for run in ("trajectory", "oracle") if run in g}} for g in groups]


def summary(folders: list[Path], eval_every: int = 50, budget: int | None = None,
            only: list[str] | None = None) -> None:
    """Each rule of :data:`SUMMARY_RULES` over every preset run in ``folders`` (each an ``--out``
    folder), one table per mode: the mean gain over the runs, the worst photo, and the runs where
    it breaks the issue's no-harm bounds (a photo below −0.1 dB, a run's mean below −0.05 dB).
    ``bicubic-clean`` is left out: with a measured kernel AdaSSR does not train there. Replays
    only: a group the default would not train (``not_adapted``) still counts as trained. The
    last rows (:data:`HR_ROWS`) choose with the HR images: how much gain is left. ``eval_every``:
    the evaluation interval of runs whose results do not record theirs (before 2026-12-05).
    ``budget``: every run replayed as if its fit had stopped at that step (:func:`cut_at`; runs
    shorter than that are left out, and named). ``only``: only these rows (names as printed)."""
    gains: dict[str, dict[str, list[tuple[str, np.ndarray]]]] = {}
    oracle: dict[str, list[float]] = {}
    between: dict[str, list[int]] = {}
    blends = {lam for _, *lams, space in SUMMARY_RULES.values() if space == "weights" for lam in lams} - {"1"}
    runs: list[tuple[str, str, list[dict], int]] = []
    blind = True  # every run with an estimated kernel: the blind default's rows apply
    for folder in folders:
        if not (folder / "results.json").is_file():
            raise SystemExit(f"--summary: {folder} has no results.json (give --out folders, e.g. outputs/run-*/)")
        results = json.loads((folder / "results.json").read_text())
        mode = results.get("mode", "multi")
        for preset, rows in results.items():
            if preset == "bicubic-clean" or not isinstance(rows, dict):
                continue
            groups = [g for g in groups_of(rows) if "trajectory" in g]
            recs = [r for g in groups for r in g["trajectory"]["records"]]
            if not groups or not all("consistency" in r and blends <= set(r.get("shrink", {})) for r in recs):
                continue  # not recorded with the guard's error and these blends: nothing to replay
            label = folder.name if folder.name.endswith(preset) else f"{folder.name}:{preset}"
            every = results.get("eval_every", eval_every)
            if budget is not None:
                cut = None if budget % every else cut_at(groups, budget, every)
                if cut is None:
                    print(f"# left out: {label} " + (f"evaluated every {every} steps" if budget % every
                                                     else f"ends before step {budget}"))
                    continue
                groups = cut
            runs.append((mode, label, groups, every))
            blind = blind and results.get("candidate", {}).get("kernel_estimator", "auto") != "given"
    recorded = {key for key in ("mix", "shrink_heldout", "mix_heldout", "heldout_l2", "shrink_heldout_l2", "heldout_jpeg",
                                "heldout_jpeg_in")
                if runs and all(key in r for _, _, groups, _ in runs for g in groups for r in g["trajectory"]["records"])}
    shown = {name for name, (full, _, _, space) in SUMMARY_RULES.items()
             for rule in [full.removeprefix("chroma|").removeprefix("every|").partition("@")[0]]
             if (space == "weights" or "mix" in recorded)
             and (not rule.startswith("checked") or f"{BLEND_RECORDS[space]}_heldout" in recorded)
             and (not rule.endswith(("-traces", "-blind")) or blind)
             and (("jpeg" not in rule and not rule.endswith(("-traces", "-blind")))
                  or all("jpeg" in g for _, _, groups, _ in runs for g in groups))
             and (not rule.endswith(("+noise", "-traces", "-blind"))
                  or all("chroma_noise" in g for _, _, groups, _ in runs for g in groups))
             and (not rule.endswith(("+noise", "-traces")) or full.startswith("chroma|")
                  or all(noise_known(g) for _, _, groups, _ in runs for g in groups))
             and ("l2" not in rule or "shrink_heldout_l2" in recorded)
             and ("heldout-jpeg" not in rule or "heldout_jpeg" in recorded)
             and ("heldout-jpeg-in" not in rule or "heldout_jpeg_in" in recorded)}
    for mode, label, groups, every in runs:
        base = np.concatenate([g["unadapted"] for g in groups])
        dips = dips_below_both_ends(groups)
        counts = between.setdefault(mode, [0, 0])
        counts[0], counts[1] = counts[0] + dips[0], counts[1] + dips[1]
        for name, (rule, accepted, otherwise, space) in SUMMARY_RULES.items():
            if name in shown:
                got = np.concatenate([summary_pick(g, rule, accepted, otherwise, space, every) for g in groups]) - base
                gains.setdefault(mode, {}).setdefault(name, []).append((label, got))
        for name, steps in HR_ROWS.items():
            if "mix" in recorded:
                got = np.concatenate([with_hr(g["trajectory"]["records"], steps) for g in groups]) - base
                gains.setdefault(mode, {}).setdefault(name, []).append((label, got))
        if all("oracle" in g for g in groups):
            best = [max(g["oracle"]["records"], key=lambda r: np.mean(r["psnr"]))["psnr"] for g in groups]
            oracle.setdefault(mode, []).append(float(np.mean(np.concatenate(best) - base)))
    for mode, rules in gains.items():
        runs = len(next(iter(rules.values())))
        known = f"; the oracle's mean over the {len(oracle[mode])} with one {np.mean(oracle[mode]):+.3f}" \
            if oracle.get(mode) else ""
        print(f"{mode}-image: {runs} preset runs{known}")
        print(f"{'rule':<27}{'mean':>8}{'worst':>8}  runs breaking the bounds (mean / worst photo)")
        for name, per_run in rules.items():
            if only and name not in only:
                continue
            broken = [f"{label} {g.mean():+.2f}/{g.min():+.2f}" for label, g in per_run
                      if g.min() < -0.1 or g.mean() < -0.05]
            mean = np.mean([g.mean() for _, g in per_run])
            worst = min(g.min() for _, g in per_run)
            print(f"{name:<27}{mean:+8.3f}{worst:+8.2f}  {len(broken)}: {', '.join(broken)}")
        dips, pairs = between[mode]
        print(f"a blend below both ends (the start, the whole weights) by > {DIP} dB: {dips} of {pairs} "
              f"(photo, evaluation) pairs")


DIP = 0.05
"""dB: how far a blend must fall below both of its ends to count in :func:`dips_below_both_ends`."""


def dips_below_both_ends(groups: list[dict]) -> tuple[int, int]:
    """How many (photo, evaluation after the start) pairs of the groups' trajectories have a
    recorded blend ``θ0 + λ(θ − θ0)`` more than :data:`DIP` dB below both the start and the whole
    weights (blending in weight space is not blending the outputs), and how many there are."""
    dips = pairs = 0
    for g in groups:
        for rec in g["trajectory"]["records"][1:]:
            for i, start in enumerate(g["unadapted"]):
                ends = min(0.0, rec["psnr"][i] - start)
                pairs += 1
                dips += min(v[i] - start for v in rec["shrink"].values()) < ends - DIP
    return dips, pairs


def shrink_factors(groups: list[dict]) -> list[str]:
    """The ``λ`` recorded at every evaluation of every group's trajectory (as strings)."""
    sets = [set(r.get("shrink", {})) for g in groups for r in g["trajectory"]["records"]]
    return sorted(set.intersection(*sets), key=float) if sets else []


def shrunk_picks(groups: list[dict], rule: Stopping, name: str, lam: str,
                 eval_every: int) -> list[tuple[list[float], int]]:
    """Each group's PSNR-Y of the weights ``rule`` selects, shrunk by ``lam``, and the step."""
    out = []
    for grp in groups:
        recs = grp["trajectory"]["records"]
        k = replay_records(rule, name, recs)
        out.append((recs[k]["shrink"][lam], k * eval_every))
    return out


def report(results: dict, presets: list[str], eval_every: int) -> None:
    print("PSNR-Y (dB), mean over the images; gain vs unadapted; [selected step]; worst image gain.")
    head = f"{'rule':<20}" + "".join(f"{p:>22}" for p in presets)
    print(head)
    lines: dict[str, str] = {}

    def add(name: str, text: str) -> None:
        lines.setdefault(name, f"{name:<20}")
        lines[name] += text

    for p in presets:
        groups = [g for g in groups_of(results.get(p, {})) if "trajectory" in g]
        if not groups:
            continue
        base = np.concatenate([g["unadapted"] for g in groups])

        def cell(picks: list[tuple[list[float], int]]) -> str:
            """``picks``: (PSNR-Y per image of the group, selected step) for each group."""
            g = np.concatenate([psnr for psnr, _ in picks]) - base
            steps = sorted({step for _, step in picks})
            mark = "/".join(str(x) for x in steps) if len(steps) <= 3 else f"{steps[0]}-{steps[-1]}"
            return f"{np.mean(g) + np.mean(base):6.2f} {np.mean(g):+.3f} [{mark:>4}] {g.min():+.2f}"

        def picks(run: str, choose) -> list[tuple[list[float], int]]:
            """Each group's PSNR-Y and step at the evaluation ``choose(records)`` of its ``run``."""
            out = []
            for grp in groups:
                recs = grp[run]["records"]
                k = choose(recs)
                out.append((recs[k]["psnr"], k * eval_every))
            return out

        add("unadapted", f"{np.mean(base):>8.2f}{'':>14}")
        if all("oracle" in g for g in groups):
            add("oracle", f"{cell(picks('oracle', lambda o: int(np.argmax([np.mean(r['psnr']) for r in o])))):>22}")
        if all("paper" in g for g in groups):
            add("paper preset", f"{cell([(g['paper']['psnr'], g['paper']['best_step']) for g in groups]):>22}")
        if all("default" in g for g in groups):
            c = groups[0]["default"].get("config", {})
            label = f"live {c.get('stopping', 'default')} ×{c.get('blend', 1.0)}"
            add(label, f"{cell([(g['default']['psnr'], g['default']['best_step']) for g in groups]):>22}")
        def replayable(name: str) -> bool:
            recs = [g["trajectory"]["records"] for g in groups]  # noqa: B023 - called in this iteration
            key = RECORDED_AS.get(name, "heldout")
            return all(guard_errors(name, r) is not None for r in recs) and \
                (key == "heldout" or all(key in r for rs in recs for r in rs))

        for name, rule in candidates().items():
            if replayable(name):
                add(name, f"{cell(picks('trajectory', lambda recs: replay_records(rule, name, recs))):>22}")
        for name, pick in RECORD_RULES.items():
            if all("change" in r for g in groups for r in g["trajectory"]["records"]):
                add(name, f"{cell(picks('trajectory', pick)):>22}")
        for lam in shrink_factors(groups):
            for name in (n for n in SHRUNK_RULES if replayable(n)):
                rule = candidates()[name]
                add(f"{name} ×{lam}", f"{cell(shrunk_picks(groups, rule, name, lam, eval_every)):>22}")
            if lam == "0.5" and "0.2" in shrink_factors(groups):
                add("fallback ×0.5|0.2", f"{cell(fallback_picks(groups, eval_every)):>22}")
                add("fallback ×1|0.2", f"{cell(fallback_picks(groups, eval_every, accepted='1')):>22}")
                if all("shrink_heldout" in r for g in groups for r in g["trajectory"]["records"]):
                    add("fallback, checked", f"{cell(checked_picks(groups, eval_every)):>22}")
                if all("mix_heldout" in r for g in groups for r in g["trajectory"]["records"]):
                    add("outputs, checked", f"{cell(checked_picks(groups, eval_every, 'outputs')):>22}")
    for line in lines.values():
        print(line)
    for p in presets:
        gaps = {g["trajectory"].get("not_adapted") for g in groups_of(results.get(p, {})) if "trajectory" in g}
        for reason in sorted(r for r in gaps if r):
            print(f"# {p}: the default AdaSSR would not adapt ({reason}): its result is the unadapted row")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="span-x4")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--photos", type=lambda v: [x for x in v.split(",") if x], default=None, metavar="A,B",
                    help="these photos instead of the proxy set's first --images: wallpaper names, skimage:<name> or "
                         "image paths (e.g. photos that chose nothing, to validate a setting)")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--mode", choices=("multi", "single"), default="multi",
                    help="multi: one adaptation over all photos of a preset (one camera); single: one per photo, "
                         "each rule selecting per photo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-paper", action="store_true", help="the same as leaving paper out of --runs")
    ap.add_argument("--runs", type=lambda v: [x for x in v.split(",") if x], default=list(RUNS), metavar="R1,R2",
                    help=f"which runs of each group to make, of {','.join(RUNS)} (e.g. the paper preset in a "
                         "process of its own, its --out merged into the report)")
    ap.add_argument("--default-row", action="store_true",
                    help="also run ttasr.AdaSSR(model) as it is by default (its own budget and rule), live")
    ap.add_argument("--out", type=Path, default=Path("outputs/selection"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--summary", nargs="+", type=Path, default=None, metavar="DIR",
                    help="only summarise the preset runs in these --out folders (any photos, either mode): each "
                         "blend rule's mean gain, worst photo and the runs where it breaks the no-harm bounds")
    ap.add_argument("--budget", type=lambda v: [int(x) for x in v.split(",") if x], default=None,
                    metavar="S1,S2", help="with --summary: one summary per budget, each run replayed as if its fit "
                                          "had stopped at that step (a multiple of the evaluation interval)")
    ap.add_argument("--row", action="append", default=None, metavar="NAME",
                    help="with --summary: only this row (as printed; repeat for more)")
    ap.add_argument("--merge", action="append", default=[], type=Path, metavar="DIR",
                    help="with --report: add the presets of another --out folder (repeatable), e.g. runs of "
                         "one preset each that ran in parallel")
    ap.add_argument("--candidate", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting of the candidate configuration (repeatable), e.g. "
                         "kernel_estimator=bicubic; the oracle gets the same overrides, its kernel excepted")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--keep-outputs", action="store_true",
                    help="write the candidate trajectory's SR output at each evaluation (float16, with the LR and "
                         "HR) under --out/outputs/<preset>/<group>/, to score blends offline")
    ap.add_argument("--shrink", type=lambda v: [float(x) for x in v.split(",") if x], default=[],
                    metavar="L1,L2", help="also score the candidate's weights pulled back towards the start, "
                                          "θ0 + λ(θ − θ0), for each λ (rows 'RULE ×λ' in the report)")
    args = ap.parse_args()
    if args.summary:
        for budget in args.budget or [None]:
            if budget is not None:
                print(f"## --budget {budget}: as if every fit had stopped at step {budget}")
            summary(args.summary, args.eval_every, budget, args.row)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    CANDIDATE.update(candidate_overrides(args.candidate))
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "results.json"
    results = json.loads(store.read_text()) if (args.resume or args.report) and store.exists() else {}
    if args.merge and not args.report:
        raise SystemExit("--merge only combines results for --report")
    for folder in args.merge:
        other = json.loads((folder / "results.json").read_text())
        if other.get("mode", "multi") != results.get("mode", other.get("mode", "multi")):
            raise SystemExit(f"{folder} holds {other.get('mode', 'multi')}-image runs, {store} does not")
        if other.get("candidate") != results.get("candidate", other.get("candidate")):
            raise SystemExit(f"{folder} holds runs of the candidate {other.get('candidate')}, "
                             f"{store} of {results.get('candidate')}: their rules are not comparable")
        results = merged(results, other)
    presets = [p for p in args.presets.split(",") if p]
    unknown = set(args.runs) - set(RUNS)
    if unknown:
        raise SystemExit(f"--runs: unknown {', '.join(sorted(unknown))}; choose from {','.join(RUNS)}")
    if args.skip_paper:
        args.runs = [r for r in args.runs if r != "paper"]
    if not args.report:
        if results.get("mode", args.mode) != args.mode:
            raise SystemExit(f"{store} holds {results['mode']}-image runs: give another --out, or --mode "
                             f"{results['mode']}")
        if results.get("candidate", recorded(CANDIDATE)) != recorded(CANDIDATE):
            raise SystemExit(f"{store} holds runs of the candidate {results['candidate']}, not {CANDIDATE}: "
                             "give another --out, or the same --candidate settings")
        model = ttasr.load_model(args.model)
        photos = load_photos(args.images, args.size, args.photos)
        niqe = NIQE()
        results["candidate"] = recorded(CANDIDATE)
        results["mode"] = args.mode
        results["eval_every"] = args.eval_every
        print(f"# candidate configuration: {CANDIDATE}", file=sys.stderr)
        names = ", ".join(n for n, _ in photos)
        print(f"# {args.model}, {args.mode}-image: {len(photos)} photos {args.size} px ({names}), "
              f"{args.steps} steps, eval every {args.eval_every}, threads {torch.get_num_threads()}", file=sys.stderr)
        for p in presets:
            run_preset(model, p, photos, args, niqe, results, store)
    report(results, presets, args.eval_every)


if __name__ == "__main__":
    main()
