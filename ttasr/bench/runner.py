"""``run_bench``: every (dataset, item, model, method, seed) job adapted, scored and appended
to a JSON-lines file, resumable and shardable over processes.

>>> from ttasr.bench import run_bench, write_tables
>>> run_bench(["adassr"], ["span-x4"], ["proxy:camera"], seeds=[0, 1], out_dir="bench-out",
...           metrics=("psnr_y", "ssim_y", "niqe"), method_overrides={"adassr": {"max_steps": 300}})
>>> write_tables("bench-out")          # results.md / results.csv / timing.md / timing.csv

Every job adapts one image on its own (single-image mode, as the papers' per-image
numbers are made), super-resolves it and scores it. ``"unadapted"`` (the pretrained model
as it is) is always a row; it is deterministic, so it runs once per item (``seed`` null).

One JSON line per finished job goes to ``out_dir/results-rank{r}.jsonl``, flushed and
fsynced before the next job starts, so a killed process loses only the job it was running.
On start the lines of every rank file are read and finished jobs are skipped (a torn last
line, from a kill during a write, is cut off); jobs that ended in an error are tried again.
Jobs are listed in a fixed order and job ``i`` belongs to rank ``i % world``, so a rerun
with any world size finishes exactly the jobs that are missing.

With ``keep_crops=N`` (default 1) every job also keeps its N most textured
:data:`CROP_SIZE`-pixel windows of the SR output as PNGs under ``out_dir/crops/``, beside
the same windows of the bicubic-upsampled LR and of the HR (written once per item and
model), for :func:`~ttasr.bench.report.write_report`. The windows depend on the LR and the
scale only, so every method of an item shows the same places. The PNGs are written before
the job's line, whose ``"crops"`` field lists them, so a finished job has its crops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, TTASRError
from .records import BenchDataset, BenchItem

__all__ = [
    "CROP_SIZE",
    "METRIC_ALIASES",
    "UNADAPTED",
    "BenchRun",
    "Job",
    "finished_keys",
    "merge_results",
    "plan_jobs",
    "read_results",
    "resolve_metrics",
    "run_bench",
    "shard_jobs",
]

log = logging.getLogger(__name__)

UNADAPTED = "unadapted"
"""The method name of the pretrained model without adaptation: always a row of the tables."""

METRIC_ALIASES: dict[str, str] = {"psnr": "psnr_y", "ssim": "ssim_y"}
"""Short names the papers use for the Y-channel metrics."""

RESULTS_GLOB = "results-rank*.jsonl"
MERGED = "results.jsonl"
MANIFEST = "manifest.json"
CROPS = "crops"
CROP_SIZE = 128
"""Side of a kept crop in HR pixels (smaller for smaller images)."""
_HISTORY_POINTS = 100
"""Loss values kept per job (evenly spaced); every scored step is kept."""


# ---------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class Job:
    """One row of one image: ``method`` adapting ``model`` to ``item`` of ``dataset`` with ``seed``."""

    dataset: str
    item: str
    model: str
    method: str
    seed: int | None
    """None for :data:`UNADAPTED`, which draws nothing at random."""

    @property
    def key(self) -> str:
        """The job's identity in the result files."""
        seed = "-" if self.seed is None else str(self.seed)
        return "|".join((self.dataset, self.item, self.model, self.method, seed))

    def fields(self) -> dict[str, Any]:
        return {"key": self.key, "dataset": self.dataset, "item": self.item, "model": self.model,
                "method": self.method, "seed": self.seed}


def plan_jobs(datasets: Mapping[str, Sequence[str]], models: Sequence[str], methods: Sequence[str],
              seeds: Sequence[int]) -> list[Job]:
    """Every job, in a fixed order: dataset, item, model, method (as given), seed.

    ``datasets`` maps a dataset label to its item names (in dataset order).
    """
    jobs = []
    for dataset, items in datasets.items():
        for item in items:
            for model in models:
                for method in methods:
                    for seed in ([None] if method == UNADAPTED else seeds):
                        jobs.append(Job(dataset, item, model, method, seed))
    return jobs


def shard_jobs(jobs: Sequence[Job], rank: int, world: int) -> list[Job]:
    """The jobs of ``rank`` among ``world`` processes: job ``i`` goes to rank ``i % world``."""
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"shard=(rank {rank}, world {world}): need 0 <= rank < world")
    return [job for i, job in enumerate(jobs) if i % world == rank]


