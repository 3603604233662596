"""``run_bench``: every (dataset, item, model, method, seed) job adapted, scored and appended
to a JSON-lines file, resumable and shardable over processes.

>>> from ttasr.bench import run_bench, write_tables
>>> run_bench(["adassr"], ["span-x4"], ["proxy:camera"], seeds=[0, 1], out_dir="bench-out",
...           metrics=("psnr_y", "ssim_y", "niqe"), method_overrides={"adassr": {"max_steps": 300}})
>>> write_tables("bench-out")          # results.md / results.csv / timing.md / timing.csv

By default every job adapts one image on its own (single-image mode, as the papers'
per-image numbers are made), super-resolves it and scores it. A row can instead be a
:class:`~ttasr.bench.variants.Variant` (a method under its own label, with overrides); one
with ``mode="multi"`` adapts once over all images of a dataset (one camera) and scores
each image with the shared weights. ``"unadapted"`` (the pretrained model as it is) is
always a row; it is deterministic, so it runs once per item (``seed`` null).

One JSON line per finished job goes to ``out_dir/results-rank{r}.jsonl``, flushed and
fsynced before the next job starts, so a killed process loses only the job it was running
(a multi-image unit: its adaptation). On start the lines of every rank file are read and
finished jobs are skipped (a torn last line, from a kill during a write, is cut off); jobs
that ended in an error are tried again. Jobs are listed in a fixed order and grouped into
units (a job alone, or the jobs of one multi-image adaptation); unit ``i`` belongs to rank
``i % world``, so a rerun with any world size finishes exactly the jobs that are missing.

``workers_per_gpu=N`` (or the field of that name in a variant's overrides) adapts N images
of a single-image row at once in worker processes sharing the device (see
:mod:`ttasr.adapters.workers`); each image's result is the one-at-a-time result, so only
the timing changes. The timing table names the device of every job.

With ``keep_crops=N`` (default 1) every job also keeps its N most textured
:data:`~ttasr.bench.crops.CROP_SIZE`-pixel windows of the SR output as PNGs under
``out_dir/crops/``, beside the same windows of the bicubic-upsampled LR and of the HR, for
:func:`~ttasr.bench.report.write_report` (see :mod:`ttasr.bench.crops`). The PNGs are
written before the job's line, whose ``"crops"`` field lists them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, TTASRError
from .crops import CROP_SIZE, keep_crops as _keep_crops
from .jobs import UNADAPTED, Job, plan_jobs, plan_units, shard_jobs
from .records import BenchDataset, BenchItem
from .results import MANIFEST, Appender, finished_keys, merge_results, read_results
from .variants import Variant, bind_item_values, resolve_variants

__all__ = [
    "CROP_SIZE",
    "METRIC_ALIASES",
    "UNADAPTED",
    "BenchRun",
    "Job",
    "Variant",
    "finished_keys",
    "merge_results",
    "plan_jobs",
    "read_results",
    "resolve_metrics",
    "run_bench",
    "shard_jobs",
]

log = logging.getLogger(__name__)

METRIC_ALIASES: dict[str, str] = {"psnr": "psnr_y", "ssim": "ssim_y"}
"""Short names the papers use for the Y-channel metrics."""

_HISTORY_POINTS = 100
"""Loss values kept per job (evenly spaced); every scored step is kept."""


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


def _thin_history(history: Sequence[Mapping[str, float]]) -> list[dict[str, float]]:
    """Every scored step, and about :data:`_HISTORY_POINTS` evenly spaced losses."""
    every = max(1, math.ceil(len(history) / _HISTORY_POINTS))
    return [dict(h) for i, h in enumerate(history) if "score" in h or i % every == 0 or i == len(history) - 1]


def run_bench(
    methods: Sequence[str | Variant],
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
    workers_per_gpu: int = 1,
) -> BenchRun:
    """Run this shard's jobs (see the module docstring); returns what was done.

    ``methods``: adapter names (:func:`ttasr.list_adapters`) or :class:`Variant` rows;
    :data:`UNADAPTED` is added when absent. ``models``: checkpoint names/paths, or
    ``{label: model}`` for models already loaded. ``datasets``: specs for
    :func:`~ttasr.bench.load_dataset` (loaded at each model's scale, with
    ``dataset_options``) or :class:`BenchDataset` objects. ``method_overrides``:
    ``{row label: {config field: value}}``. ``shard``: ``(rank, world)``. ``resume=False``
    refuses an ``out_dir`` that already has results instead of mixing runs. ``keep_crops``:
    crops kept per job for the report (0 for none). ``workers_per_gpu``: images of a
    single-image row adapted at once (see the module docstring).
    """
    from .. import load_model
    from .spec import load_dataset

    rank, world = shard
    if keep_crops < 0:
        raise InputError(f"keep_crops={keep_crops}: give 0 (none) or more")
    if isinstance(workers_per_gpu, bool) or not isinstance(workers_per_gpu, int) or workers_per_gpu < 1:
        raise InputError(f"workers_per_gpu={workers_per_gpu!r}: give a whole number >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not seeds:
        raise InputError("give at least one seed")
    variants = resolve_variants(methods, method_overrides)
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
        jobs += plan_jobs({k: [i.name for i in v] for k, v in group.items()}, labels, list(variants), seeds)
    if not jobs:
        raise InputError("nothing to run: no dataset matches the scale of a model")

    units = shard_jobs(plan_units(jobs, lambda job: variants[job.method].mode == "multi"), rank, world,
                       group=lambda unit: unit[0].method)
    run = BenchRun(out, rank, world, sum(len(u) for u in units))
    # only this rank's own file: the others may be writing theirs already
    if not resume and read_results(run.results_file):
        raise InputError(f"{out} already has results: resume them, or choose another folder")
    done = finished_keys(out) if resume else set()
    pending = {job.key for unit in units for job in unit if job.key not in done}
    run.skipped = run.jobs - len(pending)
    if rank == 0:
        _write_manifest(out, variants, sources, data, seeds, metrics, world)
    if not pending:
        log.info(run.summary())
        return run

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    where = device_name(dev)
    scorers = {s: resolve_metrics(metrics, s, metric_paths) for s in data_by_scale}
    items = {(label, item.name): item for label, ds in data.items() for item in ds}
    batches = _batches(units, pending, variants, workers_per_gpu)
    writer = Appender(run.results_file)
    try:
        for n, batch in enumerate(batches):
            first = batch[0]
            log.info("[%d/%d] %s%s", n + 1, len(batches), first.key, f" (+{len(batch) - 1} images)" if batch[1:] else "")
            model = loaded[first.model]
            for record in _run_unit(batch, [items[(j.dataset, j.item)] for j in batch], model, variants[first.method],
                                    pending, scorers[model.scale], dev, tile, keep_crops, out):
                record.update(device=where, rank=rank, world=world, finished=time.time())
                writer.write(record)
                if record["status"] == "ok":
                    run.done += 1
                else:
                    run.errors.append(f"{record['key']}: {record['error']}")
    finally:
        writer.close()
    log.info(run.summary())
    return run


def _batches(units: Sequence[list[Job]], pending: set[str], variants: Mapping[str, Variant],
             workers_per_gpu: int) -> list[list[Job]]:
    """What one adapter fits at a time: a multi-image unit with a pending job; otherwise one
    pending job, or up to ``workers_per_gpu`` of one (dataset, model, method, seed) together."""
    out: list[list[Job]] = []
    open_batch: dict[tuple[Any, ...], list[Job]] = {}
    for unit in units:
        if not any(job.key in pending for job in unit):
            continue
        variant = variants[unit[0].method]
        workers = int(variant.overrides.get("workers_per_gpu", workers_per_gpu))
        if variant.mode == "multi" or variant.method == UNADAPTED or workers <= 1:
            out.append([job for job in unit if variant.mode == "multi" or job.key in pending])
            continue
        job = unit[0]
        key = (job.dataset, job.model, job.method, job.seed)
        batch = open_batch.get(key)
        if batch is None or len(batch) >= workers:
            batch = open_batch[key] = []
            out.append(batch)
        batch.append(job)
    return out


def _run_unit(jobs: Sequence[Job], items: Sequence[BenchItem], model: Any, variant: Variant, pending: set[str],
              metrics: Mapping[str, Any], device: torch.device, tile: int | None, keep_crops: int, out: Path
              ) -> Iterator[dict[str, Any]]:
    """The records of one batch of jobs (one method, model, seed): each image's scores, or the
    error that stopped it (loading, adapting, ...). Jobs not in ``pending`` (finished parts of
    a multi-image unit) are adapted with the others but get no new record."""
    from ..adapters.distributed import local_adaptation
    from ..inference import enhance
    from ..methods.registry import create_adapter

    loaded = []
    for job, item in zip(jobs, items):
        base = {**job.fields(), "scale": item.scale, "has_hr": item.has_hr}
        try:
            lr = item.load_lr()
            hr = item.load_hr() if item.has_hr else None
        except (TTASRError, OSError) as exc:
            if job.key in pending:
                yield {**base, "status": "error", "stage": "load", "error": _reason(exc)}
            continue
        loaded.append((job, item, base, lr, hr))
    if not loaded:
        return
    _reset_peak(device)
    adapter = None
    try:
        if variant.method != UNADAPTED:
            settings = {"mode": "single", "progress": False, "device": str(device), "per_image_seeds": False,
                        **bind_item_values(variant.overrides, [entry[1] for entry in loaded]), "seed": jobs[0].seed}
            if variant.mode == "single":
                settings["workers_per_gpu"] = len(loaded)  # _batches sized the batch to the workers
            adapter = create_adapter(variant.method, model, **settings)
            with local_adaptation():  # this rank's unit: never DDP with another rank's unit
                adapter.fit([entry[3] for entry in loaded])
    except (TTASRError, RuntimeError, ValueError) as exc:
        log.warning("%s: %s", jobs[0].key, exc)
        for job, _, base, _, _ in loaded:
            if job.key in pending:
                yield {**base, "status": "error", "stage": "adapt", "error": _reason(exc)}
        return
    peak, memory_kind = _peak_memory(device)
    shared = adapter is not None and variant.mode == "multi"
    fitted_model = adapter.fitted_models() if adapter is not None else None
    for index, (job, item, base, lr, hr) in enumerate(loaded):
        fitted = _result_of(adapter, index, shared)
        if adapter is not None and fitted is None:
            continue  # not adapted: interrupted before it (raised below)
        if job.key not in pending:
            continue
        try:
            start = time.perf_counter()
            net = model if fitted_model is None else fitted_model(index)
            sr = enhance(net, lr, tile=tile, device=device, progress=False)
            enhance_seconds = time.perf_counter() - start
        except (TTASRError, RuntimeError, ValueError) as exc:
            yield {**base, "status": "error", "stage": "enhance", "error": _reason(exc)}
            continue
        sr = sr.detach().to("cpu", torch.float32)
        scores, unavailable = _score(metrics, sr, hr)
        steps, best_step, seconds, history = fitted or (0, 0, 0.0, [])
        if shared:
            seconds /= len(loaded)  # the adaptation's time, shared by its images
        record = {**base, "status": "ok", "metrics": scores, "unavailable": unavailable, "seconds": seconds,
                  "enhance_seconds": enhance_seconds, "steps": steps, "best_step": best_step,
                  "peak_memory_mb": peak, "memory": memory_kind, "history": history,
                  "mode": variant.mode if adapter is not None else "none", "images_per_fit": len(loaded)}
        if keep_crops:
            try:
                record["crops"] = _keep_crops(job, lr, sr, hr, item.scale, keep_crops, out)
            except (TTASRError, OSError) as exc:  # the scores stand without their pictures
                log.warning("%s: crops not kept: %s", job.key, exc)
                record["crops"] = []
        yield record
    if adapter is not None and adapter.interrupted:  # Ctrl-C/SIGTERM: the rest is not finished
        raise KeyboardInterrupt


def _result_of(adapter: Any, index: int, shared: bool) -> tuple[int, int, float, list[dict[str, float]]] | None:
    """(steps, best step, seconds, history) of the adaptation that made image ``index``'s
    weights; None when it has none or was cut short."""
    if adapter is None:
        return None
    chosen = [r for r in adapter.results if shared or index in r.image_indices]
    if not chosen or any(r.interrupted for r in chosen):
        return None
    history = _thin_history([h for r in chosen for h in r.history])
    return sum(r.steps for r in chosen), chosen[-1].best_step, sum(r.seconds for r in chosen), history


def _write_manifest(out: Path, variants: Mapping[str, Variant], models: Mapping[str, Any],
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
        "methods": list(variants),
        "variants": {label: {"method": v.method, "mode": v.mode, "overrides": _jsonable(v.overrides)}
                     for label, v in variants.items()},
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


def _jsonable(value: Mapping[str, Any]) -> Any:
    """``value`` as JSON can hold it (other objects as their ``repr``), for the manifest."""
    return json.loads(json.dumps(value, default=repr))
