"""`AdaSSR`: adaptive self-similarity mining (Fan, Yang, Guo, Liu, IEEE TIP 2024).

Internal learning on ``(y_d, y)`` pairs made with an estimated blur kernel, weighted per
pixel by a self-attention map, with augmentations, an EMA of the weights (eq. 16), a
proximal term to the starting weights (eq. 15), and NIQE early stopping (Sec. IV-A-1).
Optional ADMM rounds (eqs. 5-8) alternate with external learning on synthetic pairs from
an HR image folder. METHODS.md §1 lists every default and where it comes from.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..internal import InternalLearning, InternalLearningConfig
from ...adapters.training import snapshot
from ...errors import InputError
from ...models import SRModel, load_model
from ...pairs import AugmentConfig, BicubicKernel, ConsistencyKernelEstimator, GivenKernel, KernelEstimate
from .attention import AttentionCache, attention_weights, feature_attention_map, locate_attention, save_heatmap
from .attention import transformer_attention_map
from .early_stopping import niqe_plateau

__all__ = ["AdaSSR", "AdaSSRConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaSSRConfig(InternalLearningConfig):
    """AdaSSR settings; defaults from the paper's Sec. IV-A unless marked as ours."""

    max_steps: int = 1500
    """T_step = 1,500 (Sec. IV-A-1)."""
    lr: float = 1e-4
    """Adam, 1e-4 (Sec. IV-A-3)."""
    batch_size: int = 4
    """Batch size 4 (Sec. IV-A-3)."""
    ema_decay: float | None = 0.999
    """α = 0.999 (Sec. IV-A-3; the ablation finds 0.99–0.999 best)."""
    proximal_weight: float = 1e-4
    """μ = 1e-4 of μ‖Θ − Θ̃‖² (Sec. IV-A-3)."""
    eval_every: int = 100
    """NIQE every 100 steps (Sec. IV-A-1)."""
    kernel_estimator: Literal["consistency", "bicubic", "given"] = "consistency"
    """How y_d is made: ``consistency`` (ours: an anisotropic Gaussian minimising
    ‖D_k(N(y)) − y‖; the paper estimates k "in a self-learning manner"), ``bicubic``
    (the ablation's plain internal learning), ``given`` (``kernel``)."""
    attention: Literal["auto", "transformer", "features", "none"] = "auto"
    """Loss weights: ``transformer`` (the paper: last self-attention block of a SwinIR-like
    model, ``attention_model`` or the adapted model itself), ``features`` (ours:
    parameter-free attention on the adapted model's deep features), ``none`` (uniform),
    ``auto`` (transformer when one is available, else features)."""
    attention_model: Any = None
    """Checkpoint (path, name or SRModel) whose attention block gives the map; the paper
    adapts Real-ESRGAN with attention from SwinIR."""
    attention_pool: int = 4
    """Pooling factor n of the features before global attention (eq. 12; the paper does
    not give n; 4 keeps the token count tractable on CPU)."""
    attention_mix: float = 0.9
    """w = clip(0.9·map + 0.1, 0.1, 3.0) (Sec. IV-A-1)."""
    attention_dir: str | None = None
    """If set, write each attention map as a heat-map PNG here."""
    augment: bool = True
    """Use the paper's augmentations (``augment_config`` holds their probabilities);
    ``False``: crops with flips and rotations only."""
    augment_config: AugmentConfig = field(default_factory=AugmentConfig)
    """Probabilities and ranges of each augmentation (see ``ttasr.pairs.AugmentConfig``)."""
    stop_metric: Literal["niqe", "none"] = "niqe"
    """Early stopping and best-weight selection by NIQE of the EMA model's SR output
    (Sec. IV-A-1); ``none`` runs all ``max_steps`` and keeps the final weights."""
    niqe_min_delta: float = 0.05
    """Stop when NIQE decreased by less than this ..."""
    niqe_patience: int = 3
    """... this many evaluations in a row."""
    niqe_params: str | None = None
    """Path of NIQE's pristine parameters (.mat); default: ``ttasr metrics fetch niqe``'s
    cache, then pyiqa's."""
    admm_rounds: int = 1
    """T_iter rounds of internal learning; rounds after the first start with external
    learning on ``external_images`` (eq. 8). Paper default 1."""
    external_images: str | None = None
    """Folder or glob of HR images for external learning (DIV2K in the paper)."""
    external_steps: int = 1500
    """Steps of each external-learning round (T_step, Sec. IV-A-2)."""
    external_weight: float = 1e-3
    """λ of the external loss (eq. 1; Sec. IV-A-3: 1e-3)."""


