"""The LR reconstruction paradigm of finetuning (LWay; HR-aware eq. 6), shared by
:class:`ttasr.HRAware` and :class:`ttasr.LWay`.

A frozen, pretrained LR reconstruction network ``(E_d, E_i, R)`` must re-create the real LR
input ``y`` from the SR model's output ``x̂ = N(y)``::

    L = ℓ1_w(R(x̂, s ⊙ E_d(y), E_i(x̂)), y) + extra(x̂, E_i(x̂))

on random LR crops of the test images; only ``N`` is trained. The subclasses choose the
controller ``s`` (:meth:`ReconstructionAdapter.control`), the per-pixel weights ``w``
(:meth:`~ReconstructionAdapter.loss_weights`) and the extra term
(:meth:`~ReconstructionAdapter.regularizer`).

The learning rate depends on the SR architecture (HR-aware Sec. 5.1: "depending on the
architecture of SR models"; its values were lost from the text): each method has a small
table by spandrel architecture name, used when ``lr`` is ``None``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from ..._config import option
from ...adapters.base import Adapter, Batch, ImageGroup
from ...adapters.config import AdapterConfig
from ...adapters.training import weighted_l1
from ...models.model import forward
from .networks import LRReconstructionNetwork
from .reconstructors import resolve_reconstructor

__all__ = ["ReconstructionAdapter", "ReconstructionConfig", "random_crops"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconstructionConfig(AdapterConfig):
    """Settings of every LR-reconstruction adapter (HR-aware Sec. 5.1 where it says)."""

    max_steps: int = option(500, "Finetuning iterations (HR-aware: 300-600).", low=0, affects_result=False)
    lr: float | None = option(  # type: ignore[assignment]
        None, "Adam learning rate; None: the method's table by architecture (see the method's docs).",
        low=0, low_open=True)
    ema_decay: float | None = option(0.999, "EMA decay of the weights (HR-aware: 0.999 in finetuning).",
                                     low=0, high=1, high_open=True)
    batch_size: int = option(4, "LR crops per step (ours).", low=1)
    patch_size: int = option(48, "Side of the LR crops y; N(y) is scale x larger (ours).", low=4)
    reconstructor: str | None = option(
        None, "The pretrained LR reconstruction network: a file (`ttasr pretrain-reconstructor`) or a registered "
        "name; None: hraware-reconstructor-x<scale>, built from the offline photo set on first use.")


RC = TypeVar("RC", bound=ReconstructionConfig)


def random_crops(
    images: Sequence[torch.Tensor],
    weights: Sequence[torch.Tensor | None],
    size: int,
    batch: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``batch`` aligned crops of ``images`` (``1x3xHxW`` each) and of their ``1x1xHxW``
    weight maps (or ``None``), images drawn in proportion to their area so that every
    pixel is equally likely."""
    areas = torch.tensor([float(y.shape[-2] * y.shape[-1]) for y in images])
    which = torch.multinomial(areas / areas.sum(), batch, replacement=True, generator=generator)
    crops, maps = [], []
    for i in which.tolist():
        y, w = images[i], weights[i]
        h, wd = y.shape[-2:]
        top = int(torch.randint(h - size + 1, (), generator=generator))
        left = int(torch.randint(wd - size + 1, (), generator=generator))
        crops.append(y[..., top:top + size, left:left + size])
        if w is not None:
            maps.append(w[..., top:top + size, left:left + size])
    return torch.cat(crops), (torch.cat(maps) if maps else None)


