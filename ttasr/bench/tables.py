"""``write_tables``: the merged benchmark results as the papers lay them out.

``results.md`` / ``results.csv``: one row per method (per model), one column per dataset x
metric, each cell the mean ± standard deviation (population, ddof 0) over images and seeds;
published numbers from ``paper_numbers`` are shown beside. ``timing.md`` / ``timing.csv``:
adaptation seconds per image, steps, peak memory and device. A metric that could not be
computed shows ``n/a`` with a numbered footnote giving the reason. ``per_image.md``: one
metric (PSNR-Y when scored) per image, with each row's mean gain over the unadapted model
and, given an ``oracle`` row, the share of the oracle's gain.

``paper_numbers`` is a JSON file ``{method: {dataset: {metric: value}}}``; a key
``"model/method"`` applies to that model only and wins over the plain method key.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from .jobs import UNADAPTED
from .results import MANIFEST, merge_results
from .runner import METRIC_ALIASES

__all__ = ["load_paper_numbers", "mean_std", "per_image_table", "write_tables"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (0 for a single value)."""
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if any(math.isinf(v) for v in values):
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def load_paper_numbers(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``{method: {dataset: {metric: value}}}`` of a JSON file (see the module docstring)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"paper numbers {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"paper numbers {path}: expected {{method: {{dataset: {{metric: value}}}}}}")
    return data


def _paper_value(paper: Mapping[str, Any], model: str, method: str, dataset: str, metric: str) -> float | None:
    for key in (f"{model}/{method}", method):
        by_dataset = paper.get(key)
        if isinstance(by_dataset, Mapping) and isinstance(by_dataset.get(dataset), Mapping):
            row = by_dataset[dataset]
            for name in (metric, *[k for k, v in METRIC_ALIASES.items() if v == metric]):
                if isinstance(row.get(name), (int, float)):
                    return float(row[name])
    return None


def _ordered(seen: Sequence[str], preferred: Sequence[str]) -> list[str]:
    return [x for x in preferred if x in seen] + [x for x in dict.fromkeys(seen) if x not in preferred]


def _fmt(mean: float, std: float, digits: int) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


class _Notes:
    """Numbered footnotes, one per distinct reason."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def mark(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"[{self.reasons.index(reason) + 1}]"

    def markdown(self) -> list[str]:
        return [f"[{i + 1}] {r}" for i, r in enumerate(self.reasons)]


def write_tables(
    out_dir: str | os.PathLike[str],
    paper_numbers: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    digits: int = 4,
    oracle: str | None = None,
) -> dict[str, Path]:
    """Merge the rank files of ``out_dir`` and write the result, timing and per-image tables there.

    Returns ``{"results.md": path, ...}``.
    """
    out = Path(out_dir)
    records = merge_results(out)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8")) if (out / MANIFEST).is_file() else {}
    paper = load_paper_numbers(paper_numbers) if isinstance(paper_numbers, (str, os.PathLike)) else dict(
        paper_numbers or {})
    ok = [r for r in records if r.get("status") == "ok"]
    errors = [r for r in records if r.get("status") != "ok"]
    metric_info: dict[str, Any] = manifest.get("metrics", {})
    datasets = _ordered([r["dataset"] for r in records], list(manifest.get("datasets", {})))
    metric_order = list(manifest.get("metric_order", metric_info))
    metrics = _ordered([m for r in ok for m in (*r["metrics"], *r["unavailable"])], metric_order)
    models = _ordered([r["model"] for r in records], list(manifest.get("models", {})))
    methods = _ordered([r["method"] for r in records], list(manifest.get("methods", [])))
    rows = [(model, method) for model in models for method in methods
            if any(r["model"] == model and r["method"] == method for r in records)]

    def arrow(metric: str) -> str:
        info = metric_info.get(metric)
        return "" if info is None else (" ↑" if info["higher_is_better"] else " ↓")

    notes = _Notes()
    md_head = ["model", "method"] + [f"{d}: {m}{arrow(m)}" for d in datasets for m in metrics]
    md_rows, csv_rows = [], []
    for model, method in rows:
        md = [model, method]
        for dataset in datasets:
            for metric in metrics:
                sel = [r for r in ok if (r["model"], r["method"], r["dataset"]) == (model, method, dataset)]
                values = [r["metrics"][metric] for r in sel if metric in r["metrics"]]
                reasons = sorted({r["unavailable"][metric] for r in sel if metric in r["unavailable"]})
                mean, std = mean_std(values)
                cell = _fmt(mean, std, digits)
                if reasons:
                    cell += " " + "".join(notes.mark(reason) for reason in reasons)
                published = _paper_value(paper, model, method, dataset, metric)
                if published is not None:
                    cell += f" (paper {published:g})"
                md.append(cell)
                csv_rows.append({"model": model, "method": method, "dataset": dataset, "metric": metric,
                                 "mean": "" if math.isnan(mean) else mean, "std": "" if math.isnan(std) else std,
                                 "n": len(values), "unavailable": len(sel) - len(values),
                                 "reason": "; ".join(reasons), "paper": "" if published is None else published})
        md_rows.append(md)
    lines = [_md_table(md_head, md_rows), "",
             "Cells: mean ± std over images and seeds (unadapted: once per image)."]
    if notes.reasons:
        lines += ["", "Not available:", *notes.markdown()]
    problems = {k: v["problems"] for k, v in manifest.get("datasets", {}).items() if v.get("problems")}
    if errors or problems:
        lines += ["", f"Errors: {len(errors)} jobs failed."]
        lines += [f"- {r['key']} ({r.get('stage', '?')}): {r.get('error', '')}" for r in errors]
        lines += [f"- {k}: {p}" for k, ps in problems.items() for p in ps]
    written = {"results.md": out / "results.md", "results.csv": out / "results.csv",
               "timing.md": out / "timing.md", "timing.csv": out / "timing.csv"}
    written["results.md"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    _write_csv(written["results.csv"], csv_rows, ["model", "method", "dataset", "metric", "mean", "std", "n",
                                                 "unavailable", "reason", "paper"])

    t_head = ["model", "method", "s/image (adapt)", "s/image (SR)", "steps", "peak memory MiB", "device", "jobs",
              "errors"]
    t_md, t_csv = [], []
    for model, method in rows:
        sel = [r for r in ok if (r["model"], r["method"]) == (model, method)]
        bad = sum(1 for r in errors if (r["model"], r["method"]) == (model, method))
        adapt = mean_std([r["seconds"] for r in sel])
        sr = mean_std([r["enhance_seconds"] for r in sel])
        steps = mean_std([float(r["steps"]) for r in sel])
        peaks = [r["peak_memory_mb"] for r in sel if r.get("peak_memory_mb") is not None]
        kinds = sorted({r["memory"] for r in sel})
        devices = sorted({r["device"] for r in sel})
        peak = f"{max(peaks):.0f} ({', '.join(kinds)})" if peaks else "n/a"
        t_md.append([model, method, _fmt(*adapt, 2), _fmt(*sr, 3), _fmt(*steps, 0), peak, "; ".join(devices),
                     str(len(sel)), str(bad)])
        t_csv.append({"model": model, "method": method, "adapt_seconds_mean": adapt[0], "adapt_seconds_std": adapt[1],
                      "sr_seconds_mean": sr[0], "steps_mean": steps[0], "peak_memory_mb": max(peaks) if peaks else "",
                      "memory": ";".join(kinds), "device": ";".join(devices), "jobs": len(sel), "errors": bad})
    written["timing.md"].write_text(
        _md_table(t_head, t_md) + "\n\nPeak memory: CUDA's max allocated per job (cuda_max_allocated) or the "
        "process's peak resident set so far (process_max_rss).\n", encoding="utf-8")
    _write_csv(written["timing.csv"], t_csv, ["model", "method", "adapt_seconds_mean", "adapt_seconds_std",
                                             "sr_seconds_mean", "steps_mean", "peak_memory_mb", "memory", "device",
                                             "jobs", "errors"])
    scored = {m for r in ok for m in r["metrics"]}
    per_metric = next((m for m in ("psnr_y", *metrics) if m in scored), None)
    if per_metric is not None:
        written["per_image.md"] = out / "per_image.md"
        written["per_image.md"].write_text(per_image_table(ok, per_metric, datasets, rows, oracle, digits=2),
                                           encoding="utf-8")
    return written


def per_image_table(records: Sequence[Mapping[str, Any]], metric: str, datasets: Sequence[str],
                    rows: Sequence[tuple[str, str]], oracle: str | None = None, digits: int = 2) -> str:
    """Markdown: per dataset, ``metric`` for each image (mean over seeds) and row, the row's
    mean, its gain over :data:`UNADAPTED` and, where the ``oracle`` row gains, the share of
    the oracle's gain. ``records`` are successful result records."""
    parts = [f"Per-image {metric} (mean over seeds); gain: the row's mean minus the unadapted model's."]
    for dataset in datasets:
        here = [r for r in records if r["dataset"] == dataset and metric in r["metrics"]]
        items = list(dict.fromkeys(r["item"] for r in here))
        if not items:
            continue
        means: dict[tuple[str, str], dict[str, float]] = {}
        for model, method in rows:
            by_item = {}
            for item in items:
                values = [r["metrics"][metric] for r in here
                          if (r["model"], r["method"], r["item"]) == (model, method, item)]
                if values:
                    by_item[item] = sum(values) / len(values)
            if by_item:
                means[(model, method)] = by_item
        head = ["model", "method", *items, "mean", "gain"] + (["% of oracle"] if oracle else [])
        lines = []
        for (model, method), by_item in means.items():
            mean = mean_std(list(by_item.values()))[0]
            base = means.get((model, UNADAPTED))
            gain = mean - mean_std(list(base.values()))[0] if base and len(base) == len(by_item) else math.nan
            cells = [model, method, *[f"{by_item[i]:.{digits}f}" if i in by_item else "n/a" for i in items],
                     f"{mean:.{digits}f}", "n/a" if math.isnan(gain) else f"{gain:+.3f}"]
            if oracle:
                top = means.get((model, oracle))
                top_gain = (mean_std(list(top.values()))[0] - mean_std(list(base.values()))[0]
                            if top and base else math.nan)
                share = 100 * gain / top_gain if top_gain > 0 and not math.isnan(gain) else math.nan
                cells.append("n/a" if math.isnan(share) or method in (UNADAPTED, oracle) else f"{share:.0f} %")
            lines.append(cells)
        parts += ["", f"### {dataset}", "", _md_table(head, lines)]
    return "\n".join(parts) + "\n"


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(head), "| " + " | ".join("---" for _ in head) + " |", *(line(r) for r in rows)])


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