class AdaSSR(InternalLearning):
    """AdaSSR: attention-guided self-similarity adaptation with EMA and NIQE stopping."""

    name = "adassr"
    config_class = AdaSSRConfig  # type: ignore[assignment]
    evaluate_start = True
    config: AdaSSRConfig  # type: ignore[assignment]

    def __init__(self, model: Any, config: AdaSSRConfig | None = None, **overrides: Any) -> None:
        super().__init__(model, config, **overrides)
        c = self.config
        if c.kernel_estimator == "given" and c.kernel is None:
            raise InputError("kernel_estimator='given' needs kernel=<2-D tensor>")
        if c.admm_rounds > 1 and not c.external_images:
            raise InputError("admm_rounds > 1 needs external_images=<folder of HR images>")
        self._attention_cache = AttentionCache()
        self._attention_model: SRModel | None = None
        self._niqe: Any = None
        self.attention_maps: list[torch.Tensor] = []
        self.kernel_estimates: list[KernelEstimate] = []

    # ---------------------------------------------------------------- pairs and weights
    def augment_config(self) -> AugmentConfig:
        if self.config.augment:
            return self.config.augment_config
        return dataclasses.replace(AugmentConfig.none(), dihedral=self.config.flips)

    def estimate_kernel(self, y: torch.Tensor) -> KernelEstimate:
        c, s = self.config, self.model.scale
        if c.kernel_estimator == "bicubic":
            est = BicubicKernel().estimate(y, s)
        elif c.kernel_estimator == "given":
            est = GivenKernel(c.kernel).estimate(y, s)  # type: ignore[arg-type]
        else:
            est = ConsistencyKernelEstimator(sr_fn=lambda t: self.model(t).clamp(0, 1)).estimate(y, s)
        log.info("kernel: %s", {k: round(v, 3) if isinstance(v, float) else v for k, v in est.params.items()})
        self.kernel_estimates.append(est)
        return est

    def loss_weights(self, y: torch.Tensor, index: int) -> torch.Tensor | None:
        mode = self.config.attention
        if mode == "none":
            return None
        amap = self._attention_map(y, mode)
        self.attention_maps.append(amap)
        if self.config.attention_dir:
            gi = self.group[index] if index < len(getattr(self, "group", [])) else index
            name = getattr(self._images[gi], "name", f"image{gi:03d}") if gi < len(self._images) else gi
            save_heatmap(amap, Path(self.config.attention_dir) / f"{Path(str(name)).stem}_attention.png", image=y)
        mix = self.config.attention_mix
        return attention_weights(amap, alpha=mix, floor=1.0 - mix)[None, None]

    def _attention_map(self, y: torch.Tensor, mode: str) -> torch.Tensor:
        pool = self.config.attention_pool
        source = self._transformer_source() if mode in ("auto", "transformer") else None
        if source is not None:
            return self._attention_cache.get_or_compute(
                y, source.module, lambda: transformer_attention_map(source, y, pool),
                method="transformer", pool=pool)
        if mode == "transformer":
            raise InputError(
                f"attention='transformer' needs a transformer SR model: {self.model.architecture} has no "
                "self-attention block; pass attention_model=<SwinIR/HAT/Swin2SR/DAT checkpoint> or use "
                "attention='features'"
            )
        return self._attention_cache.get_or_compute(
            y, self.model.module, lambda: feature_attention_map(self.model, y, pool),
            method="features", pool=pool)

    def _transformer_source(self) -> SRModel | None:
        if self.config.attention_model is not None:
            if self._attention_model is None:
                self._attention_model = load_model(self.config.attention_model)
            return self._attention_model
        try:
            locate_attention(self.model.module)
            return self.model
        except InputError:
            return None
        except Exception:  # noqa: BLE001 - ModelError or lookup failure: no transformer here
            return None

    # ---------------------------------------------------------------- ADMM rounds
    def _adapt(self, indices, callbacks, resume, **kwargs):  # type: ignore[no-untyped-def]
        """Round 1: internal learning; rounds 2..T: external (eq. 8), internal (eq. 10), dual."""
        result = super()._adapt(indices, callbacks, resume, **kwargs)
        c = self.config
        if c.admm_rounds <= 1 or result.interrupted:
            return result
        from ...io import load_images
        from .admm import dual_update, external_learning, proximal_target

        hr = [r.rgb for r in load_images(c.external_images)]
        theta, steps, history = result.weights, result.steps, list(result.history)
        u = dual_update(None, theta, snapshot(self.model.module))  # Θe⁽¹⁾: the pretrained weights
        for k in range(2, c.admm_rounds + 1):
            target_e = proximal_target(theta, u, -1.0)
            log.info("ADMM round %d/%d: external learning on %d HR images", k, c.admm_rounds, len(hr))
            theta_e = external_learning(
                self.model, target_e, target_e, hr, steps=c.external_steps, lr=c.lr, batch_size=c.batch_size,
                patch_size=c.patch_size, mu=c.proximal_weight, lam=c.external_weight, ema_decay=c.ema_decay,
                seed=c.seed + k, device=self.device, progress=c.progress)
            result = super()._adapt(indices, callbacks, resume, start=theta_e,
                                    anchor=proximal_target(theta_e, u, +1.0), tag=f"admm-round-{k}")
            theta, steps = result.weights, steps + result.steps
            history += result.history
            u = dual_update(u, theta, theta_e)
            if result.interrupted:
                break
        result.steps, result.history = steps, history
        return result

    # ---------------------------------------------------------------- NIQE stopping
    def prepare(self, images: Sequence[torch.Tensor], student: nn.Module) -> None:
        if self.config.stop_metric == "niqe":
            self._check_niqe(images)
        self.attention_maps, self.kernel_estimates = [], []
        super().prepare(images, student)

    def _check_niqe(self, images: Sequence[torch.Tensor]) -> None:
        """Fail before training, not after 100 steps, when NIQE cannot run."""
        from ...metrics import NIQE

        small = [tuple(y.shape[-2:]) for y in images if min(y.shape[-2:]) * self.model.scale < 384]
        if small:
            raise InputError(
                f"NIQE early stopping needs SR outputs of at least 384 px per side; LR images of size "
                f"{small[0]} give {min(small[0]) * self.model.scale} px. Use larger images, or stop_metric='none'"
            )
        if self._niqe is None:
            self._niqe = NIQE(niqe_params=self.config.niqe_params)

    def evaluate(self, model: nn.Module, images: Sequence[torch.Tensor]) -> float | None:
        if self.config.stop_metric == "none":
            return None
        from ...inference import enhance_tensor

        current = self.model.with_weights(model)
        scores = []
        for y in images:
            sr = enhance_tensor(current, y, device=self.device, progress=False)
            scores.append(float(self._niqe(sr)))  # type: ignore[misc]
        return sum(scores) / len(scores)

    def should_stop(self, scores: Sequence[float]) -> bool:
        return niqe_plateau(scores, self.config.niqe_min_delta, self.config.niqe_patience)

    def describe(self) -> dict[str, str]:
        out: dict[str, str] = {"attention": self.config.attention}
        if self.kernel_estimates:
            out["kernel"] = repr({k: v for k, v in self.kernel_estimates[0].params.items()
                                  if isinstance(v, (int, float, str))})
        return out