class ReconstructionAdapter(Adapter[RC]):
    """Finetuning through a frozen LR reconstruction network (module docstring).

    ``reconstructor`` may be an :class:`LRReconstructionNetwork` object (kept out of the
    config, which holds names and paths only), a file or a registered name.
    """

    lr_table: ClassVar[Mapping[str, float]] = {}
    """Learning rate by spandrel architecture name, when ``lr`` is ``None``."""
    default_lr: ClassVar[float] = 2e-5
    """Learning rate of architectures missing from :attr:`lr_table`."""

    def __init__(self, model: Any, config: RC | None = None, *, reconstructor: Any = None, **overrides: Any) -> None:
        given = reconstructor if reconstructor is not None else overrides.pop("reconstructor", None)
        live = given if isinstance(given, LRReconstructionNetwork) else None
        if given is not None and live is None:
            overrides["reconstructor"] = str(given)
        super().__init__(model, config, **overrides)
        self._network: LRReconstructionNetwork | None = live
        self._network_where = "a network object" if live is not None else ""
        self._network_hash: str | None = None
        self._step_seed = 0

    # ------------------------------------------------------------------ the frozen network
    @property
    def reconstructor(self) -> LRReconstructionNetwork:
        """The LR reconstruction network; resolved (and built, for a default one not yet
        cached) on first use."""
        if self._network is None:
            self._network, self._network_where = resolve_reconstructor(
                self.config.reconstructor, scale=self.model.scale, progress=self.config.progress,
                device=self.config.device)
            log.info("%s: LR reconstruction network %s", self.name, self._network_where)
        elif self._network.scale != self.model.scale:
            resolve_reconstructor(self._network, scale=self.model.scale)  # raises the scale error
        return self._network

    @property
    def reconstructor_hash(self) -> str:
        """sha256 of the reconstructor's weights (part of the run id and the metadata)."""
        if self._network_hash is None:
            h = hashlib.sha256()
            for name, t in sorted(self.reconstructor.state_dict().items()):
                h.update(name.encode())
                h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._network_hash = h.hexdigest()
        return self._network_hash

    @property
    def learning_rate(self) -> float:
        """``lr``, or the table's value for this model's architecture."""
        if self.config.lr is not None:
            return float(self.config.lr)
        return float(self.lr_table.get(self.model.architecture, self.default_lr))

    # ------------------------------------------------------------------ what subclasses choose
    def control(self, sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor | float:
        """The controller ``s`` of the batch (``B x d`` or a number)."""
        return 1.0

    def loss_weights(self, y: torch.Tensor) -> torch.Tensor | None:
        """Per-pixel weights of the reconstruction loss at image ``y``'s size (``1x1xHxW``)."""
        return None

    def regularizer(self, sr: torch.Tensor, features: torch.Tensor) -> torch.Tensor | None:
        """An extra loss term on the SR output ``x̂`` and ``E_i(x̂)``, or ``None``."""
        return None

    # ------------------------------------------------------------------ Adapter hooks
    def frozen_networks(self) -> Mapping[str, nn.Module]:
        return {"reconstructor": self.reconstructor}

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        fused = bool(params) and params[0].device.type == "cuda"
        log.info("%s: lr %.1e (%s)", self.name, self.learning_rate,
                 "given" if self.config.lr is not None else f"table for {self.model.architecture}")
        return torch.optim.Adam(params, lr=self.learning_rate, fused=fused or None)

    def prepare(self, group: ImageGroup, student: nn.Module) -> None:
        self._images = list(group.tensors)
        self._weights = [self.loss_weights(y) for y in self._images]
        smallest = min(min(y.shape[-2:]) for y in self._images)
        self._patch = min(self.config.patch_size, int(smallest))
        if self._patch < self.config.patch_size:
            log.info("%s: patch_size %d does not fit the smallest image; using %d", self.name,
                     self.config.patch_size, self._patch)

    def sample_batch(self, generator: torch.Generator) -> Batch:
        y, w = random_crops(self._images, self._weights, self._patch, self.config.batch_size, generator)
        # the controller's noise of this batch: drawn here, from the loop's generator (saved
        # with a resumable state), and used by compute_loss, which the engine calls next
        self._step_seed = int(torch.randint(2**62, (), generator=generator))
        return Batch(y, y, w)

    def compute_loss(self, student: nn.Module, batch: Batch) -> torch.Tensor:
        """Eq. 6: ``ℓ1_w(R(x̂, s ⊙ E_d(y), E_i(x̂)), y)`` plus :meth:`regularizer`."""
        y = batch.inputs
        sr = forward(student, y)
        recon, features = self.reconstructor.reconstruct_with_features(sr, y, self.control(sr, y))
        loss = weighted_l1(recon, batch.targets, batch.weights)
        extra = self.regularizer(sr, features)
        return loss if extra is None else loss + extra

    def describe(self) -> dict[str, str]:
        return {"reconstructor": self._network_where or str(self.config.reconstructor),
                "reconstructor_sha256": self.reconstructor_hash, "lr": f"{self.learning_rate:g}"}

    def run_id_parts(self, group: ImageGroup) -> list[str]:
        return [self.reconstructor_hash, f"{self.learning_rate:g}"]

    def _noise_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self._step_seed)
