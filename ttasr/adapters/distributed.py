"""Multi-image adaptation across processes: DistributedDataParallel under ``torchrun``.

When a ``torch.distributed`` process group is initialised with several ranks (``torchrun
--nproc-per-node N ...``; the CLI initialises it from the environment), a multi-image
adaptation runs on every rank at once: each rank draws its own batches (its generator is
seeded with its rank), DDP averages the gradients, so every step sees ``N x batch_size``
pairs and the weights stay identical on all ranks. Evaluations run on every rank on the
same weights, so the stopping decisions agree without further messages. Each rank keeps
its own resumable state file.

A rank that is interrupted or fails leaves the others waiting at the next gradient
exchange: stop a distributed run by stopping ``torchrun`` (which signals every rank).

Code that gives each rank work of its own (``ttasr bench`` shards its adaptations across
the ranks) runs them inside :func:`local_adaptation`: there every adaptation is this
process's alone. Without it, two ranks adapting different images of one model would
average their gradients.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["data_parallel_world", "local_adaptation", "wrap_data_parallel"]

_local_depth = 0


@contextmanager
def local_adaptation() -> Iterator[None]:
    """Inside this block, adaptations ignore the process group: one process, no DDP."""
    global _local_depth
    _local_depth += 1
    try:
        yield
    finally:
        _local_depth -= 1


def data_parallel_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group; ``(0, 1)`` without one or
    inside :func:`local_adaptation`."""
    import torch.distributed as dist

    if _local_depth or not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def wrap_data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel on ``device`` (its parameters are shared)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" \
        else None
    # some blocks train only part of their weights (SPAN's fused eval conv is unused in train mode)
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True, broadcast_buffers=False)
