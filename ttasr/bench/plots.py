"""Plots of merged benchmark results (matplotlib, optional): the adaptation curves recorded
in each job's ``history`` and the per-image gain of every method over the unadapted model."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from .jobs import UNADAPTED
from .results import merge_results

__all__ = ["curve_records", "write_plots"]

log = logging.getLogger(__name__)


def write_plots(out_dir: str | os.PathLike[str], metric: str = "psnr_y") -> list[Path]:
    """``curves.png`` (loss, and the stopping rule's score where recorded, against the step,
    one line per adaptation) and ``gain-<metric>.png`` (per image: method minus unadapted, averaged
    over seeds). Returns the written files; none, with a log line, without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("plots skipped: matplotlib is not installed (pip install matplotlib)")
        return []
    out = Path(out_dir)
    records = [r for r in merge_results(out) if r.get("status") == "ok"]
    written = []

    adapted = curve_records(records)
    if adapted:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
        for r in adapted:
            label = f"{r['method']} {'all images' if r.get('mode') == 'multi' else r['item']} s{r['seed']}"
            losses = [(h["step"], h["loss"]) for h in r["history"] if "loss" in h]
            scores = [(h["step"], h["score"]) for h in r["history"] if "score" in h]
            if losses:
                axes[0].plot(*zip(*losses), lw=0.8, label=label)
            if scores:
                axes[1].plot(*zip(*scores), lw=0.8, marker=".", label=label)
        axes[0].set(xlabel="step", ylabel="training loss", title="loss")
        axes[1].set(xlabel="step", ylabel="stopping-rule score", title="score (where the rule scores)")
        if len(adapted) <= 12:
            axes[0].legend(fontsize=6)
        fig.tight_layout()
        written.append(out / "curves.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)

    base = {(r["dataset"], r["item"], r["model"]): r["metrics"][metric] for r in records
            if r["method"] == UNADAPTED and metric in r["metrics"]}
    gains: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        ref = base.get((r["dataset"], r["item"], r["model"]))
        if r["method"] != UNADAPTED and ref is not None and metric in r["metrics"]:
            gains[f"{r['model']}/{r['method']}"][f"{r['dataset']}/{r['item']}"].append(r["metrics"][metric] - ref)
    if gains:
        items = sorted({i for per in gains.values() for i in per})
        fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(items) * len(gains)), 3.5))
        width = 0.8 / len(gains)
        for n, (row, per) in enumerate(sorted(gains.items())):
            values: list[Any] = [sum(per[i]) / len(per[i]) if per.get(i) else 0.0 for i in items]
            ax.bar([k + n * width for k in range(len(items))], values, width, label=row)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(items))], items, rotation=45, ha="right", fontsize=7)
        ax.set(ylabel=f"{metric} gain over unadapted", title=f"per-image gain ({metric})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out / f"gain-{metric}.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written


def curve_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records whose history is drawn: one per adaptation, so the images of a
    multi-image row, which share one adaptation, give one curve."""
    out, seen = [], set()
    for r in records:
        if r["method"] == UNADAPTED or not r.get("history"):
            continue
        shared = r.get("mode") == "multi"
        key = (r["dataset"], r["model"], r["method"], r["seed"], None if shared else r["item"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out