# ---------------------------------------------------------------------------- result files
def read_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of one JSON-lines file; a torn (unparseable) last line is left out."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for n, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                log.warning("%s: ignored a torn last line (a job killed while writing)", path)
            else:
                log.warning("%s: line %d is not JSON; ignored", path, n + 1)
    return records


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline, so that the next record starts a line of its own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as f:
            f.truncate(keep)
        log.warning("%s: cut a torn last line of %d bytes", path, len(data) - keep)


def _all_records(out_dir: Path) -> list[dict[str, Any]]:
    return [r for path in sorted(out_dir.glob(RESULTS_GLOB)) for r in read_results(path)]


def finished_keys(out_dir: str | os.PathLike[str]) -> set[str]:
    """Keys of the jobs with a successful record in any rank's file of ``out_dir``."""
    return {r["key"] for r in _all_records(Path(out_dir)) if r.get("status") == "ok" and "key" in r}


def merge_results(out_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every rank's records, one per job key, written to ``out_dir/results.jsonl``.

    A successful record wins over an error for the same key; among equals the later one
    (file order, then rank order) wins. Records are sorted by key.
    """
    out_dir = Path(out_dir)
    best: dict[str, dict[str, Any]] = {}
    for record in _all_records(out_dir):
        key = record.get("key")
        if key is None:
            continue
        old = best.get(key)
        if old is None or record.get("status") == "ok" or old.get("status") != "ok":
            best[key] = record
    merged = [best[k] for k in sorted(best)]
    tmp = out_dir / (MERGED + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for record in merged:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    tmp.replace(out_dir / MERGED)
    return merged


class _Appender:
    """Appends one JSON line per record, each flushed and fsynced before returning."""

    def __init__(self, path: Path) -> None:
        _cut_torn_tail(path)
        self.path = path
        self._file = path.open("a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True, allow_nan=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


# ---------------------------------------------------------------------------- metrics
def resolve_metrics(names: Iterable[str], crop_border: int,
                    paths: Mapping[str, str | os.PathLike[str]] | None = None) -> dict[str, Any]:
    """``{name: metric object}`` for the metrics that can be built, ``{name: reason}`` (a
    string) for those that cannot (missing package or parameter file).

    Unknown names raise at once, with the closest names; ``psnr``/``ssim`` mean the Y-channel
    versions. Every metric removes ``crop_border`` pixels (the scale) from each edge.
    """
    from ..metrics import METRICS

    out: dict[str, Any] = {}
    for raw in names:
        cls = METRICS.lookup(METRIC_ALIASES.get(raw.lower(), raw))
        try:
            out[cls.name] = cls.create(crop_border, paths)
        except Exception as exc:  # noqa: BLE001 - any failure to build is this metric's reason
            out[cls.name] = _reason(exc)
            log.warning("metric %s unavailable: %s", cls.name, out[cls.name])
    return out


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, TTASRError) else f"{type(exc).__name__}: {text}"


def _score(metrics: Mapping[str, Any], sr: torch.Tensor, hr: torch.Tensor | None
           ) -> tuple[dict[str, float], dict[str, str]]:
    scores: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    for name, metric in metrics.items():
        if isinstance(metric, str):
            unavailable[name] = metric
        elif metric.needs_reference and hr is None:
            unavailable[name] = "full-reference metric: this item has no HR reference"
        else:
            try:
                scores[name] = float(metric(sr, hr))
            except Exception as exc:  # noqa: BLE001 - e.g. an image below NIQE's minimum size
                unavailable[name] = _reason(exc)
    return scores, unavailable


# ---------------------------------------------------------------------------- devices and memory
def device_name(device: torch.device) -> str:
    """What the results were measured on, for the timing table."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> tuple[float | None, str]:
    """(MiB, what it is): CUDA's peak allocation since the job began, else the process's
    peak resident set size so far (it never goes down, so it bounds every job before it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    try:
        import resource
    except ImportError:  # Windows
        return None, "unavailable"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if platform.system() == "Darwin" else 1024  # bytes on macOS, KiB on Linux
    return peak * scale / 2**20, "process_max_rss"


# ---------------------------------------------------------------------------- the run
@dataclass
class BenchRun:
    """What one :func:`run_bench` call did on its shard."""

    out_dir: Path
    rank: int
    world: int
    jobs: int
    """Jobs of this shard."""
    skipped: int = 0
    """Already finished (resume)."""
    done: int = 0
    errors: list[str] = field(default_factory=list)
    """``"key: message"`` of each job that ended in an error line."""

    @property
    def results_file(self) -> Path:
        return self.out_dir / f"results-rank{self.rank}.jsonl"

    def summary(self) -> str:
        return (f"rank {self.rank}/{self.world}: {self.jobs} jobs, {self.done} run, {self.skipped} already "
                f"finished, {len(self.errors)} errors")


def _model_label(source: str) -> str:
    text = str(source)
    return Path(text).stem if (os.sep in text or Path(text).suffix) else text


def _method_label(name: str) -> str:
    if name.lower() == UNADAPTED:
        return UNADAPTED
    from ..methods.registry import METHODS

    return METHODS.get(name).name


def _thin_history(history: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    """Every scored step, and about :data:`_HISTORY_POINTS` evenly spaced losses."""
    every = max(1, math.ceil(len(history) / _HISTORY_POINTS))
    return [dict(h) for i, h in enumerate(history) if "score" in h or i % every == 0 or i == len(history) - 1]


def run_bench(
    methods: Sequence[str],
    models: Sequence[str] | Mapping[str, Any],
    datasets: Sequence[str | BenchDataset],
    seeds: Sequence[int],
    out_dir: str | os.PathLike[str],
    metrics: Sequence[str] = ("psnr_y", "ssim_y"),
    method_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    shard: tuple[int, int] = (0, 1),
    resume: bool = True,
    *,
    dataset_options: Mapping[str, Any] | None = None,
    metric_paths: Mapping[str, str | os.PathLike[str]] | None = None,
    device: str | torch.device | None = None,
    tile: int | None = 512,
    keep_crops: int = 1,
) -> BenchRun:
    """Run this shard's jobs (see the module docstring); returns what was done.

    ``methods``: adapter names (:func:`ttasr.list_adapters`); :data:`UNADAPTED` is added when
    absent. ``models``: checkpoint names/paths, or ``{label: model}`` for models already
    loaded. ``datasets``: specs for :func:`~ttasr.bench.load_dataset` (loaded at each model's
    scale, with ``dataset_options``) or :class:`BenchDataset` objects. ``method_overrides``:
    ``{method: {config field: value}}``. ``shard``: ``(rank, world)``. ``resume=False``
    refuses an ``out_dir`` that already has results instead of mixing runs. ``keep_crops``:
    crops kept per job for the report (0 for none; see the module docstring).
    """
    from .. import load_model
    from .spec import load_dataset

    rank, world = shard
    if keep_crops < 0:
        raise InputError(f"keep_crops={keep_crops}: give 0 (none) or more")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not seeds:
        raise InputError("give at least one seed")
    method_names = [_method_label(m) for m in methods]
    method_names = [UNADAPTED] + [m for m in dict.fromkeys(method_names) if m != UNADAPTED]
    overrides = {_method_label(k): dict(v) for k, v in (method_overrides or {}).items()}
    for name in overrides:
        if name not in method_names:
            raise InputError(f"overrides for method {name!r}, which is not benchmarked "
                             f"(methods: {', '.join(method_names)})")
    sources = dict(models) if isinstance(models, Mapping) else {_model_label(m): m for m in models}
    loaded = {label: load_model(src) for label, src in sources.items()}

    # a dataset spec is loaded at each scale among the models; jobs pair models with their scale
    data: dict[str, BenchDataset] = {}
    data_by_scale: dict[int, dict[str, BenchDataset]] = {}
    for scale in sorted({m.scale for m in loaded.values()}):
        for d in datasets:
            ds = d if isinstance(d, BenchDataset) else load_dataset(d, scale=scale, **dict(dataset_options or {}))
            if ds.scale != scale:
                continue
            label = ds.name if ds.name not in data else f"{ds.name}-{len(data)}"
            data[label] = ds
            data_by_scale.setdefault(scale, {})[label] = ds
    jobs = []
    for scale, group in data_by_scale.items():
        labels = [lbl for lbl, m in loaded.items() if m.scale == scale]
        jobs += plan_jobs({k: [i.name for i in v] for k, v in group.items()}, labels, method_names, seeds)
    if not jobs:
        raise InputError("nothing to run: no dataset matches the scale of a model")

    mine = shard_jobs(jobs, rank, world)
    run = BenchRun(out, rank, world, len(mine))
    # only this rank's own file: the others may be writing theirs already
    if not resume and read_results(run.results_file):
        raise InputError(f"{out} already has results: resume them, or choose another folder")
    done = finished_keys(out) if resume else set()
    todo = [job for job in mine if job.key not in done]
    run.skipped = len(mine) - len(todo)
    if rank == 0:
        _write_manifest(out, method_names, sources, data, seeds, metrics, world)
    if not todo:
        log.info(run.summary())
        return run

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    where = device_name(dev)
    scorers = {s: resolve_metrics(metrics, s, metric_paths) for s in data_by_scale}
    items = {(label, item.name): item for label, ds in data.items() for item in ds}
    writer = _Appender(run.results_file)
    try:
        for n, job in enumerate(todo):
            log.info("[%d/%d] %s", n + 1, len(todo), job.key)
            record = _run_job(job, items[(job.dataset, job.item)], loaded[job.model], overrides.get(job.method, {}),
                              scorers[loaded[job.model].scale], dev, tile, keep_crops, out)
            record.update(device=where, rank=rank, world=world, finished=time.time())
            writer.write(record)
            if record["status"] == "ok":
                run.done += 1
            else:
                run.errors.append(f"{job.key}: {record['error']}")
    finally:
        writer.close()
    log.info(run.summary())
    return run


def _run_job(job: Job, item: BenchItem, model: Any, overrides: Mapping[str, Any], metrics: Mapping[str, Any],
             device: torch.device, tile: int | None, keep_crops: int = 0, out: Path | None = None
             ) -> dict[str, Any]:
    """One job's record: its scores, or the error that stopped it (loading, adapting, ...)."""
    from ..inference import enhance
    from ..methods.registry import create_adapter

    base = {**job.fields(), "scale": item.scale, "has_hr": item.has_hr}
    try:
        lr = item.load_lr()
        hr = item.load_hr() if item.has_hr else None
    except (TTASRError, OSError) as exc:
        return {**base, "status": "error", "stage": "load", "error": _reason(exc)}
    _reset_peak(device)
    steps, best_step, history, seconds = 0, 0, [], 0.0
    try:
        if job.method == UNADAPTED:
            start = time.perf_counter()
            sr = enhance(model, lr, tile=tile, device=device, progress=False)
            enhance_seconds = time.perf_counter() - start
        else:
            settings = {"mode": "single", "progress": False, "device": str(device), **overrides, "seed": job.seed}
            adapter = create_adapter(job.method, model, **settings)
            adapter.fit(lr)
            if adapter.interrupted:  # Ctrl-C/SIGTERM inside the loop: the job is not finished
                raise KeyboardInterrupt
            results = adapter.results
            steps = sum(r.steps for r in results)
            best_step = results[-1].best_step
            seconds = sum(r.seconds for r in results)
            history = _thin_history([h for r in results for h in r.history])
            start = time.perf_counter()
            sr = adapter.enhance(tile=tile, progress=False)
            enhance_seconds = time.perf_counter() - start
    except (TTASRError, RuntimeError, ValueError) as exc:
        log.warning("%s: %s", job.key, exc)
        return {**base, "status": "error", "stage": "adapt", "error": _reason(exc)}
    peak, memory_kind = _peak_memory(device)
    if isinstance(sr, list):
        sr = sr[0]
    sr = sr.detach().to("cpu", torch.float32)
    scores, unavailable = _score(metrics, sr, hr)
    record = {**base, "status": "ok", "metrics": scores, "unavailable": unavailable, "seconds": seconds,
              "enhance_seconds": enhance_seconds, "steps": steps, "best_step": best_step,
              "peak_memory_mb": peak, "memory": memory_kind, "history": history}
    if keep_crops and out is not None:
        try:
            record["crops"] = _keep_crops(job, lr, sr, hr, item.scale, keep_crops, out)
        except (TTASRError, OSError) as exc:  # the scores stand without their pictures
            log.warning("%s: crops not kept: %s", job.key, exc)
            record["crops"] = []
    return record


# ---------------------------------------------------------------------------- crops for the report
def safe_name(text: str) -> str:
    """``text`` as a file name: unsafe characters replaced, a short hash keeping names distinct."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:80]
    return f"{slug}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def crop_boxes(lr: torch.Tensor, scale: int, count: int, size: int = CROP_SIZE) -> list[tuple[int, int, int]]:
    """Up to ``count`` non-overlapping square windows of ``lr`` with the most texture, as
    ``(top, left, side)`` in LR pixels, most textured first.

    Candidates lie on a half-window grid (plus the last row and column); texture is the mean
    absolute gradient of the gray image inside a window. Each side is ``size / scale``
    (at most the image's shorter side), so the HR-side crop is about ``size`` pixels.
    """
    h, w = lr.shape[-2:]
    side = max(1, min(size // max(scale, 1), h, w))
    gray = lr.detach().to("cpu", torch.float64).reshape(-1, h, w).mean(0)
    grad = torch.zeros(h, w, dtype=torch.float64)
    grad[:, 1:] += (gray[:, 1:] - gray[:, :-1]).abs()
    grad[1:, :] += (gray[1:, :] - gray[:-1, :]).abs()
    integral = torch.nn.functional.pad(grad.cumsum(0).cumsum(1), (1, 0, 1, 0))

    def positions(n: int) -> list[int]:
        step = max(1, side // 2)
        return sorted({*range(0, n - side + 1, step), n - side})

    scored = []
    for top in positions(h):
        for left in positions(w):
            b, r = top + side, left + side
            energy = float(integral[b, r] - integral[top, r] - integral[b, left] + integral[top, left])
            scored.append((-energy, top, left))
    chosen: list[tuple[int, int, int]] = []
    for _, top, left in sorted(scored):
        if len(chosen) == count:
            break
        if all(top >= t + side or t >= top + side or left >= l_ + side or l_ >= left + side
               for t, l_, _ in chosen):
            chosen.append((top, left, side))
    return chosen


def _bicubic_crop(lr: torch.Tensor, scale: int, top: int, left: int, side: int) -> torch.Tensor:
    """The HR-side window of the bicubic upsampled ``lr``: only a padded LR window is upsampled
    (bicubic reads 2 pixels each way, so the result equals the same part of the whole image)."""
    h, w = lr.shape[-2:]
    pad = 2
    t0, l0 = max(0, top - pad), max(0, left - pad)
    t1, l1 = min(h, top + side + pad), min(w, left + side + pad)
    up = torch.nn.functional.interpolate(lr[..., t0:t1, l0:l1].to(torch.float32), scale_factor=scale,
                                         mode="bicubic", align_corners=False)
    y, x = (top - t0) * scale, (left - l0) * scale
    return up[..., y:y + side * scale, x:x + side * scale].clamp(0, 1)


def _keep_crops(job: Job, lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor | None, scale: int, count: int,
                out: Path) -> list[dict[str, Any]]:
    """Write this job's crops (and the item's bicubic and HR crops, once) and describe them."""
    from ..io import save_image
    from ..metrics.fidelity import psnr_y

    lr = lr.detach().to("cpu", torch.float32)
    own = safe_name(job.key)
    shared = safe_name(f"{job.dataset}|{job.item}|{job.model}")
    kept = []
    for n, (top, left, side) in enumerate(crop_boxes(lr, scale, count)):
        y, x, s = top * scale, left * scale, side * scale
        views = {"sr": sr[..., y:y + s, x:x + s], "bicubic": _bicubic_crop(lr, scale, top, left, side)}
        if hr is not None and hr.shape[-2] >= y + s and hr.shape[-1] >= x + s:
            views["hr"] = hr[..., y:y + s, x:x + s].to("cpu", torch.float32)
        if views["sr"].shape[-2:] != (s, s):  # an output smaller than LR x scale
            continue
        entry: dict[str, Any] = {"box": [y, x, s, s]}
        for view, image in views.items():
            rel = f"{CROPS}/{own if view == 'sr' else shared + '-' + view}-{n}.png"
            if view == "sr" or not (out / rel).is_file():  # the shared views: once per item and model
                save_image(image, out / rel)
            entry[view] = rel
        if "hr" in views:
            entry["psnr_y"] = {v: psnr_y(views[v], views["hr"]) for v in ("sr", "bicubic")}
        kept.append(entry)
    return kept


def _write_manifest(out: Path, methods: Sequence[str], models: Mapping[str, Any],
                    data: Mapping[str, BenchDataset], seeds: Sequence[int], metrics: Sequence[str],
                    world: int) -> None:
    """What was asked for, for the tables and report: metric directions and dataset problems."""
    from ..metrics import METRICS

    infos = {}
    for raw in metrics:
        cls = METRICS.lookup(METRIC_ALIASES.get(raw.lower(), raw))
        infos[cls.name] = {"higher_is_better": cls.higher_is_better, "needs_reference": cls.needs_reference,
                           "description": cls.description}
    manifest = {
        "methods": list(methods),
        "models": {k: v if isinstance(v, str) else type(v).__name__ for k, v in models.items()},
        "datasets": {k: {"summary": d.summary(), "scale": d.scale, "items": len(d),
                         "problems": [str(p) for p in d.problems]} for k, d in data.items()},
        "seeds": list(seeds),
        "metrics": infos,
        "metric_order": list(infos),
        "world": world,
    }
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")  # keeps the orders
    tmp.replace(out / MANIFEST)
