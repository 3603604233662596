"""Several single-image adaptations at once: worker processes sharing one device.

Each worker is a spawned process holding a copy of the adapter; it takes the next image
group from a shared queue, runs :meth:`Adapter.adapt_group` on it exactly as the parent
would, and sends the :class:`FitResult` back. The results are those of the one-at-a-time
run (same code, same seeds, same device), while a GPU that one process leaves idle between
its kernel launches gets work from the others. CPU threads are split between the workers.

SIGINT/SIGTERM to the parent are passed on to the workers, which finish their current
step, save their state (so that ``resume=True`` continues them) and return their best
weights so far; groups not started are left for the resumed run.
"""

from __future__ import annotations

import copy
import logging
import os
import pickle
import queue
import signal
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from ..errors import InputError
from .loop import signals_caught

if TYPE_CHECKING:
    from .base import Adapter, FitResult, ImageGroup

__all__ = ["adapt_in_workers", "check_workers"]

log = logging.getLogger(__name__)

_POLL_S = 0.2


def adapt_in_workers(
    adapter: Adapter[Any], groups: Sequence[ImageGroup], *, workers: int, resume: bool
) -> tuple[dict[int, FitResult], BaseException | None, bool]:
    """Adapt ``groups`` in ``workers`` processes.

    Returns ``(results by group position, the first error or None, interrupted)``; results of
    groups that finished are returned even when another group failed or a signal came.
    """
    ctx = torch.multiprocessing.get_context("spawn")
    tasks: Any = ctx.Queue()
    done: Any = ctx.Queue()
    for n in range(len(groups)):
        tasks.put(n)
    workers = min(workers, len(groups))
    for _ in range(workers):
        tasks.put(None)
    threads = max(1, torch.get_num_threads() // workers)
    payload = _portable(adapter)
    procs = [ctx.Process(target=_work, args=(payload, list(groups), resume, threads, tasks, done), daemon=True)
             for _ in range(workers)]
    results: dict[int, FitResult] = {}
    error: BaseException | None = None
    with _forwarding(procs) as stopping:
        for p in procs:
            p.start()
        finished = 0
        while finished < workers:
            try:
                kind, n, value = pickle.loads(done.get(timeout=_POLL_S))
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and done.empty():
                    dead = [p.exitcode for p in procs if p.exitcode not in (0, None)]
                    # a worker still starting up when a signal came dies of it: not an error
                    signalled = stopping.is_set() and all(-c in (signal.SIGINT, signal.SIGTERM) for c in dead)
                    if dead and error is None and not signalled:
                        error = RuntimeError(f"a worker process died (exit codes {dead}); finished images are "
                                             "kept, rerun with resume=True for the rest")
                    break
                continue
            if kind == "result":
                results[n] = value
                log.info("%s: image group %d/%d adapted", adapter.name, n + 1, len(groups))
                if value.interrupted:
                    stopping.set()
            elif kind == "error":
                error = error or value
                stopping.set()
                _signal_all(procs, signal.SIGTERM)
            else:  # "exit"
                finished += 1
        for p in procs:
            p.join(timeout=30)
    return results, error, stopping.is_set()


def _portable(adapter: Adapter[Any]) -> Adapter[Any]:
    """The adapter without its results, ready to be pickled to a worker."""
    clone = copy.copy(adapter)
    clone.results, clone.records = [], None
    return clone


@contextmanager
def _forwarding(procs: list[Any]) -> Iterator[threading.Event]:
    """Pass SIGINT/SIGTERM on to the workers while they run (as :func:`signals_caught`
    allows); the event says one came."""
    stopping = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        stopping.set()
        log.warning("%s: asking the workers to finish their current step", signal.Signals(signum).name)
        _signal_all(procs, signum)

    with signals_caught(handler):
        yield stopping


def _signal_all(procs: list[Any], signum: int) -> None:
    for p in procs:
        if p.pid is not None and p.is_alive():
            try:
                os.kill(p.pid, signum)
            except ProcessLookupError:
                pass


def _work(adapter: Adapter[Any], groups: list[ImageGroup], resume: bool, threads: int, tasks: Any, done: Any) -> None:
    """A worker: adapt groups from ``tasks`` until a ``None`` or a signal."""
    torch.set_num_threads(threads)
    os.setpgrp()  # signals come from the parent only (a terminal's Ctrl-C would arrive twice)
    got_signal = threading.Event()

    def handler(signum: int, _frame: Any) -> None:  # before the loop installs its own
        got_signal.set()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, handler)
    try:
        while not got_signal.is_set():
            n = tasks.get()
            if n is None:
                break
            try:
                result = adapter.adapt_group(groups[n], (), resume)
            except BaseException as exc:  # noqa: BLE001 - sent to the parent, which re-raises
                done.put(_by_value(("error", n, _picklable(exc))))
                break
            done.put(_by_value(("result", n, result)))
            if result.interrupted:
                break
    finally:
        done.put(_by_value(("exit", -1, None)))


def _by_value(message: tuple[str, int, Any]) -> bytes:
    """Plain pickle: tensors travel by value, not as shared-memory handles that die with the
    worker before the parent has read them."""
    return pickle.dumps(message)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure: send the text instead
        return RuntimeError("".join(traceback.format_exception(exc)))


def check_workers(adapter: Adapter[Any], groups: int) -> int:
    """How many workers to start for ``groups`` image groups (1: run in this process)."""
    n = adapter.config.workers_per_gpu
    if n > 1 and adapter.config.mode != "single":
        raise InputError("workers_per_gpu > 1 adapts images concurrently, which needs mode='single' "
                         "(multi-image mode is one adaptation)")
    return max(1, min(n, groups))
