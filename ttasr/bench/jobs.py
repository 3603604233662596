"""Benchmark jobs: one (dataset, item, model, method, seed) each, in a fixed order, and how
they are grouped into units of work and shared among processes."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import InputError

__all__ = ["UNADAPTED", "Job", "plan_jobs", "plan_units", "shard_jobs"]

UNADAPTED = "unadapted"
"""The method name of the pretrained model without adaptation: always a row of the tables."""

T = TypeVar("T")


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


def shard_jobs(jobs: Sequence[T], rank: int, world: int, group: Callable[[T], Any] | None = None) -> list[T]:
    """The jobs (or units) of ``rank`` among ``world`` processes, in their order.

    Entry ``i`` goes to rank ``i % world``. With ``group`` (e.g. a unit's method), the
    entries are dealt out group after group, in the order the groups first appear, so that
    every rank gets its share of each group: costs are alike within a group, not across
    groups (a plain deal of [unadapted, HRAware, AdaSSR, unadapted] units per dataset gives
    every HRAware unit to rank 1). Any world size partitions the entries, so a resume with
    another one still finishes exactly the missing work.
    """
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"shard=(rank {rank}, world {world}): need 0 <= rank < world")
    order = list(range(len(jobs)))
    if group is not None:
        keys = [group(job) for job in jobs]
        first: dict[Any, int] = {}
        for key in keys:
            first.setdefault(key, len(first))
        order.sort(key=lambda i: first[keys[i]])  # stable: job order within a group
    return [jobs[i] for i in sorted(i for n, i in enumerate(order) if n % world == rank)]


def plan_units(jobs: Sequence[Job], together: Callable[[Job], bool]) -> list[list[Job]]:
    """The jobs grouped into units of work, in job order.

    A job for which ``together`` holds (a multi-image method) joins the other jobs of its
    (dataset, model, method, seed), at the place of the first; any other job is a unit
    of its own. Units are what :func:`shard_jobs` deals out, so one adaptation never spans
    two processes.
    """
    units: list[list[Job]] = []
    where: dict[tuple[Any, ...], int] = {}
    for job in jobs:
        if together(job):
            key = (job.dataset, job.model, job.method, job.seed)
            if key in where:
                units[where[key]].append(job)
                continue
            where[key] = len(units)
        units.append([job])
    return units
