"""Running a benchmark under ``torchrun``: rank and world from the environment, one barrier.

The processes never exchange results: each rank writes its own JSON-lines file (see
:mod:`.runner`) and rank 0 merges them after the final barrier. ``torch.distributed`` is
used only to know who is who and to wait for everyone, so a rank that dies loses only its
unfinished jobs, and rerunning the same command resumes them.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch

__all__ = ["Shard", "barrier", "finish", "init_from_env"]

log = logging.getLogger(__name__)

BARRIER_TIMEOUT = datetime.timedelta(days=2)
"""How long a rank that finished waits for the others: shards can differ by hours."""


@dataclass(frozen=True)
class Shard:
    """Where this process stands: its rank among ``world`` and the device it should use."""

    rank: int = 0
    world: int = 1
    device: str | None = None
    """``cuda:LOCAL_RANK`` when torchrun started several processes on a GPU machine."""
    distributed: bool = False
    """Whether a process group was initialised (and must be finished with :func:`finish`)."""


def init_from_env() -> Shard:
    """The shard of this process: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` as torchrun sets them,
    with a process group (gloo on the CPU, nccl on CUDA) when the world has several ranks."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = None
    backend = "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = f"cuda:{local_rank}", "nccl"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
    shard = Shard(dist.get_rank(), dist.get_world_size(), device, True)
    log.info("rank %d of %d (%s)", shard.rank, shard.world, backend)
    return shard


def barrier(shard: Shard) -> None:
    """Wait until every rank got here (no-op for a single process)."""
    if not shard.distributed:
        return
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def finish(shard: Shard) -> None:
    """Tear the process group down."""
    if shard.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
