"""Benchmark datasets: real paired sets, folders and offline proxies, scanned without decoding.

>>> from ttasr.bench import load_dataset
>>> data = load_dataset("realsr:/data/RealSR(V3)", scale=4)
>>> data.summary()
'realsr x4: 100 images, 100 with HR'
>>> lr, hr = data[0].load_lr(), data[0].load_hr()   # 1x3xHxW tensors in [0, 1]

Modules: :mod:`.records` (items, datasets, problems), :mod:`.datasets` (RealSR v3, DRealSR,
paired and LR-only folders), :mod:`.proxy` (HR photos + a camera preset) and :mod:`.spec`
(``"kind:argument"`` strings);
:mod:`.runner` (``run_bench``: every job adapted, scored and appended to JSON lines,
resumable and sharded), :mod:`.tables` (``write_tables``: paper-style tables) and
:mod:`.distributed` (rank and world under ``torchrun``); :mod:`.report` (``write_report``:
one self-contained HTML page with the tables, plots and before/after crops).
"""

from .datasets import (
    DEFAULT_PAIR_KEY,
    REALSR_CAMERAS,
    load_drealsr,
    load_lr_only,
    load_paired,
    load_realsr,
)
from .proxy import DEFAULT_PHOTOS, build_proxy, wallpaper_photos
from .records import BenchDataset, BenchItem, Problem, ProblemKind
from .report import write_report
from .jobs import UNADAPTED, Job, plan_jobs, shard_jobs
from .results import merge_results, read_results
from .runner import BenchRun, run_bench
from .variants import TRUE_KERNEL, Variant
from .spec import DATASET_KINDS, list_dataset_kinds, load_dataset, parse_spec
from .tables import write_tables

__all__ = [
    "DATASET_KINDS",
    "DEFAULT_PAIR_KEY",
    "DEFAULT_PHOTOS",
    "REALSR_CAMERAS",
    "TRUE_KERNEL",
    "UNADAPTED",
    "BenchDataset",
    "BenchItem",
    "BenchRun",
    "Job",
    "Problem",
    "ProblemKind",
    "Variant",
    "build_proxy",
    "list_dataset_kinds",
    "load_dataset",
    "load_drealsr",
    "load_lr_only",
    "load_paired",
    "load_realsr",
    "merge_results",
    "parse_spec",
    "plan_jobs",
    "read_results",
    "run_bench",
    "shard_jobs",
    "wallpaper_photos",
    "write_report",
    "write_tables",
]
