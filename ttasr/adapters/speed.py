"""How a training step runs on its device: precision, memory format, compilation.

None of this changes what a step computes, only how fast (bf16 autocast rounds the forward
and backward; the weights, the optimiser and the EMA stay float32). On the CPU every
choice resolves to off unless asked for, so CPU results stay those of plain float32.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .base import Batch

__all__ = ["AMP_AUTO_CUDA", "TrainingSpeed", "training_speed"]

log = logging.getLogger(__name__)

AMP_AUTO_CUDA = "off"
"""What ``amp="auto"`` means on CUDA. Measured with ``benchmarks/gpu.py`` on an H200 (benchmarks/RESULTS.md, *On a GPU*):
bf16 autocast made both the bare and the AdaSSR step slower at the paper's batch (4 x 48²),
which is bound by kernel launches, not arithmetic; so float32."""


@dataclass(frozen=True)
class TrainingSpeed:
    """Resolved speed settings of one training run on ``device``."""

    device: torch.device
    amp: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False

    def place(self, batch: Batch) -> Batch:
        """The batch in the memory format the weights use."""
        if not self.channels_last:
            return batch
        cl = torch.channels_last
        w = batch.weights.contiguous(memory_format=cl) if batch.weights is not None and batch.weights.ndim == 4 \
            else batch.weights
        return type(batch)(batch.inputs.contiguous(memory_format=cl), batch.targets, w)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast around the loss, or nothing."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    @contextlib.contextmanager
    def backend(self) -> Iterator[None]:
        """cuDNN autotuning for the run's static shapes (CUDA only), restored afterwards."""
        if self.device.type != "cuda":
            yield
            return
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = previous

    def compiled(self, module: nn.Module) -> nn.Module:
        """``module`` compiled (sharing its parameters: the loop keeps training, averaging and
        saving ``module`` itself, whose state-dict keys stay as they are), or ``module``."""
        if not self.compile:
            return module
        return torch.compile(module)  # type: ignore[return-value]


def training_speed(config: Any, device: torch.device) -> TrainingSpeed:
    """Resolve a config's ``amp``, ``channels_last`` and ``compile`` for ``device``."""
    on_cuda = device.type == "cuda"
    amp_name = getattr(config, "amp", "off")
    if amp_name == "auto":
        amp_name = AMP_AUTO_CUDA if on_cuda else "off"
    amp = torch.bfloat16 if amp_name == "bf16" else None
    if amp is not None and on_cuda and not torch.cuda.is_bf16_supported():
        log.warning("amp='bf16' but %s has no bfloat16 support: training in float32", device)
        amp = None
    cl = getattr(config, "channels_last", None)
    channels_last = on_cuda if cl is None else bool(cl)
    return TrainingSpeed(device=device, amp=amp, channels_last=channels_last,
                         compile=bool(getattr(config, "compile", False)))
